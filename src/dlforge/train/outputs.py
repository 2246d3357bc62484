"""What rank 0 writes after training: package, metrics, history, plots, artifacts;
and what the process that started the training adds: the run's cost."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge import __version__
from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout, TrainFiles
from dlforge.models.package import save_package
from dlforge.train.cost import METRIC_PREFIX

log = logging.getLogger(__name__)


def write_outputs(cfg: DictConfig, trainer, weights: dict, data, history: list[dict],
                  test: dict, seconds: float, samples: int) -> dict:
    """Write the stage outputs under ``paths.train_dir``; return the metrics.

    ``weights`` is the network's full state dict (gathered from all shards);
    ``samples`` the training examples this process's fit went through.
    """
    files = ExperimentLayout.from_paths(cfg.paths).train
    _write_package(files.model, cfg, weights, data)
    _write_history(files.history, history)
    _plot(files.curves, history)
    epochs = len(history)
    metrics = {
        "epochs": epochs,
        "best_epoch": _best_epoch(trainer.checkpoint_callback, history),
        **{k: round(v, 6) for k, v in history[-1].items() if k.startswith(("train/", "val/"))},
        **{k: round(float(v), 6) for k, v in test.items()},
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(samples / seconds, 1) if seconds else None,
        **({"record": OmegaConf.to_container(cfg.record)} if cfg.get("record") else {}),
    }
    write_json_atomic(files.metrics, metrics)
    _log_artifacts(cfg.run_id, files, metrics)
    log.info("trained %s: %s", cfg.experiment_name,
             {k: metrics[k] for k in ("epochs", "val/acc", "test/acc") if k in metrics})
    return metrics


def _best_epoch(checkpoint, history: list[dict]) -> int:
    """The epoch whose weights were tested and packaged (the checkpoint's best)."""
    if not (checkpoint and checkpoint.best_model_path and checkpoint.monitor):
        return history[-1]["epoch"]
    best = float(checkpoint.best_model_score)
    return min(history, key=lambda r: abs(r.get(checkpoint.monitor, float("inf")) - best))["epoch"]


def _write_package(folder: Path, cfg: DictConfig, weights: dict, data) -> None:
    from hydra.utils import get_object

    if folder.exists():
        shutil.rmtree(folder)
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    arguments = {k: v for k, v in net_cfg.items()  # without Hydra's _target_, _convert_, ...
                 if not (k.startswith("_") and k.endswith("_"))}
    arguments.update(num_classes=data.num_classes, **data.encoder.model_inputs)
    info = {"dlforge_version": __version__, "experiment": cfg.experiment_name,
            "run_id": cfg.run_id, "dataset": data.manifest["dataset"],
            "snapshot": data.manifest["version"], "type": data.manifest["type"]}
    save_package(folder, weights, get_object(net_cfg["_target_"]), arguments, data.encoder,
                 data.labels, data.multi_label, info)


def _write_history(path: Path, history: list[dict]) -> None:
    columns = sorted({k for row in history for k in row} - {"epoch"})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["epoch", *columns])
        writer.writeheader()
        writer.writerows(history)


def _plot(path: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    epochs = [row["epoch"] for row in history]
    for ax, metric in zip(axes, ("loss", "acc", "f1"), strict=True):
        for split in ("train", "val"):
            values = [row.get(f"{split}/{metric}") for row in history]
            ax.plot(epochs, values, marker="o", label=split)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log_artifacts(run_id: str, files: TrainFiles, metrics: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    mlflow.flush_async_logging()  # the per-epoch metrics first, then the final ones
    for name, value in metrics.items():
        if value is not None and name.startswith("test/"):
            client.log_metric(run_id, name, value)
    for path in (files.curves, files.history, files.metrics, files.frozen_config):
        client.log_artifact(run_id, str(path))
    client.log_artifacts(run_id, str(files.model), "model")


def record_cost(frozen: dict, cost: dict) -> None:
    """Add the run's cost (:mod:`dlforge.train.cost`) to its ``metrics.json`` under
    ``cost``, and log it to the run as ``cost.*`` metrics, with the file."""
    import mlflow

    files = ExperimentLayout.from_paths(frozen["paths"]).train
    metrics = json.loads(files.metrics.read_text())
    write_json_atomic(files.metrics, {**metrics, "cost": cost})
    log_cost(frozen["run_id"], cost)
    mlflow.MlflowClient().log_artifact(frozen["run_id"], str(files.metrics))


def log_cost(run_id: str, cost: dict) -> None:
    """Log ``cost`` to the run as ``cost.<name>`` metrics (a finished run takes them too)."""
    import mlflow

    mlflow.MlflowClient().log_batch(run_id, metrics=[
        mlflow.entities.Metric(METRIC_PREFIX + name, value, int(time.time() * 1000), 0)
        for name, value in cost.items()])
