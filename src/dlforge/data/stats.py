"""Mergeable dataset statistics, computed batch by batch.

A dataset type names integer features of an example (utterance length in
characters, image width, ...); the accumulator keeps a histogram of each, so
minimum, mean and percentiles are exact and batches merge by addition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Feature = Callable[[pa.Table], pa.Array]  # table -> one non-negative int per row
_CAP = 1 << 16  # larger values count in the top bucket


class Statistics:
    """Row count, label frequencies and per-feature histograms."""

    def __init__(self, features: Mapping[str, Feature]):
        self.features = dict(features)
        self.rows = 0
        self.multi_label_rows = 0
        self.labels: Counter[str] = Counter()
        self._hist = {name: np.zeros(0, dtype=np.int64) for name in self.features}

    def update(self, table: pa.Table) -> None:
        """Add a table whose ``labels`` column is ``list<string>``."""
        self.rows += table.num_rows
        labels = table.column("labels")
        self.multi_label_rows += pc.sum(pc.greater(pc.list_value_length(labels), 1)).as_py() or 0
        counts = pc.value_counts(pc.list_flatten(labels))
        for item in counts.to_pylist():
            self.labels[item["values"]] += item["counts"]
        for name, feature in self.features.items():
            values = np.clip(feature(table).to_numpy(zero_copy_only=False), 0, _CAP)
            hist = np.bincount(values.astype(np.int64), minlength=len(self._hist[name]))
            hist[: len(self._hist[name])] += self._hist[name]
            self._hist[name] = hist

    def result(self) -> dict:
        return {
            "rows": self.rows,
            "num_labels": len(self.labels),
            "multi_label_rows": self.multi_label_rows,
            "label_counts": dict(sorted(self.labels.items())),
            **{name: _summary(hist) for name, hist in self._hist.items()},
        }


def _summary(hist: np.ndarray) -> dict:
    total = int(hist.sum())
    if total == 0:
        return {}
    values = np.arange(len(hist))
    cumulative = np.cumsum(hist)

    def percentile(q: float) -> int:
        return int(np.searchsorted(cumulative, q * total))

    return {
        "min": int(values[hist > 0][0]),
        "max": int(values[hist > 0][-1]),
        "mean": round(float((values * hist).sum() / total), 3),
        "p50": percentile(0.5),
        "p95": percentile(0.95),
    }
