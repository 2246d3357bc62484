"""The verdict: enough traffic? past any threshold? Thresholds come from ``conf/monitor.yaml``.

    no traffic          no prediction of the model in the window: no decision
    not enough traffic  fewer than ``min_predictions``: reported, no decision
    drift               at least one threshold passed; every one passed is a reason
    ok                  none passed
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from dlforge.core.errors import DlforgeError
from dlforge.core.settings import Settings, at_least


@dataclass(frozen=True)
class Thresholds(Settings):
    """When monitoring calls it drift (``thresholds.*`` in conf/monitor.yaml).

    Args:
        min_predictions: below this many predictions there is no decision.
        label_psi: PSI of predicted labels vs train labels above this is drift.
        input_psi: PSI of token counts (text) or mean intensity (images) above this.
        oov_increase: live OOV rate minus the train rate above this (text).
        size_increase: live share of inputs not of the train's usual size, minus the
            train's own share, above this (images).
        min_feedback: feedback answers needed before accuracy is judged.
        min_feedback_accuracy: accuracy on feedback below this is drift; None: not judged.
    """

    SOURCE = "conf/monitor.yaml"

    min_predictions: int = field(default=50, metadata=at_least(0))
    label_psi: float = field(default=0.2, metadata=at_least(0))
    input_psi: float = field(default=0.2, metadata=at_least(0))
    oov_increase: float = field(default=0.1, metadata=at_least(0))
    size_increase: float = field(default=0.1, metadata=at_least(0))
    min_feedback: int = field(default=20, metadata=at_least(0))
    min_feedback_accuracy: float | None = field(default=None, metadata=at_least(0))

    @classmethod
    def from_config(cls, node: Any, prefix: str = "thresholds") -> Thresholds:
        """From the ``thresholds`` mapping; an unknown key (a misspelt threshold would
        silently keep its default) is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise DlforgeError(f"unknown key(s) {prefix}.{f', {prefix}.'.join(unknown)} in "
                               f"{cls.SOURCE}. Fix: use {sorted(known)}")
        return super().from_config(node, prefix)


def _past(value: float | None, limit: float, name: str, unit: str = "") -> list[str]:
    if value is None or value <= limit:
        return []
    return [f"{name} {value:.4f}{unit} > {limit}"]


def reasons(labels: dict, inputs: dict, feedback: dict, t: Thresholds) -> list[str]:
    """Every threshold the report's sections pass, as a sentence each."""
    out = _past(labels["psi"], t.label_psi, "predicted label PSI")
    out += _past(inputs.get("tokens_psi"), t.input_psi, "input token count PSI")
    out += _past(inputs.get("intensity_psi"), t.input_psi, "input mean intensity PSI")
    out += _past((inputs.get("oov") or {}).get("increase"), t.oov_increase,
                 "out-of-vocabulary rate increase")
    out += _past((inputs.get("size") or {}).get("increase"), t.size_increase,
                 "share of inputs of another size, increase")
    accuracy = feedback["accuracy"]
    if (t.min_feedback_accuracy is not None and accuracy is not None
            and feedback["count"] >= t.min_feedback and accuracy < t.min_feedback_accuracy):
        out.append(f"accuracy on feedback {accuracy:.4f} < {t.min_feedback_accuracy} "
                   f"({feedback['count']} answers)")
    return out


def decide(predictions: int, labels: dict, inputs: dict, feedback: dict,
           t: Thresholds) -> dict:
    """``{"status", "drift" (None without a decision), "reasons"}``."""
    if predictions == 0:
        return {"status": "no traffic", "drift": None, "reasons": []}
    if predictions < t.min_predictions:
        return {"status": "not enough traffic", "drift": None,
                "reasons": [f"{predictions} predictions < thresholds.min_predictions="
                            f"{t.min_predictions}"]}
    found = reasons(labels, inputs, feedback, t)
    return {"status": "drift" if found else "ok", "drift": bool(found), "reasons": found}
