"""Thresholds from the config, and the verdict they give."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.monitor.decision import Thresholds, decide

CALM = {"psi": 0.01}
TEXT = {"tokens_psi": 0.0, "oov": {"increase": 0.0}}
NO_FEEDBACK = {"count": 0, "accuracy": None}


def test_traffic_below_the_minimum_gets_no_decision():
    t = Thresholds(min_predictions=50)
    assert decide(0, CALM, TEXT, NO_FEEDBACK, t)["status"] == "no traffic"
    few = decide(49, {"psi": 9.0}, TEXT, NO_FEEDBACK, t)
    assert few["status"] == "not enough traffic" and few["drift"] is None
    assert decide(50, CALM, TEXT, NO_FEEDBACK, t) == {"status": "ok", "drift": False,
                                                      "reasons": []}


def test_every_threshold_passed_is_a_reason():
    t = Thresholds(min_feedback=10, min_feedback_accuracy=0.8)
    image = {"intensity_psi": 0.5, "size": {"increase": 0.3}}
    feedback = {"count": 10, "accuracy": 0.5}
    result = decide(100, {"psi": 0.3}, image, feedback, t)
    assert result["drift"] is True and len(result["reasons"]) == 4
    assert result["reasons"][0] == "predicted label PSI 0.3000 > 0.2"
    assert "accuracy on feedback 0.5000 < 0.8" in result["reasons"][-1]
    too_little = decide(100, CALM, TEXT, {"count": 9, "accuracy": 0.0}, t)
    assert too_little["drift"] is False  # 9 answers < min_feedback


def test_thresholds_from_the_config_are_checked():
    section = OmegaConf.create({"min_predictions": 5, "label_psi": 0.1})
    assert Thresholds.from_config(section).label_psi == 0.1
    with pytest.raises(DlforgeError, match="unknown key.*thresholds.label_pis.*Fix"):
        Thresholds.from_config(OmegaConf.create({"label_pis": 0.1}))
    with pytest.raises(DlforgeError, match=r"thresholds.input_psi=-1.*Fix: set "
                                           r"thresholds.input_psi to a value >= 0"):
        Thresholds.from_config(OmegaConf.create({"input_psi": -1}))
