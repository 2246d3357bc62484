"""A registered model's package on local disk: ``models:/NAME@ALIAS`` -> folder.

Serving and batch prediction load packages with dlforge's own loader (no
MLflow at inference time); this resolves the URI and downloads the version's
files once into a cache keyed by model and version.

The registry holds each version's package digest (the ``dlforge.package_sha256``
tag written by ``dlforge register``). A download that does not match it is
refused and never enters the cache; a cached copy that no longer matches it
(a changed file, or a registry that was reset and reuses version numbers) is
replaced by a fresh download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.registry.lineage import resolve

log = logging.getLogger(__name__)


def fetch_package(client, uri: str, cache: Path) -> tuple[Path, str, str]:
    """Download (or reuse) the package behind ``uri``; return (folder, name, version).

    Raises:
        DlforgeError: when the version holds no package, or its files do not match
            the digest the registry holds for it.
    """
    name, version = resolve(client, uri)
    expected = registered_digest(client, uri, name, version)
    target = cache / name / version
    if (target / "SHA256SUMS").is_file():
        if _digest(target, check_files=False) == expected:  # load_package hashes the files
            return target, name, version
        log.warning("cached package %s does not match the registry's digest of %s: "
                    "downloading it again", target, uri)
        _discard(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = download_package(client, uri, name, version, Path(tmp))
        _check(staged, expected, uri)  # before it is published: a refused copy is not cached
        try:
            os.replace(staged, target)  # atomic: a concurrent fetch of the same version
        except OSError:  # ...may have won; its copy is checked like this one
            if not (target / "SHA256SUMS").is_file():
                raise
            _check(target, expected, uri)
    return target, name, version


def registered_digest(client, uri: str, name: str, version: str) -> str:
    """The package digest the registry holds for ``name`` version ``version``."""
    from dlforge.registry.register import PACKAGE_TAG

    digest = client.get_model_version(name, version).tags.get(PACKAGE_TAG)
    if not digest:
        raise DlforgeError(f"{uri} (version {version}) has no {PACKAGE_TAG} tag, so its files "
                           "cannot be checked against the registry and it is refused. Fix: "
                           "register the model with `dlforge register` (a registration that "
                           "was interrupted leaves such a version: register again)")
    return digest


def download_package(client, uri: str, name: str, version: str, tmp: Path) -> Path:
    """The version's package folder, copied to ``tmp/package`` (its files not checked)."""
    import mlflow

    source = client.get_model_version_download_uri(name, version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp)))
    sums = sorted(local.rglob("SHA256SUMS"))
    if not sums:
        raise DlforgeError(f"{uri} (version {version}) holds no dlforge model package. "
                           "Fix: register models with `dlforge register`")
    staged = tmp / "package"
    shutil.copytree(sums[0].parent, staged)
    return staged


def _digest(folder: Path, check_files: bool) -> str | None:
    """The package digest of ``folder``; None when it is not a valid package."""
    from dlforge.models.package import package_digest

    try:
        return package_digest(folder, check_files=check_files)
    except DlforgeError:
        return None


def _check(folder: Path, expected: str, uri: str) -> None:
    """Raise unless ``folder``'s files match their SHA256SUMS and the registry's digest."""
    from dlforge.models.package import package_digest

    found = package_digest(folder)  # raises naming the damaged file
    if found != expected:
        raise DlforgeError(f"the package of {uri} does not match the digest the registry "
                           f"holds for it ({found[:12]} instead of {expected[:12]}): its files "
                           "were changed after registration and it is refused. Fix: register "
                           "the model again with `dlforge register` (or restore the artifact "
                           "store)")


def _discard(folder: Path) -> None:
    """Move a stale cached package aside and remove it (another fetch may do the same)."""
    trash = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.stale-")
    with contextlib.suppress(FileNotFoundError):
        os.replace(folder, trash)  # onto the empty folder: atomic, readers never see half
    shutil.rmtree(trash, ignore_errors=True)
