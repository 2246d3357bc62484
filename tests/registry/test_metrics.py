"""Evaluation metrics, checked against scikit-learn and hand-computed CLINC150 figures."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from dlforge.registry.scores import multi_label, single_label


def test_single_label_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = [f"c{i}" for i in range(6)]
    y_true = rng.integers(0, 5, 400)  # class c5 never occurs: it must not dilute macro-F1
    y_pred = np.where(rng.random(400) < 0.7, y_true, rng.integers(0, 6, 400))
    out = single_label(y_true, y_pred, labels)
    assert out["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    present = sorted(set(y_true))
    assert out["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present,
                                                     average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(6), zero_division=0)
    assert [c["precision"] for c in out["per_class"]] == pytest.approx(precision)
    assert [c["recall"] for c in out["per_class"]] == pytest.approx(recall)
    assert [c["f1"] for c in out["per_class"]] == pytest.approx(f1)
    assert [c["support"] for c in out["per_class"]] == support.tolist()
    assert out["confusion"].sum() == 400 and np.trace(out["confusion"]) == (y_true == y_pred).sum()


def test_in_scope_accuracy_and_out_of_scope_recall():
    labels = ["balance", "oos", "transfer"]
    #        in-scope: 3 right of 4       oos: 1 of 2 recalled
    y_true = [0, 0, 2, 2, 1, 1]
    y_pred = [0, 1, 2, 2, 1, 0]
    out = single_label(y_true, y_pred, labels, oos_label="oos")
    assert out["in_scope_accuracy"] == pytest.approx(3 / 4)
    assert out["oos_recall"] == pytest.approx(1 / 2)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert "oos_recall" not in single_label(y_true, y_pred, labels, oos_label=None)


def test_multi_label_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    y_true = rng.random((200, 5)) < 0.3
    y_pred = np.where(rng.random((200, 5)) < 0.8, y_true, ~y_true)
    out = multi_label(y_true, y_pred, list("abcde"))
    assert out["exact_match"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert out["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert out["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert out["hamming_loss"] == pytest.approx((y_true != y_pred).mean())
