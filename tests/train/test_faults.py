"""Training faults and scale-out: kill -9 and resume; DDP with 2 processes (gloo).

A real ``dlforge train`` process is started only where it is killed; what runs
after the kill is the same command's config trained in this process
(:func:`same_command`), which resumes exactly as a new process would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from omegaconf import DictConfig

from dlforge.core.config import compose
from dlforge.core.tracking import setup_tracking_uri
from dlforge.stages.config import stage_overrides
from dlforge.stages.train import train
from dlforge.train.runs import list_runs
from tests.helpers import ROOT, wait_for
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows
from tests.train.test_cost import check_run_cost

pytestmark = pytest.mark.slow

# Four epochs without early stopping: the first checkpoint comes with three to go.
RESUMABLE = ("trainer.max_epochs=4", "~callbacks.early_stopping", "datamodule.batch_size=8")


def train_args(root: Path, mlflow_dir: Path, *overrides: str) -> list[str]:
    return ["experiment=intent", f"paths.root={root}", f"paths.mlflow_dir={mlflow_dir}",
            "dataset.name=toy", f"tracking.experiment=faults-{root.name}", *FAST, *SMALL_MODEL,
            *overrides]


def start_train(root: Path, mlflow_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlforge", "train",
                             *train_args(root, mlflow_dir, *overrides)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def same_command(root: Path, mlflow_dir: Path, *overrides: str) -> DictConfig:
    """The config that ``dlforge train`` with these overrides composes in ROOT
    (params.yaml's values, then the command line), to train in this process."""
    return compose("train", stage_overrides("train", train_args(root, mlflow_dir, *overrides)))


def kill_after_a_checkpoint(process: subprocess.Popen, root: Path, mlflow_dir: Path) -> None:
    """SIGKILL the training ``process`` under ``root`` in the middle of training, once
    its last checkpoint loads and the MLflow run has that epoch's metrics (logged
    asynchronously, after the checkpoint).

    The process is stopped before its files are read, so it cannot finish meanwhile;
    a checkpoint being written, or metrics on their way, are waited for.
    """
    import torch

    train_dir = root / "outputs/intent/train"

    def logged_epochs() -> set[int]:
        run_id = json.loads((train_dir / "run.json").read_text())["run_id"]
        db = sqlite3.connect(f"file:{mlflow_dir}/mlflow.db?mode=ro", uri=True, timeout=0.5)
        with contextlib.closing(db):
            return {step for (step,) in db.execute(
                "SELECT step FROM metrics WHERE run_uuid = ? AND key = 'val/acc'", (run_id,))}

    def stopped_with_a_checkpoint() -> bool:
        last = train_dir / "checkpoints/last.ckpt"
        if not last.is_file():
            return False
        os.kill(process.pid, signal.SIGSTOP)
        try:
            epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
            if epoch in logged_epochs():
                return True
        except (OSError, KeyError, ValueError, RuntimeError, EOFError, sqlite3.Error):
            pass  # still being written, or the stopped process holds the store's lock
        os.kill(process.pid, signal.SIGCONT)
        return False

    wait_for(stopped_with_a_checkpoint, process, seconds=240, poll=0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def mlflow_runs(mlflow_dir: Path, experiment: str):
    from omegaconf import OmegaConf

    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{mlflow_dir}/mlflow.db"}))
    found = mlflow.get_experiment_by_name(experiment)
    return mlflow.MlflowClient().search_runs([found.experiment_id])


def test_sigkill_mid_training_then_the_same_command_resumes(tmp_path, mlflow_dir, caplog,
                                                           monkeypatch):
    monkeypatch.chdir(ROOT)  # where `dlforge train` ran: its params.yaml
    make_snapshot(tmp_path, toy_rows(600))
    kill_after_a_checkpoint(start_train(tmp_path, mlflow_dir, *RESUMABLE), tmp_path,
                            mlflow_dir)
    state = json.loads((tmp_path / "outputs/intent/train/run.json").read_text())
    assert state["status"] == "running"
    (run,) = mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}")
    assert run.info.status == "RUNNING"
    (listed,) = list_runs(f"faults-{tmp_path.name}")  # what `dlforge runs list` shows
    assert (listed["run_id"], listed["status"]) == (run.info.run_id, "interrupted")
    assert listed["snapshot"] and listed["experiment"] == "intent"

    with caplog.at_level(logging.INFO, logger="dlforge"):
        metrics = train(same_command(tmp_path, mlflow_dir, *RESUMABLE))
    assert "resuming MLflow run" in caplog.text
    (run,) = mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}")  # still exactly one run
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    steps = {m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/acc")}
    assert steps == set(range(4))
    assert metrics["epochs"] == 4
    assert json.loads((tmp_path / "outputs/intent/train/metrics.json").read_text()) == metrics
    history = (tmp_path / "outputs/intent/train/history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(4)]


def test_a_changed_config_does_not_resume_and_ends_the_old_run(tmp_path, mlflow_dir, caplog,
                                                             monkeypatch):
    monkeypatch.chdir(ROOT)
    make_snapshot(tmp_path, toy_rows(600))
    kill_after_a_checkpoint(start_train(tmp_path, mlflow_dir, *RESUMABLE), tmp_path,
                            mlflow_dir)
    changed = [o for o in RESUMABLE if not o.startswith("trainer.max_epochs")]
    with caplog.at_level(logging.INFO, logger="dlforge"):
        metrics = train(same_command(tmp_path, mlflow_dir, *changed, "trainer.max_epochs=2"))
    assert "resuming MLflow run" not in caplog.text and metrics["epochs"] == 2
    statuses = sorted(r.info.status for r in mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}"))
    assert statuses == ["FINISHED", "KILLED"]


def test_ddp_with_two_processes_gives_one_run_and_identical_ranks(train_cfg, tmp_path):
    cfg = train_cfg("trainer=ddp", "trainer.devices=2", "trainer.max_epochs=2",
                    "trainer.enable_progress_bar=false")
    cost = train(cfg)["cost"]  # this process launches the ranks, as `dlforge train` would
    (run,) = mlflow_runs(Path(cfg.paths.mlflow_dir), cfg.tracking.experiment)
    assert run.info.status == "FINISHED"
    ranks = [json.loads(p.read_text())
             for p in sorted((tmp_path / "outputs/intent/train/ranks").glob("rank*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["metrics"]["val/acc"] == ranks[1]["metrics"]["val/acc"]  # synchronised
    frozen = (tmp_path / "outputs/intent/train/config.yaml").read_text()
    assert f"run_id: {run.info.run_id}" in frozen
    # The launcher, which only waits, measured the ranks it started: two processes that
    # import torch and Lightning and train take well over a CPU second.
    assert json.loads((tmp_path / "outputs/intent/train/metrics.json").read_text())["cost"] == cost
    check_run_cost(cost, run.data.metrics)
    assert cost["cpu_seconds"] > 1.0


def test_cfg_job_prints_the_resolved_config_and_runs_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dlforge", "train", "experiment=intent",
                          "trainer.max_epochs=3", "model=text_cnn", "--cfg", "job"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "max_epochs: 3" in out.stdout and "dlforge.models.text.TextCNN" in out.stdout
