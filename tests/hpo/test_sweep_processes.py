"""Sweeps across processes: SIGKILL mid-sweep with two workers, then the same
command finishes the study; a DDP trial pruned on all its ranks at once.

A real ``dlforge sweep`` process is started where it is killed or where two must
run side by side; the sweep after a kill runs the same command's config in this
process (:func:`same_command`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.core.process import pid_alive
from dlforge.stages.config import stage_overrides
from dlforge.stages.sweep import sweep
from tests.helpers import ROOT, wait_for
from tests.sweeps import load_study, runs, stop_one_mid_training, summary
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows

pytestmark = pytest.mark.slow


def sweep_args(root: Path, mlflow_dir: Path, *overrides: str) -> list[str]:
    return ["experiment=intent", f"paths.root={root}", f"paths.mlflow_dir={mlflow_dir}",
            "dataset.name=toy", f"tracking.experiment=sweep-faults-{root.name}", *FAST,
            *SMALL_MODEL, "hpo/sampler=random", "hpo/pruner=none", "hpo.n_trials=3",
            "hpo.n_workers=2", "hpo.overrides.trainer.max_epochs=3", "~callbacks.early_stopping",
            *overrides]


def start_sweep(root: Path, mlflow_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlforge", "sweep",
                             *sweep_args(root, mlflow_dir, *overrides)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def same_command(root: Path, mlflow_dir: Path, *overrides: str) -> DictConfig:
    """The config that ``dlforge sweep`` with these overrides composes in ROOT
    (params.yaml's values, then the command line), to sweep in this process."""
    return compose("sweep", stage_overrides("sweep", sweep_args(root, mlflow_dir, *overrides)))


def states(sweep_dir: Path) -> dict[int, optuna.trial.FrozenTrial]:
    if not (sweep_dir / "study.journal").is_file():
        return {}
    try:
        return {t.number: t for t in load_study(sweep_dir).get_trials()}
    except ValueError:  # the study is not created yet
        return {}


def test_sigkill_mid_sweep_then_the_same_command_completes_the_study(tmp_path, mlflow_dir,
                                                                     caplog, monkeypatch):
    monkeypatch.chdir(ROOT)  # where `dlforge sweep` ran: its params.yaml
    # The third trial starts when the first ends: a trial is then caught mid-training.
    make_snapshot(tmp_path, toy_rows(1000))
    out = tmp_path / "outputs/intent/sweep"
    process = start_sweep(tmp_path, mlflow_dir)

    def one_done_and_one_stopped_mid_training():
        found = states(out).values()
        if any(t.state == TrialState.COMPLETE for t in found):
            return stop_one_mid_training(found, mlflow_dir)
        return None

    stopped = wait_for(one_done_and_one_stopped_mid_training, process, seconds=240)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = states(out)
    running = [t for t in before.values() if t.state == TrialState.RUNNING]
    complete = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    # The workers die with the sweep that started them: no orphan keeps training. (A
    # trial killed between its claim and its owner's record names no process.)
    pids = [t.user_attrs["dlforge.pid"] for t in running if "dlforge.pid" in t.user_attrs]
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a sweep worker outlived the killed sweep"
        time.sleep(0.1)

    with caplog.at_level(logging.INFO, logger="dlforge"):
        sweep(same_command(tmp_path, mlflow_dir))  # its two workers are processes again
    assert "was interrupted" in caplog.text
    after = states(out)
    for number, trial in complete.items():  # completed trials are kept, never re-run
        assert after[number].state == TrialState.COMPLETE
        assert after[number].value == trial.value
    for trial in running:  # failed as interrupted, and their parameters tried again
        assert after[trial.number].state == TrialState.FAIL
        assert after[trial.number].user_attrs["dlforge.interrupted"] is True
        (retry,) = [t for t in after.values()
                    if t.user_attrs.get("dlforge.retry_of") == trial.number]
        assert retry.state == TrialState.COMPLETE
        # The parameters it had drawn are tried again (a kill between two draws
        # leaves the rest to the sampler).
        assert trial.params.items() <= retry.params.items()
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 3
    assert len(after) == 3 + len(running)
    assert (out / "best.yaml").is_file()

    found = runs(mlflow_dir, f"sweep-faults-{tmp_path.name}")
    assert not [r for r in found if r.info.status == "RUNNING"]
    lost = {str(t.number) for t in running}
    assert stopped.number in {t.number for t in running}
    # The run of the trial killed in the middle of training is KILLED. The other
    # worker's trial may have ended its run just before the kill (FINISHED). Either
    # way the runs of lost trials carry the study's verdict.
    ends = {(r.data.tags["dlforge.trial"], r.info.status, r.data.tags.get("dlforge.trial_state"))
            for r in found if r.data.tags.get("dlforge.trial") in lost}
    assert (str(stopped.number), "KILLED", "FAIL") in ends
    assert {(status, verdict) for _, status, verdict in ends} <= {("KILLED", "FAIL"),
                                                                  ("FINISHED", "FAIL")}


def test_a_ddp_trial_is_pruned_on_every_rank_at_the_same_epoch(sweep_cfg, tmp_path):
    # A threshold no epoch reaches: the one trial is pruned at its first epoch, a
    # decision rank 0 takes and every rank must follow. A study with no completed
    # trial then fails, after writing its summary.
    cfg = sweep_cfg("trainer=ddp", "trainer.devices=2", "trainer.enable_progress_bar=false",
                    "hpo.n_trials=1", "trainer.max_epochs=3", "~callbacks.early_stopping")
    with open_dict(cfg):
        cfg.hpo.pruner = OmegaConf.create({"_target_": "optuna.pruners.ThresholdPruner",
                                           "lower": 1.01})
    # A rank that stopped alone would leave the other one hanging.
    with pytest.raises(DlforgeError, match=r"no trial .* completed \(\{'PRUNED': 1\}\)"):
        sweep(cfg)
    (pruned,) = summary(tmp_path / "outputs/intent/sweep")["trials"]
    assert pruned["state"] == "PRUNED" and pruned["epochs"] < 3
    assert pruned["pruned_epoch"] == pruned["epochs"] - 1
    folder = Path(load_study(tmp_path / "outputs/intent/sweep").trials[0].user_attrs["dlforge.dir"])
    digests = {json.loads(p.read_text())["weights_sha256"] for p in folder.glob("ranks/*.json")}
    assert len(list(folder.glob("ranks/*.json"))) == 2
    assert len(digests) == 1  # both ranks stopped at the same step


def test_two_sweep_processes_on_one_rdb_storage_cooperate_on_one_study(tmp_path, mlflow_dir):
    make_snapshot(tmp_path, toy_rows(3000))  # trials long enough for both to take some
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # PostgreSQL: tests/hpo/test_postgres.py
    sweeps = [start_sweep(tmp_path, mlflow_dir, "hpo.n_workers=1", "hpo.n_trials=2",
                          f"hpo.storage={storage}") for _ in range(2)]
    for process in sweeps:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    # Claims are serialised (a lock file beside the database): the budget is exact.
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert {t.user_attrs["dlforge.pid"] for t in trials} == {p.pid for p in sweeps}
