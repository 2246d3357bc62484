"""Training faults and scale-out: kill -9 and resume; DDP with 2 processes (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from dlforge.core.tracking import setup_tracking_uri
from tests.conftest import ROOT
from tests.train.conftest import FAST, SMALL_MODEL, make_snapshot, toy_rows
from tests.train.test_cost import check_run_cost

pytestmark = pytest.mark.slow


def start_train(root: Path, mlflow_dir: Path, *overrides: str) -> subprocess.Popen:
    args = ["experiment=intent", f"paths.root={root}", f"paths.mlflow_dir={mlflow_dir}",
            "dataset.name=toy", f"tracking.experiment=faults-{root.name}", *FAST, *SMALL_MODEL,
            *overrides]
    return subprocess.Popen([sys.executable, "-m", "dlforge", "train", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mlflow_runs(mlflow_dir: Path, experiment: str):
    from omegaconf import OmegaConf

    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{mlflow_dir}/mlflow.db"}))
    found = mlflow.get_experiment_by_name(experiment)
    return mlflow.MlflowClient().search_runs([found.experiment_id])


def test_sigkill_mid_training_then_the_same_command_resumes(tmp_path, mlflow_dir):
    make_snapshot(tmp_path, toy_rows(1500))
    overrides = ("trainer.max_epochs=4", "~callbacks.early_stopping", "datamodule.batch_size=8")
    last = tmp_path / "outputs/intent/train/checkpoints/last.ckpt"
    process = start_train(tmp_path, mlflow_dir, *overrides)
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training ended before its first checkpoint"
    time.sleep(0.5)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = json.loads((tmp_path / "outputs/intent/train/run.json").read_text())
    assert state["status"] == "running"
    (run,) = mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}")
    assert run.info.status == "RUNNING"
    listed = subprocess.run([sys.executable, "-m", "dlforge", "runs", "--tracking-uri",
                             f"sqlite:///{mlflow_dir}/mlflow.db", "list", "--experiment",
                             f"faults-{tmp_path.name}", "--json"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    (listed_run,) = json.loads(listed.stdout)
    assert (listed_run["run_id"], listed_run["status"]) == (run.info.run_id, "interrupted")
    assert listed_run["snapshot"] and listed_run["experiment"] == "intent"

    resumed = start_train(tmp_path, mlflow_dir, *overrides)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming MLflow run" in err
    (run,) = mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}")  # still exactly one run
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    steps = {m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/acc")}
    assert steps == set(range(4))
    metrics = json.loads((tmp_path / "outputs/intent/train/metrics.json").read_text())
    assert metrics["epochs"] == 4
    history = (tmp_path / "outputs/intent/train/history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(4)]


def test_a_changed_config_does_not_resume_and_ends_the_old_run(tmp_path, mlflow_dir):
    make_snapshot(tmp_path, toy_rows(1500))
    last = tmp_path / "outputs/intent/train/checkpoints/last.ckpt"
    process = start_train(tmp_path, mlflow_dir, "trainer.max_epochs=4", "datamodule.batch_size=8")
    while not last.exists() and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    other = start_train(tmp_path, mlflow_dir, "trainer.max_epochs=2", "datamodule.batch_size=8")
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    statuses = sorted(r.info.status for r in mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}"))
    assert statuses == ["FINISHED", "KILLED"]


def test_ddp_with_two_processes_gives_one_run_and_identical_ranks(tmp_path, mlflow_dir):
    make_snapshot(tmp_path, toy_rows(400))
    process = start_train(tmp_path, mlflow_dir, "trainer=ddp", "trainer.devices=2",
                          "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    (run,) = mlflow_runs(mlflow_dir, f"faults-{tmp_path.name}")
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
    cost = json.loads((tmp_path / "outputs/intent/train/metrics.json").read_text())["cost"]
    check_run_cost(cost, run.data.metrics)
    assert cost["cpu_seconds"] > 1.0


def test_cfg_job_prints_the_resolved_config_and_runs_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dlforge", "train", "experiment=intent",
                          "trainer.max_epochs=3", "model=text_cnn", "--cfg", "job"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "max_epochs: 3" in out.stdout and "dlforge.models.text.TextCNN" in out.stdout
