"""The monitor run in MLflow: one run named ``monitor`` per report, in the experiment's
tracking experiment, with the report's numbers as metrics and its files as artifacts."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

METRIC_SECTIONS = ("counts", "labels", "inputs", "latency_ms", "feedback")


@contextlib.contextmanager
def monitor_run(tracking: DictConfig, experiment: str, model_name: str) -> Iterator[tuple]:
    """Yield ``(client, run_id)`` of a new run; it ends FINISHED, or FAILED on an error."""
    import mlflow

    from dlforge import __version__
    from dlforge.core.tracking import git_state, setup_mlflow

    experiment_id = setup_mlflow(tracking)
    client = mlflow.MlflowClient()
    tags = {"dlforge.experiment": experiment, "dlforge.stage": "monitor",
            "dlforge.model": model_name, "dlforge.version": __version__, **git_state(),
            **{k: str(v) for k, v in (tracking.get("tags") or {}).items()}}
    run_id = client.create_run(experiment_id, run_name="monitor", tags=tags).info.run_id
    status = "FAILED"
    try:
        yield client, run_id
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)


def metrics_of(report: dict) -> dict[str, float]:
    """The report's numbers as flat metric names (``labels.psi``, ``latency_ms.p95``, ...)."""
    from dlforge.core.config import dotted

    sections = {k: report[k] for k in METRIC_SECTIONS if isinstance(report.get(k), dict)}
    out = {name: float(value) for name, value in dotted(sections).items()
           if isinstance(value, int | float) and not isinstance(value, bool)
           and math.isfinite(value)}  # lists, text and None are not metrics
    drift = report["decision"]["drift"]
    if drift is not None:
        out["drift"] = float(drift)
    return out


def log_results(client, run_id: str, report: dict, files: list[Path]) -> None:
    """Metrics, the decision as tags, and ``files`` as artifacts of the run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in sorted(metrics_of(report).items())]
    for start in range(0, len(metrics), 1000):  # MLflow takes 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    client.set_tag(run_id, "dlforge.decision", report["decision"]["status"])
    versions = ",".join(report["counts"]["per_version"])
    if versions:
        client.set_tag(run_id, "dlforge.versions", versions)
    for path in files:
        client.log_artifact(run_id, str(path))
