"""The monitor report: the served model's live predictions against its reference.

Compares the model's predictions in the serving prediction log with the train
split of the experiment's snapshot, summarised by the served package's own
encoder (:mod:`dlforge.monitor.reference`), and writes in ``out_dir``
(:class:`~dlforge.core.layout.MonitorFiles`):

    report.json   counts per version, the window, label and input drift (PSI),
                  latency percentiles, accuracy on feedback, the thresholds and
                  the decision with its reasons
    labels.png    label shares, train split vs predictions (top 20)
    inputs.png    input histograms, train split vs live

The ``dlforge monitor`` stage (:func:`dlforge.stages.monitor.monitor`) also logs
it as an MLflow run and raises a retrain request on drift.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlforge.core.layout import MonitorFiles
from dlforge.core.settings import Settings, above, at_least
from dlforge.monitor import compare
from dlforge.monitor.decision import Thresholds, decide
from dlforge.monitor.reference import Reference, reference_stats
from dlforge.monitor.traffic import Traffic, read_feedback, read_predictions, version_order

if TYPE_CHECKING:
    from dlforge.data.snapshot import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorSettings(Settings):
    """The settings of ``dlforge monitor`` (conf/monitor.yaml), checked once at its start.

    Args:
        log_dir: the folder the server writes its prediction and feedback logs to.
        out_dir: where report.json and the plots go.
        cache_dir: where registered packages are kept, as serving keeps them.
        alias: the served version, whose encoder summarises the train inputs.
        window_hours: only predictions this recent; None: the whole log.
        reference_rows: train inputs summarised (an even sample of larger splits);
            None: all.
        input_bins: input PSI bins, at the train split's quantiles.
        thresholds: when it is drift.
    """

    SOURCE = "conf/monitor.yaml"

    log_dir: str
    out_dir: str
    cache_dir: str
    alias: str
    window_hours: float | None = field(metadata=above(0))
    reference_rows: int | None = field(metadata=at_least(1))
    input_bins: int = field(metadata=at_least(2))
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_config(cls, node: Any, prefix: str = "") -> MonitorSettings:
        """From the monitor config; ``thresholds`` is checked as :class:`Thresholds`."""
        key = f"{prefix}.thresholds" if prefix else "thresholds"
        thresholds = Thresholds.from_config(node.get("thresholds") or {}, key)
        return dataclasses.replace(super().from_config(node, prefix), thresholds=thresholds)


def window_start(hours: float | None, now: float) -> float | None:
    """The earliest log time monitored (unix s), or None for the whole log."""
    return None if hours is None else now - hours * 3600


def make_report(experiment: str, model_name: str, served: tuple[object, dict],
                snapshot: Snapshot, settings: MonitorSettings,
                since: float | None) -> tuple[dict, Reference, Traffic]:
    """The report (without run id and retrain request), the reference and the traffic.

    Args:
        served: the served package and where it came from (see
            :func:`dlforge.monitor.reference.served_package`).
        snapshot: the snapshot the model was trained on.
        since: the window's start (see :func:`window_start`).
    """
    model, package = served
    log_dir = Path(settings.log_dir)
    reference = reference_stats(snapshot, model.encoder, settings.reference_rows)
    traffic = read_predictions(log_dir, model_name, since)
    feedback = read_feedback(log_dir, model_name, since)
    report = {"experiment": experiment, "model": model_name,
              "reference": {**package, "snapshot": reference.snapshot,
                            "examples": reference.examples},
              "window": {"hours": settings.window_hours, "since": since,
                         "first": traffic.first, "last": traffic.last},
              "log": _log_state(log_dir, traffic, feedback),
              **build(reference, traffic, feedback, model.encoder.kind, settings.input_bins,
                      settings.thresholds)}
    report["notes"] = _notes(report, model.labels, reference.labels)
    return report, reference, traffic


def build(reference, traffic, feedback: dict, kind: str, bins: int,
          thresholds: Thresholds) -> dict:
    """The comparison part of the report: counts, drift, latency, feedback, decision."""
    labels = compare.labels(reference.labels, traffic.labels)
    inputs = compare.inputs(kind, reference, traffic, bins)
    per_version = {v: traffic.versions[v] for v in sorted(traffic.versions, key=version_order)}
    return {
        "counts": {"predictions": traffic.predictions, "per_version": per_version,
                   "left_out": dict(sorted(traffic.left_out.items())),
                   "without_input_summary": traffic.predictions - traffic.summarised,
                   "damaged_lines": traffic.damaged_lines},
        "versions": list(per_version),
        "labels": labels,
        "inputs": inputs,
        "latency_ms": compare.latency(traffic),
        "feedback": feedback,
        "thresholds": thresholds.as_dict(),
        "decision": decide(traffic.predictions, labels, inputs, feedback, thresholds),
        "retrain": None,
    }


def _log_state(folder: Path, traffic, feedback: dict) -> dict:
    return {"folder": str(folder), "exists": folder.is_dir(), "files": traffic.files,
            "damaged_lines": traffic.damaged_lines,
            "feedback_damaged_lines": feedback["damaged_lines"]}


def _notes(report: dict, model_labels: list[str], train_labels) -> list[str]:
    """What a reader of the report should know before trusting its numbers."""
    state, notes = report["log"], []
    if report["reference"].get("note"):
        notes.append(report["reference"]["note"])
    if not state["exists"]:
        notes.append(f"no prediction log at {state['folder']}: the server logs there "
                     "(log_dir in conf/serve.yaml); set log_dir to the folder it writes")
    damaged = state["damaged_lines"] + state["feedback_damaged_lines"]
    if damaged:
        notes.append(f"{damaged} damaged line(s) in the logs under {state['folder']} were "
                     "skipped (a writer killed mid-line); nothing to fix unless this grows")
    if sorted(model_labels) != sorted(train_labels):
        notes.append("the served model's labels differ from the snapshot's train labels: "
                     "it was trained on another snapshot than paths.exp_dir/snapshot.json")
    return notes


def write_report(out: MonitorFiles, report: dict, reference: Reference,
                 traffic: Traffic) -> list[Path]:
    """Write the report and its two plots; return their paths."""
    from dlforge.core.io import write_json_atomic
    from dlforge.monitor.plots import plot_inputs, plot_labels

    write_json_atomic(out.report, report)
    plot_labels(out.labels, report["labels"]["top"])
    plot_inputs(out.inputs, report["inputs"]["kind"], reference, traffic)
    return [out.report, out.labels, out.inputs]


def log_decision(report: dict) -> None:
    """The decision and its reasons as a log line, each note as a warning."""
    decision = report["decision"]
    log.info("monitor %s: %s on %d predictions%s", report["model"], decision["status"],
             report["counts"]["predictions"],
             f" ({'; '.join(decision['reasons'])})" if decision["reasons"] else "")
    for note in report["notes"]:
        log.warning("%s", note)


def summary(report: dict, path: Path) -> dict:
    """What the CLI prints: the decision and the headline numbers."""
    inputs = report["inputs"]
    return {"experiment": report["experiment"], "model": report["model"],
            "versions": report["versions"], "predictions": report["counts"]["predictions"],
            "status": report["decision"]["status"], "drift": report["decision"]["drift"],
            "reasons": report["decision"]["reasons"], "label_psi": report["labels"]["psi"],
            "input_psi": inputs.get("tokens_psi", inputs.get("intensity_psi")),
            "latency_p95_ms": report["latency_ms"]["p95"],
            "feedback_accuracy": report["feedback"]["accuracy"],
            "retrain_request": (report["retrain"] or {}).get("request"),
            "report": str(path), "run_id": report["run_id"]}
