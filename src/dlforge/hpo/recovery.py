"""Trials lost with their worker: failed, their parameters queued again, their runs closed.

    recover(study, settings, tracking)   call it holding the claim lock

Two ways to notice a lost trial:

- its worker ran on this machine and its process is gone (a killed sweep): seen
  at once, on any storage;
- on RDB storage, its heartbeat stopped for ``hpo.grace_period`` seconds (a
  host that died, a SIGKILLed worker anywhere): seen by every host, and
  Optuna's retry callback queues it again (:class:`dlforge.hpo.study.RetryStale`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from dlforge.core.layout import TrainFiles
from dlforge.hpo import study as s

log = logging.getLogger(__name__)


def recover(study, settings: s.SweepSettings, tracking) -> list:
    """Fail the study's lost trials and queue them again; return them.

    Args:
        study: the study, opened with :func:`dlforge.hpo.study.open_study`.
        settings: the sweep's settings (``hpo.storage``, the heartbeat).
        tracking: the ``tracking`` config node, to close the trials' MLflow runs
            (only read when a trial was lost).
    """
    lost = []
    for trial in s.interrupted_trials(study, settings.storage):
        log.warning("trial %d was interrupted (process %s is gone): marking it failed and "
                    "queueing its parameters again", trial.number, trial.user_attrs.get(s.PID))
        s.mark_failed(study, trial, "interrupted: its process was killed")
        lost.append(trial)
    if settings.heartbeats:
        lost.extend(s.fail_stale(study))
    if lost:
        _close_runs(study, lost, tracking)
    return lost


def _close_runs(study, trials: list, tracking) -> None:
    """Close the lost trials' MLflow runs, and their run state where it is on this machine.

    Every run of a lost trial is tagged ``dlforge.trial_state=FAIL``, as the study
    has it; one still RUNNING is marked KILLED. A run can be FINISHED: the kill
    came after training and before the study was told, and the trial is retried
    all the same. Runs are found by tag (the kill may have come before the run id
    reached any file). A lost trial of another host may be tracked in a store
    this host cannot reach: that is logged, not raised.
    """
    import mlflow

    from dlforge.core.tracking import Tag, setup_mlflow
    from dlforge.train import tracking as train_tracking

    try:
        experiment_id = setup_mlflow(tracking)
        client = mlflow.MlflowClient()
        for trial in trials:
            query = (f"tags.`{Tag.STUDY}` = '{study.study_name}' and "
                     f"tags.`{Tag.TRIAL}` = '{trial.number}'")
            for run in client.search_runs([experiment_id], filter_string=query):
                client.set_tag(run.info.run_id, Tag.TRIAL_STATE, "FAIL")
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, status="KILLED")
    except Exception as err:  # noqa: BLE001 - the study is recovered either way
        log.warning("the MLflow runs of lost trials %s are left as they are: %s",
                    [t.number for t in trials], err)
    for trial in trials:
        state_file = TrainFiles(Path(trial.user_attrs.get(s.DIR, ""))).run_state
        state = train_tracking.read_state(state_file)
        if state.get("status") == "running":
            train_tracking.write_state(state_file, **{**state, "status": "killed"})
