"""Classification metrics as pure functions over label indices (numpy only).

    single_label(y_true, y_pred, labels, oos_label)   accuracy, macro-F1, per class,
                                                      confusion; in-scope accuracy and
                                                      out-of-scope recall (CLINC150)
    multi_label(y_true, y_pred, labels)               exact match, micro/macro-F1,
                                                      Hamming loss, per class
    macro_f1(tp, fp, fn)                              macro-F1 from per-class counts,
                                                      for any number of leading axes
    bootstrap_differences(metrics, old, new, ...)     intervals of metrics' changes
    bootstrap_interval(metric, actual, predicted, ...) interval of one metric
    wilson_interval(successes, n)                     interval of a proportion

In-scope accuracy and out-of-scope recall follow Larson et al. (2019), "An
Evaluation Dataset for Intent Classification and Out-of-Scope Prediction":
accuracy over the in-scope test examples, and the share of out-of-scope
examples predicted out-of-scope.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """``(n, n)`` counts; row = true class, column = predicted class."""
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-class precision, recall, F1; 0 where undefined (no predictions or no examples)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def macro_f1(tp, fp, fn) -> np.ndarray:
    """Macro-F1 along the last axis (classes), over the classes with examples
    (``tp + fn > 0``); 0 where no class has any. ``(C,)`` counts give a scalar,
    ``(S, C)`` counts ``(S,)``."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    _, _, f1 = _prf(tp, fp, fn)
    present = tp + fn > 0
    classes = present.sum(axis=-1)
    return np.where(classes > 0, (f1 * present).sum(axis=-1) / np.maximum(classes, 1), 0.0)


