"""What the sweep tests read: a sweep's study, summary and MLflow runs, and a worker
stopped in the middle of a trial."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import mlflow
import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from dlforge.core.layout import TrainFiles
from dlforge.core.tracking import setup_tracking_uri


def load_study(sweep_dir: Path) -> optuna.Study:
    """The study recorded in ``summary.json`` (or the only one in the journal)."""
    from dlforge.hpo.study import open_storage

    storage = open_storage(str(sweep_dir / "study.journal"))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def runs(mlflow_dir: Path, experiment: str) -> list:
    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{mlflow_dir}/mlflow.db"}))
    found = mlflow.get_experiment_by_name(experiment)
    return mlflow.MlflowClient().search_runs([found.experiment_id]) if found else []


def summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "summary.json").read_text())


def stop_one_mid_training(trials, mlflow_dir: Path) -> optuna.trial.FrozenTrial | None:
    """SIGSTOP the worker of a RUNNING trial among ``trials`` whose MLflow run is still
    RUNNING, that is, one frozen in the middle of training, and return that trial
    (None if there is none yet). A kill from there leaves a run to mark KILLED.

    Each worker looked at is stopped before its run's status is read, so the run
    cannot end meanwhile, and resumed unless it is the one returned. The status is
    read from the store's file with a short timeout: a stopped worker may hold its
    write lock, and a long wait would let its heartbeat go stale.
    """
    for trial in trials:
        pid, folder = trial.user_attrs.get("dlforge.pid"), trial.user_attrs.get("dlforge.dir")
        if trial.state != TrialState.RUNNING or not trial.params or None in (pid, folder):
            continue
        os.kill(pid, signal.SIGSTOP)
        status = None
        try:
            run_id = json.loads(TrainFiles(Path(folder)).run_state.read_text())["run_id"]
            db = sqlite3.connect(f"file:{mlflow_dir}/mlflow.db?mode=ro", uri=True, timeout=0.5)
            with contextlib.closing(db):
                row = db.execute("SELECT status FROM runs WHERE run_uuid = ?",
                                 (run_id,)).fetchone()
            status = row and row[0]
        except (OSError, KeyError, ValueError, sqlite3.Error):
            pass  # not started yet, or the stopped worker holds the store's lock
        if status == "RUNNING":
            return trial
        os.kill(pid, signal.SIGCONT)
    return None
