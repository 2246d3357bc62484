"""``dlforge monitor experiment=X``: is the served model still seeing what it was trained on?

Compares the registered model's live predictions (the serving prediction log
in ``log_dir``) with the train split of the experiment's snapshot, summarised
by the served package's own encoder, and writes under ``out_dir``:

    report.json   counts per version, the window, label and input drift (PSI),
                  latency percentiles, accuracy on feedback, the thresholds and
                  the decision with its reasons
    labels.png    label shares, train split vs predictions (top 20)
    inputs.png    input histograms, train split vs live

The report is also an MLflow run named ``monitor`` (numbers as metrics, files
as artifacts). On drift the retrain marker ``paths.exp_dir/retrain.json``
gets a new request (see :mod:`dlforge.monitor.retrain`).

    dlforge monitor experiment=intent
    dlforge monitor experiment=intent window_hours=24 thresholds.label_psi=0.1
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.monitor import compare
from dlforge.monitor.decision import Thresholds, decide
from dlforge.monitor.reference import reference_stats, served_package, snapshot_folder
from dlforge.monitor.retrain import request_retrain
from dlforge.monitor.traffic import read_feedback, read_predictions, version_order

log = logging.getLogger(__name__)


def monitor(cfg: DictConfig) -> dict:
    """The monitor stage. Returns a summary of ``report.json``."""
    from dlforge.core.io import write_json_atomic
    from dlforge.monitor.tracking import log_results, monitor_run

    thresholds = Thresholds.from_config(cfg.thresholds)
    check_settings(cfg.reference_rows, cfg.input_bins)
    since = window_start(cfg.window_hours, time.time())
    exp_dir, out = Path(cfg.paths.exp_dir), Path(cfg.out_dir)
    snapshot = snapshot_folder(exp_dir, cfg.experiment_name)
    name = cfg.registry.model_name
    with monitor_run(cfg.tracking, cfg.experiment_name, name) as (client, run_id):
        report, reference, traffic = _compare(cfg, client, snapshot, since, thresholds)
        report["run_id"] = run_id
        if report["decision"]["drift"]:
            report["retrain"] = request_retrain(exp_dir, report["decision"]["reasons"],
                                                out / "report.json")
        write_json_atomic(out / "report.json", report)
        files = [out / "report.json", *_plot(out, report, reference, traffic)]
        log_results(client, run_id, report, files)
    _log_decision(report)
    return summary(report, out / "report.json")


def _compare(cfg: DictConfig, client, snapshot: Path, since: float | None,
             thresholds: Thresholds) -> tuple[dict, object, object]:
    """The report (without run id and retrain request), the reference and the traffic."""
    name, log_dir = cfg.registry.model_name, Path(cfg.log_dir)
    model, package = served_package(client, name, cfg.alias, Path(cfg.cache_dir),
                                    Path(cfg.paths.train_dir))
    reference = reference_stats(snapshot, model.encoder, cfg.reference_rows)
    traffic = read_predictions(log_dir, name, since)
    feedback = read_feedback(log_dir, name, since)
    report = {"experiment": cfg.experiment_name, "model": name,
              "reference": {**package, "snapshot": reference.snapshot,
                            "examples": reference.examples},
              "window": {"hours": cfg.window_hours, "since": since, "first": traffic.first,
                         "last": traffic.last},
              "log": _log_state(log_dir, traffic, feedback),
              **build(reference, traffic, feedback, model.encoder.kind, int(cfg.input_bins),
                      thresholds)}
    report["notes"] = _notes(report, model.labels, reference.labels)
    return report, reference, traffic


def check_settings(reference_rows: int | None, input_bins: int) -> None:
    """``reference_rows`` and ``input_bins`` of conf/monitor.yaml, or an error naming the fix."""
    if reference_rows is not None and (not isinstance(reference_rows, int)
                                       or isinstance(reference_rows, bool)
                                       or reference_rows < 1):
        raise DlforgeError(f"reference_rows={reference_rows!r} in conf/monitor.yaml. Fix: a "
                           "number of train examples >= 1, or null for all")
    if isinstance(input_bins, bool) or not isinstance(input_bins, int) or input_bins < 2:
        raise DlforgeError(f"input_bins={input_bins!r} in conf/monitor.yaml. Fix: a whole "
                           "number >= 2")


def window_start(hours: float | None, now: float) -> float | None:
    """The earliest log time monitored (unix s), or None for the whole log."""
    if hours is None:
        return None
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise DlforgeError(f"window_hours={hours!r} in conf/monitor.yaml. Fix: a number of "
                           "hours > 0, or null for the whole log")
    return now - float(hours) * 3600


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


def _plot(out: Path, report: dict, reference, traffic) -> list[Path]:
    from dlforge.monitor.plots import plot_inputs, plot_labels

    plot_labels(out / "labels.png", report["labels"]["top"])
    plot_inputs(out / "inputs.png", report["inputs"]["kind"], reference, traffic)
    return [out / "labels.png", out / "inputs.png"]


def _log_decision(report: dict) -> None:
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