def single_label(y_true, y_pred, labels: list[str], oos_label: str | None = None) -> dict:
    """Metrics of a single-label classifier.

    Macro-F1 averages over the classes present in ``y_true`` (as scikit-learn
    does with ``labels=`` the observed classes).
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    matrix = confusion(y_true, y_pred, len(labels))
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    fp, fn = matrix.sum(axis=0) - tp, support - tp
    precision, recall, f1 = _prf(tp, fp, fn)
    out = {
        "examples": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(macro_f1(tp, fp, fn)),
        "per_class": [{"label": label, "precision": float(p), "recall": float(r),
                       "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                   strict=True)],
        "confusion": matrix,
    }
    if oos_label is not None and oos_label in labels:
        oos = labels.index(oos_label)
        in_scope, out_scope = y_true != oos, y_true == oos
        out["in_scope_accuracy"] = float((y_pred[in_scope] == y_true[in_scope]).mean()) \
            if in_scope.any() else 0.0
        out["oos_recall"] = float((y_pred[out_scope] == oos).mean()) if out_scope.any() else 0.0
    return out


def multi_label(y_true, y_pred, labels: list[str]) -> dict:
    """Metrics of a multi-label classifier; ``y_true``/``y_pred`` are ``(N, C)`` 0/1."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(axis=0).astype(float)
    fp = (~y_true & y_pred).sum(axis=0).astype(float)
    fn = (y_true & ~y_pred).sum(axis=0).astype(float)
    precision, recall, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))
    support = y_true.sum(axis=0)
    return {
        "examples": int(len(y_true)),
        "exact_match": float((y_true == y_pred).all(axis=1).mean()) if len(y_true) else 0.0,
        "micro_f1": float(micro[0]),
        "macro_f1": float(macro_f1(tp, fp, fn)),
        "hamming_loss": float((y_true != y_pred).mean()) if y_true.size else 0.0,
        "per_class": [{"label": label, "precision": float(p), "recall": float(r),
                       "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                   strict=True)],
    }


# Bootstrap of a metric's change. Resampling n test examples with replacement draws,
# for each distinct outcome (actual, predicted old, predicted new), how many copies of
# it the resample holds: Multinomial(n, share of that outcome). Drawing those counts
# gives resamples of the same distribution as drawing n indices, in memory that grows
# with the number of distinct outcomes (cells), not with samples x n.
CHUNK_CELLS = 1 << 20  # counts drawn at once (8 MiB of int64), whatever n is


def bootstrap_differences(metrics: list[str], old: tuple, new: tuple, paired: bool,
                          classes: int, samples: int = 2000, seed: int = 0,
                          confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """The central ``confidence`` interval of each of ``metrics`` (``"accuracy"``,
    ``"macro_f1"``) of ``new`` minus that of ``old``, by percentile bootstrap over the
    test examples: the same resampled examples on both sides when ``paired`` (the same
    test split, row for row), each side resampled on its own otherwise. Every metric is
    scored on the same resamples.

    Args:
        old, new: (actual, predicted) label indices in ``range(classes)``, one per test
            example (at least one per side); when ``paired`` both sides have the same
            actual labels.
    """
    rng = np.random.default_rng(seed)
    if paired:  # cells: (actual, predicted old, predicted new)
        cells, counts = _cells(old[0], old[1], new[1])
        width = len(counts)
    else:
        (old_cells, old_counts), (new_cells, new_counts) = _cells(*old), _cells(*new)
        width = max(len(old_counts), len(new_counts))
    diffs = {metric: [] for metric in metrics}
    for size in _chunks(samples, max(width, classes)):
        if paired:
            draw_old = draw_new = _draw(rng, counts, size)
            old_side, new_side = (cells[0], cells[1]), (cells[0], cells[2])
        else:
            draw_new, draw_old = _draw(rng, new_counts, size), _draw(rng, old_counts, size)
            old_side, new_side = old_cells, new_cells
        for metric, found in diffs.items():
            found.append(_score(metric, draw_new, *new_side, classes)
                         - _score(metric, draw_old, *old_side, classes))
    tail = (1 - confidence) / 2 * 100
    return {metric: tuple(float(x) for x in np.percentile(np.concatenate(found),
                                                          [tail, 100 - tail]))
            for metric, found in diffs.items()}


def bootstrap_interval(metric: str, actual, predicted, classes: int, samples: int = 2000,
                       seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of ``metric`` (``"accuracy"``, ``"macro_f1"``)
    of a single-label classifier, by percentile bootstrap over its test examples
    (``actual``, ``predicted``: label indices in ``range(classes)``, at least one)."""
    rng = np.random.default_rng(seed)
    cells, counts = _cells(actual, predicted)
    found = [_score(metric, _draw(rng, counts, size), cells[0], cells[1], classes)
             for size in _chunks(samples, max(len(counts), classes))]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(found), [tail, 100 - tail])
    return float(low), float(high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (``n`` at least 1):
    unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share, z2 = successes / n, z * z / n
    centre = (share + z2 / 2) / (1 + z2)
    half = z * np.sqrt(share * (1 - share) / n + z2 / (4 * n)) / (1 + z2)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _cells(*columns) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of ``columns`` (one array each) and how often each occurs."""
    rows = np.stack([np.asarray(c, dtype=np.int64) for c in columns], axis=1)  # (N, k)
    unique, counts = np.unique(rows, axis=0, return_counts=True)  # (K, k), (K,)
    return list(unique.T), counts


def _draw(rng: np.random.Generator, counts: np.ndarray, size: int) -> np.ndarray:
    """``(size, K)``: ``size`` resamples of ``counts.sum()`` examples, as cell counts."""
    return rng.multinomial(counts.sum(), counts / counts.sum(), size=size)


def _chunks(samples: int, width: int):
    """Sizes of the batches of resamples: each holds about CHUNK_CELLS counts."""
    step = max(1, CHUNK_CELLS // max(width, 1))
    for start in range(0, samples, step):
        yield min(step, samples - start)


def _score(metric: str, draw: np.ndarray, actual: np.ndarray, predicted: np.ndarray,
           classes: int) -> np.ndarray:
    """``metric`` of each resample; ``draw`` ``(S, K)``: copies of cell k in resample s."""
    hit = actual == predicted
    if metric == "accuracy":
        return draw[:, hit].sum(axis=1) / draw.sum(axis=1)
    tp = _per_class(draw[:, hit], actual[hit], classes)
    support, chosen = _per_class(draw, actual, classes), _per_class(draw, predicted, classes)
    return macro_f1(tp, chosen - tp, support - tp)


def _per_class(draw: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """``(S, classes)``: per resample, the copies of the cells of each ``label``."""
    rows = draw.shape[0]
    index = (np.arange(rows)[:, None] * classes + label[None, :]).ravel()
    return np.bincount(index, weights=draw.ravel(), minlength=rows * classes).reshape(
        rows, classes)
