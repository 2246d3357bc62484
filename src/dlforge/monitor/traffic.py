"""What the server logged: one model's live predictions and feedback, in a time window.

Both logs are read with :func:`dlforge.serve.log.read_log`, which skips lines
a killed writer cut short and counts them. Records of other models, shadow
predictions (answers nobody received) and records older than the window are
counted and left out; a line that is JSON but not a record is counted as
invalid.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dlforge.monitor.drift import mean

PREDICTION_KEYS = ("model", "version", "label", "time")
FEEDBACK_KEYS = ("model", "version", "reward", "time")


@dataclass
class Traffic:
    """Live predictions of one model.

    ``inputs`` holds each numeric field of the logged input summaries as a
    list of values (``tokens``, ``oov`` for text; ``mean``, ``std`` for
    images), ``sizes`` the ``(height, width)`` of image inputs.
    """

    labels: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    inputs: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sizes: list[tuple[int, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    first: float | None = None  # log time (unix s) of the oldest prediction used
    last: float | None = None
    left_out: Counter = field(default_factory=Counter)  # why records were not used
    summarised: int = 0  # predictions logged with an input summary
    files: int = 0
    damaged_lines: int = 0

    @property
    def predictions(self) -> int:
        return sum(self.versions.values())

    def add(self, record: dict) -> None:
        self.labels[str(record["label"])] += 1
        self.versions[str(record["version"])] += 1
        at = float(record["time"])
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        if isinstance(record.get("latency_ms"), int | float):
            self.latencies.append(float(record["latency_ms"]))
        about = record.get("input")
        if not isinstance(about, dict):  # written by a server that did not summarise
            return
        self.summarised += 1
        for key, value in about.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.inputs[key].append(float(value))
        if isinstance(about.get("height"), int) and isinstance(about.get("width"), int):
            self.sizes.append((about["height"], about["width"]))


def _why_not(record: object, keys: tuple[str, ...], model: str, since: float | None) -> str | None:
    """Why a log record is not one of ``model``'s in the window (None: it is)."""
    if not isinstance(record, dict) or any(k not in record for k in keys) \
            or not isinstance(record["time"], int | float):
        return "invalid"
    if record["model"] != model:
        return "other_models"
    if record.get("shadow"):
        return "shadow"
    if since is not None and record["time"] < since:
        return "outside_window"
    return None


def read_predictions(folder: Path, model: str, since: float | None) -> Traffic:
    """``model``'s served predictions in ``folder`` logged at or after ``since`` (unix s)."""
    from dlforge.serve.log import read_log

    records, stats = read_log(folder, name="predictions")
    traffic = Traffic()
    for record in records:
        reason = _why_not(record, PREDICTION_KEYS, model, since)
        if reason is None:
            traffic.add(record)
        else:
            traffic.left_out[reason] += 1
    traffic.files, traffic.damaged_lines = stats["files"], stats["skipped"]
    return traffic


def read_feedback(folder: Path, model: str, since: float | None) -> dict:
    """Accuracy on the feedback given for ``model``'s answers: overall and per version.

    Returns ``{"count", "accuracy", "per_version": {version: {"count", "accuracy"}},
    "damaged_lines", "invalid"}``; accuracy is the mean reward (1 right, 0 wrong),
    None without feedback.
    """
    from dlforge.serve.log import read_log

    records, stats = read_log(folder, name="feedback")
    rewards: dict[str, list[float]] = defaultdict(list)
    invalid = 0
    for record in records:
        reason = _why_not(record, FEEDBACK_KEYS, model, since)
        if reason == "invalid" or (reason is None
                                   and not isinstance(record["reward"], int | float)):
            invalid += 1
        elif reason is None:
            rewards[str(record["version"])].append(float(record["reward"]))
    every = [r for values in rewards.values() for r in values]
    per_version = {v: {"count": len(rewards[v]), "accuracy": mean(rewards[v])}
                   for v in sorted(rewards, key=version_order)}
    return {"count": len(every), "accuracy": mean(every), "per_version": per_version,
            "damaged_lines": stats["skipped"], "invalid": invalid}


def version_order(version: str) -> tuple:
    """Versions in numeric order ("2" before "10")."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)
