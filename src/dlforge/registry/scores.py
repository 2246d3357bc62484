"""Classification metrics as pure functions over label indices (numpy only).

    single_label(y_true, y_pred, labels, oos_label)   accuracy, macro-F1, per class,
                                                      confusion; in-scope accuracy and
                                                      out-of-scope recall (CLINC150)
    multi_label(y_true, y_pred, labels)               exact match, micro/macro-F1,
                                                      Hamming loss, per class

In-scope accuracy and out-of-scope recall follow Larson et al. (2019), "An
Evaluation Dataset for Intent Classification and Out-of-Scope Prediction":
accuracy over the in-scope test examples, and the share of out-of-scope
examples predicted out-of-scope.
"""

from __future__ import annotations

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


def single_label(y_true, y_pred, labels: list[str], oos_label: str | None = None) -> dict:
    """Metrics of a single-label classifier.

    Macro-F1 averages over the classes present in ``y_true`` (as scikit-learn
    does with ``labels=`` the observed classes).
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    matrix = confusion(y_true, y_pred, len(labels))
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    precision, recall, f1 = _prf(tp, matrix.sum(axis=0) - tp, support - tp)
    present = support > 0
    out = {
        "examples": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
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
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "hamming_loss": float((y_true != y_pred).mean()) if y_true.size else 0.0,
        "per_class": [{"label": label, "precision": float(p), "recall": float(r),
                       "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                   strict=True)],
    }
