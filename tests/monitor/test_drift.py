"""PSI, quantile bins and percentiles on values worked out by hand."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dlforge.monitor import drift
from dlforge.monitor.compare import labels


def test_psi_of_known_shares():
    # shares (0.5, 0.5) -> (0.8, 0.2): 0.3 ln 1.6 + 0.3 ln 2.5
    expected = 0.3 * math.log(1.6) + 0.3 * math.log(2.5)
    assert drift.psi([50, 50], [80, 20], alpha=0) == pytest.approx(expected)
    assert drift.psi([50, 50], [80, 20], alpha=0) == pytest.approx(0.415888, abs=1e-6)


def test_psi_is_zero_for_the_same_shares_and_symmetric():
    assert drift.psi([10, 20, 70], [100, 200, 700]) == pytest.approx(0.0, abs=1e-3)
    assert drift.psi([1, 3], [3, 1], alpha=0) == pytest.approx(drift.psi([3, 1], [1, 3], alpha=0))


def test_smoothing_keeps_an_empty_bin_finite():
    # alpha = 0.5: expected (100.5, 0.5)/101, actual (0.5, 100.5)/101
    p, q = np.array([100.5, 0.5]) / 101, np.array([0.5, 100.5]) / 101
    value = drift.psi([100, 0], [0, 100])
    assert math.isfinite(value)
    assert value == pytest.approx(float(((q - p) * np.log(q / p)).sum()))
    assert drift.smoothed_shares([0, 0, 2]).tolist() == pytest.approx([0.5 / 3.5, 0.5 / 3.5,
                                                                      2.5 / 3.5])


def test_psi_rejects_mismatched_bins():
    with pytest.raises(ValueError, match="2 expected bins but 3"):
        drift.psi([1, 2], [1, 2, 3])


def test_category_psi_takes_the_union_of_labels():
    ref, live = Counter(a=50, b=50), Counter(a=80, c=20)
    assert drift.category_psi(ref, live, alpha=0.5) == pytest.approx(
        drift.psi([50, 50, 0], [80, 0, 20], alpha=0.5))


def test_quantile_bins_of_discrete_values():
    edges = drift.quantile_edges([5, 5, 5, 5, 6, 7], bins=4)
    # quartiles at positions 1.25, 2.5, 3.75 of the sorted values: 5, 5, 5 + 0.75
    assert edges.tolist() == [5.0, 5.75]  # the repeated 5 is one edge
    assert drift.binned_counts([1, 5, 5.5, 6, 9], edges).tolist() == [2, 1, 2]
    # the same values: only the smoothing of the empty bin above 5 differs (n=100 vs 30)
    assert drift.value_psi([5] * 100, [5] * 30, bins=10) < 0.02
    assert drift.value_psi([5] * 100, [], bins=10) is None
    assert drift.value_psi([5] * 100, [40] * 30, bins=10) > 2


def test_percentiles_and_mean():
    values = list(range(1, 101))
    assert drift.percentiles(values) == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert drift.percentiles([]) == {"p50": None, "p95": None, "p99": None}
    assert drift.mean([1, 2]) == 1.5 and drift.mean([]) is None


def test_label_section_lists_top_labels_and_unknown_ones():
    section = labels(Counter(a=60, b=40), Counter(a=10, z=10))
    assert section["unknown"] == ["z"]
    assert [t["label"] for t in section["top"]] == ["a", "z", "b"]
    assert section["top"][0] == {"label": "a", "reference": 0.6, "live": 0.5}
    assert labels(Counter(a=1), Counter())["psi"] is None
