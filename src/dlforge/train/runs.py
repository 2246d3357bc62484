"""Training runs as MLflow records them: status, experiment, snapshot, metrics.

A run is running, finished, failed or killed; a run whose process died
without ending it (kill -9, a lost machine) shows as ``interrupted``: running
the same ``dlforge train`` again resumes it. ``dlforge runs`` prints these.
"""

from __future__ import annotations

import socket
import time

from dlforge.core.errors import NotFound
from dlforge.core.process import pid_alive
from dlforge.core.tracking import Tag

SHOWN_METRICS = ("val/acc", "val/f1", "val/loss", "test/acc")


def summary(run) -> dict:
    """What a user asks about a run: status, experiment, snapshot, metrics, duration."""
    info, tags = run.info, run.data.tags
    end = info.end_time or int(time.time() * 1000)
    return {
        "run_id": info.run_id,
        "status": _status(info.status, tags),
        "experiment": tags.get(Tag.EXPERIMENT),
        "dataset": tags.get(Tag.DATASET),
        "snapshot": tags.get(Tag.SNAPSHOT),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000)),
        "duration_s": round((end - info.start_time) / 1000, 1),
        "metrics": dict(sorted(run.data.metrics.items())),
    }


def _status(status: str, tags: dict) -> str:
    if status == "RUNNING" and tags.get(Tag.HOST) == socket.gethostname():
        pid = int(tags.get(Tag.PID, "0") or 0)
        if pid and not pid_alive(pid):
            return "interrupted"
    return status.lower()


def list_runs(experiment: str | None = None) -> list[dict]:
    import mlflow

    client = mlflow.MlflowClient()
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments if experiment in (None, e.name)]
    if experiment and not ids:
        names = ", ".join(e.name for e in experiments) or "none yet"
        raise NotFound(f"no MLflow experiment '{experiment}' (experiments: {names}). "
                       f"Fix: train it with `dlforge train experiment={experiment}`")
    runs = client.search_runs(ids, filter_string="tags.`dlforge.stage` = 'train'",
                              order_by=["attributes.start_time DESC"]) if ids else []
    return [summary(r) for r in runs]


def show_run(run_id: str) -> dict:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise NotFound(f"no run {run_id!r}. Fix: see `dlforge runs list`") from None
    out = summary(run)
    out["params"] = dict(sorted(run.data.params.items()))
    out["tags"] = {k: v for k, v in sorted(run.data.tags.items()) if k.startswith("dlforge.")}
    return out
