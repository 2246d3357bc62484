"""A registered model's package on local disk: ``models:/NAME@ALIAS`` -> folder.

Serving and batch prediction load packages with dlforge's own loader (no
MLflow at inference time); this resolves the URI and downloads the version's
files once into a cache keyed by model and version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dlforge.errors import DlforgeError
from dlforge.registry.lineage import resolve


def fetch_package(client, uri: str, cache: Path) -> tuple[Path, str, str]:
    """Download (or reuse) the package behind ``uri``; return (folder, name, version)."""
    import mlflow

    name, version = resolve(client, uri)
    target = cache / name / version
    if (target / "SHA256SUMS").is_file():
        return target, name, version
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = client.get_model_version_download_uri(name, version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp))
        sums = sorted(local.rglob("SHA256SUMS"))
        if not sums:
            raise DlforgeError(f"{uri} (version {version}) holds no dlforge model package. "
                               "Fix: register models with `dlforge register`")
        staged = Path(tmp) / "package"
        shutil.copytree(sums[0].parent, staged)
        try:
            os.replace(staged, target)  # atomic: a concurrent fetch of the same version
        except OSError:  # ...may have won; its copy is identical
            if not (target / "SHA256SUMS").is_file():
                raise
    return target, name, version
