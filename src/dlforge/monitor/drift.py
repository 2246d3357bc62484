"""Drift statistics as pure functions over counts and values (numpy only).

Population stability index (PSI) of an actual distribution against an
expected one over the same K bins, from counts ``e_i`` and ``a_i``:

    p_i = (e_i + alpha) / (sum(e) + alpha * K)      smoothed expected share
    q_i = (a_i + alpha) / (sum(a) + alpha * K)      smoothed actual share
    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

Additive smoothing (``alpha`` pseudo-counts per bin; 0.5 is Jeffreys' prior)
keeps a bin that is empty on one side finite instead of infinite, and pulls a
small sample's shares towards uniform rather than towards zero. Each term is
non-negative, so PSI is 0 for identical shares and grows with the shift. The
usual reading (Siddiqi, 2006, *Credit Risk Scorecards*): below 0.1 stable,
0.1-0.2 a moderate shift, above 0.2 a significant one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ALPHA = 0.5  # pseudo-counts per bin (Jeffreys)


def smoothed_shares(counts: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """``(counts + alpha) / (total + alpha * K)``: shares that are never 0 when ``alpha > 0``."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum() + alpha * len(counts)
    if total <= 0:
        raise ValueError("no counts to take shares of (and alpha is 0)")
    return (counts + alpha) / total


def psi(expected: Sequence[float], actual: Sequence[float], alpha: float = ALPHA) -> float:
    """PSI of ``actual`` counts against ``expected`` counts over the same bins."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected bins but {len(actual)} actual bins")
    p, q = smoothed_shares(expected, alpha), smoothed_shares(actual, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == q, 0.0, (q - p) * np.log(q / p))
    return float(terms.sum())


def category_psi(expected: Mapping[str, float], actual: Mapping[str, float],
                 alpha: float = ALPHA) -> float:
    """PSI over the union of the categories of two count mappings (e.g. labels)."""
    keys = sorted(set(expected) | set(actual))
    return psi([expected.get(k, 0) for k in keys], [actual.get(k, 0) for k in keys], alpha)


def quantile_edges(reference: Sequence[float], bins: int) -> np.ndarray:
    """Inner bin edges at the reference's ``1/bins, 2/bins, ...`` quantiles, de-duplicated.

    Discrete values (token counts) repeat quantiles, so there may be fewer
    than ``bins`` bins; every bin then holds at least one reference value.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2 (got {bins})")
    values = np.asarray(reference, dtype=float)
    if values.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def binned_counts(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Counts per bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``: ``len(edges) + 1`` bins."""
    index = np.digitize(np.asarray(values, dtype=float), edges, right=True)
    return np.bincount(index, minlength=len(edges) + 1)


def value_psi(reference: Sequence[float], live: Sequence[float], bins: int,
              alpha: float = ALPHA) -> float | None:
    """PSI of live values against reference values, binned at the reference's quantiles.

    None when either side has no values.
    """
    if len(reference) == 0 or len(live) == 0:
        return None
    edges = quantile_edges(reference, bins)
    return psi(binned_counts(reference, edges), binned_counts(live, edges), alpha)


def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 95, 99)) -> dict:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (linear interpolation); None when empty."""
    if len(values) == 0:
        return {f"p{q}": None for q in qs}
    points = np.percentile(np.asarray(values, dtype=float), qs)
    return {f"p{q}": round(float(v), 3) for q, v in zip(qs, points, strict=True)}


def mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 6) if len(values) else None
