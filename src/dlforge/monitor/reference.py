"""The reference live traffic is compared with: the train split, summarised as serving does.

The train split of the experiment's snapshot (``paths.exp_dir/snapshot.json``)
gives the label distribution; its inputs are summarised by the served model's
own encoder (``summarize``, the function serving logs with), so that token
counts and out-of-vocabulary rates mean the same on both sides.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlforge.core.errors import DlforgeError, NotFound

log = logging.getLogger(__name__)


@dataclass
class Reference:
    """The train split: label counts, and input summaries like :class:`Traffic`'s."""

    snapshot: str
    examples: int
    labels: Counter
    inputs: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def summarised(self) -> int:
        return max((len(v) for v in self.inputs.values()), default=0)


def snapshot_folder(exp_dir: Path, experiment: str) -> Path:
    """The snapshot folder recorded in ``exp_dir/snapshot.json``, or an error naming the fix."""
    record = exp_dir / "snapshot.json"
    fix = f"run `dlforge snapshot experiment={experiment}`"
    if not record.is_file():
        raise DlforgeError(f"{record} is missing: monitoring compares traffic with the "
                           f"experiment's training snapshot. Fix: {fix}")
    try:
        folder = Path(json.loads(record.read_text())["path"])
    except (ValueError, KeyError, TypeError):
        raise DlforgeError(f"{record} has no snapshot 'path'. Fix: {fix} again") from None
    if not (folder / "manifest.json").is_file() or not (folder / "train.parquet").is_file():
        raise DlforgeError(f"{record} points at {folder}, which holds no snapshot (no "
                           f"manifest.json or train.parquet). Fix: {fix} again")
    return folder


def served_package(client, model_name: str, alias: str, cache_dir: Path,
                   train_dir: Path) -> tuple[object, dict]:
    """The package of ``models:/NAME@ALIAS`` or, without one, the last trained package.

    Returns the loaded :class:`~dlforge.models.package.Predictor` and where it came
    from: ``{"source": "registry"|"train_dir", "uri", "version", "note"?}``.
    """
    from dlforge.models.package import load_package
    from dlforge.registry.fetch import fetch_package

    uri = f"models:/{model_name}@{alias}"
    try:
        folder, _, version = fetch_package(client, uri, cache_dir)
        return load_package(folder), {"source": "registry", "uri": uri, "version": version}
    except NotFound:
        pass
    fallback = train_dir / "model"
    if not (fallback / "SHA256SUMS").is_file():
        raise DlforgeError(f"{uri} does not exist and there is no trained package at "
                           f"{fallback} to summarise inputs with. Fix: run `dlforge train` and "
                           "`dlforge register` for the experiment (or set registry.model_name "
                           "to the served model)")
    note = f"{uri} does not exist: inputs are summarised with the package in {fallback}"
    log.warning("%s", note)
    return load_package(fallback), {"source": "train_dir", "uri": str(fallback),
                                    "version": None, "note": note}


def reference_stats(snapshot: Path, encoder, max_rows: int | None) -> Reference:
    """Label counts of the train split; ``encoder.summarize`` of up to ``max_rows`` inputs.

    A larger split is summarised on an evenly spaced sample of ``max_rows`` rows
    (deterministic, so repeated runs compare with the same reference).
    """
    from dlforge.data.build import read_split
    from dlforge.data.types import get_type

    manifest = json.loads((snapshot / "manifest.json").read_text())
    train = read_split(snapshot / "train.parquet")
    labels = Counter(str(label) for row in train["labels"] for label in row)
    reference = Reference(manifest["version"], len(train), labels)
    column = train[get_type(manifest["type"]).input_column]
    rows = np.arange(len(column))
    if max_rows is not None and len(rows) > max_rows:
        rows = np.linspace(0, len(rows) - 1, max_rows).round().astype(int)
    for raw in column.iloc[rows]:
        about = encoder.summarize(raw)
        for key, value in about.items():
            reference.inputs[key].append(float(value))
        if "height" in about and "width" in about:
            reference.sizes.append((int(about["height"]), int(about["width"])))
    return reference
