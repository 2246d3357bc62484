"""The verdict: enough traffic? past any threshold? Thresholds come from ``conf/monitor.yaml``.

    no traffic          no prediction of the model in the window: no decision
    not enough traffic  fewer than ``min_predictions``: reported, no decision
    drift               at least one threshold passed; every one passed is a reason
    ok                  none passed
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from dlforge.core.errors import DlforgeError


@dataclass(frozen=True)
class Thresholds:
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

    min_predictions: int = 50
    label_psi: float = 0.2
    input_psi: float = 0.2
    oov_increase: float = 0.1
    size_increase: float = 0.1
    min_feedback: int = 20
    min_feedback_accuracy: float | None = None

    def __post_init__(self):
        for f in fields(self):
            value, optional = getattr(self, f.name), f.name == "min_feedback_accuracy"
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise DlforgeError(f"thresholds.{f.name}={value!r} in conf/monitor.yaml is not "
                                   f"a number >= 0. Fix: set a number >= 0"
                                   f"{' or null' if optional else ''}")

    @classmethod
    def from_config(cls, section) -> Thresholds:
        """From the ``thresholds`` mapping; an unknown key is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise DlforgeError(f"unknown key(s) thresholds.{', thresholds.'.join(unknown)} in "
                               f"conf/monitor.yaml. Fix: use {sorted(known)}")
        return cls(**dict(section))

    def as_dict(self) -> dict:
        return asdict(self)


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
