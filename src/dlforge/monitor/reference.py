"""The reference live traffic is compared with: the train split, summarised as serving does.

The train split of the experiment's snapshot gives the label distribution; its
inputs are summarised by the served model's own encoder (``summarize``, the
function serving logs with), so that token counts and out-of-vocabulary rates
mean the same on both sides.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dlforge.core.errors import DlforgeError, NotFound

if TYPE_CHECKING:
    from dlforge.data.snapshot import Snapshot

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


def served_package(client, model_name: str, alias: str, cache_dir: Path,
                   fallback: Path) -> tuple[object, dict]:
    """The package of ``models:/NAME@ALIAS`` or, without one, the package in folder
    ``fallback`` (the experiment's last trained package).

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
    if not (fallback / "SHA256SUMS").is_file():
        raise DlforgeError(f"{uri} does not exist and there is no trained package at "
                           f"{fallback} to summarise inputs with. Fix: run `dlforge train` and "
                           "`dlforge register` for the experiment (or set registry.model_name "
                           "to the served model)")
    note = f"{uri} does not exist: inputs are summarised with the package in {fallback}"
    log.warning("%s", note)
    return load_package(fallback), {"source": "train_dir", "uri": str(fallback),
                                    "version": None, "note": note}


def reference_stats(snapshot: Snapshot, encoder, max_rows: int | None) -> Reference:
    """Label counts of the train split; ``encoder.summarize`` of up to ``max_rows`` inputs.

    A larger split is summarised on an evenly spaced sample of ``max_rows`` rows
    (deterministic, so repeated runs compare with the same reference); only those
    rows are read.
    """
    import pyarrow.compute as pc

    column = snapshot.table("train", ["labels"]).column("labels")
    counts = pc.value_counts(pc.list_flatten(column)).to_pylist()
    labels = Counter({str(item["values"]): item["counts"] for item in counts})
    inputs = snapshot.inputs("train")  # lazy: only the sampled rows are read
    reference = Reference(snapshot.version, len(inputs), labels)
    for raw in inputs.sample(max_rows):
        about = encoder.summarize(raw)
        for key, value in about.items():
            reference.inputs[key].append(float(value))
        if "height" in about and "width" in about:
            reference.sizes.append((int(about["height"]), int(about["width"])))
    return reference
