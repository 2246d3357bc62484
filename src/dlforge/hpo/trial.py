"""One trial: the training config plus sampled overrides, trained, judged, told.

A trial trains exactly like ``dlforge train`` (``run_training``) with the
sampled values set in the config, its own folder as ``paths.train_dir``, the
pruning callback added and its MLflow run nested under the sweep's run. What
it cost is recorded on the trial (``dlforge.cost``): by the pruning callback at
each epoch while it runs, then in full when it ends.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.layout import ExperimentLayout, StudyFiles, TrainFiles
from dlforge.core.tracking import Tag
from dlforge.hpo import study as s
from dlforge.hpo.space import Param

log = logging.getLogger(__name__)


def trial_config(frozen: dict, trial, params: list[Param]) -> tuple[DictConfig, dict]:
    """The trial's training config and its sampled values."""
    sweep = frozen["sweep"]
    cfg = OmegaConf.create(copy.deepcopy(frozen["train"]))
    values = {p.key: p.suggest(trial) for p in params}
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    folder = StudyFiles(Path(sweep["folder"])).trial(trial.number).dir
    OmegaConf.update(cfg, "paths.train_dir", str(folder), merge=False)
    cfg.resume, cfg.launch, cfg.hpo.enabled = False, True, False
    if sweep["settings"]["n_workers"] > 1:  # their progress bars would interleave
        cfg.trainer.enable_progress_bar = False
    cfg.callbacks.pruning = {
        "_target_": "dlforge.hpo.pruning.OptunaPruning", "storage": sweep["storage"],
        "study_name": sweep["study"], "trial_id": trial._trial_id, "monitor": sweep["metric"],
        "pruner": frozen["train"]["hpo"]["pruner"],
    }
    cfg.tracking.run_name = f"trial-{trial.number}"
    cfg.tracking.tags = {"mlflow.parentRunId": sweep["parent_run"], Tag.STAGE: "sweep",
                         Tag.STUDY: sweep["study"], Tag.TRIAL: trial.number}
    return cfg, values


def run_trial(study, trial, frozen: dict, params: list[Param]):
    """Train ``trial`` and tell the study how it ended; return the trial's state.

    A trial that raises is told FAIL and the sweep goes on; an interrupt
    (Ctrl-C) fails it as interrupted, so a re-run retries it, and propagates.
    """
    from optuna.trial import TrialState

    cfg, values = trial_config(frozen, trial, params)
    files = ExperimentLayout.from_paths(cfg.paths).train
    trial.set_user_attr(s.DIR, str(files.dir))
    log.info("trial %d: %s", trial.number, " ".join(p.override(values[p.key]) for p in params))
    try:
        _train(trial, cfg, frozen["sweep"]["snapshot_path"])
    except KeyboardInterrupt:
        trial.set_user_attr(s.INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as err:  # a failed trial is a result: record it, go on
        log.warning("trial %d failed: %s", trial.number, err)
        trial.set_user_attr(s.ERROR, f"{type(err).__name__}: {err}"[:2000])
        return _finish(study, trial, files, TrialState.FAIL)
    finally:
        shutil.rmtree(files.checkpoints, ignore_errors=True)  # a trial never resumes
    history = _history(files.history)
    trial.set_user_attr(s.EPOCHS, len(history))
    # The pruning callback may have run in another process (a DDP rank 0), and
    # a Trial object caches its attributes: read them back from storage.
    stored = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    if stored.user_attrs.get(s.PRUNED_AT) is not None:
        return _finish(study, trial, files, TrialState.PRUNED)
    value = _best(history, frozen["sweep"]["metric"], frozen["sweep"]["direction"])
    if value is None:
        trial.set_user_attr(s.ERROR, f"{frozen['sweep']['metric']} is not finite")
        return _finish(study, trial, files, TrialState.FAIL)
    state = _finish(study, trial, files, TrialState.COMPLETE, value)
    run_id = trial.user_attrs.get(s.RUN_ID)
    if run_id:
        import mlflow

        mlflow.MlflowClient().log_metric(run_id, "trial/value", value)
    return state


def _train(trial, cfg: DictConfig, snapshot_path: str) -> None:
    """Train like ``dlforge train``; record the run's cost on the trial however it
    ends, where every worker reads it (``hpo.budget``, the summary)."""
    from dlforge.data.snapshot import Snapshot
    from dlforge.train.fit import run_training

    cost: dict = {}
    try:
        run_training(cfg, Snapshot.open(snapshot_path, store=cfg.paths.store_dir), cost)
    finally:
        if cost:
            trial.set_user_attr(s.COST, cost)


def _finish(study, trial, files: TrainFiles, state, value: float | None = None):
    """Tell the study; tag the trial's MLflow run with the outcome."""
    from dlforge.train import tracking

    run_id = tracking.read_state(files.run_state).get("run_id")
    if run_id:
        trial.set_user_attr(s.RUN_ID, run_id)
    study.tell(trial, value, state=state)
    if run_id:
        import mlflow

        mlflow.MlflowClient().set_tag(run_id, Tag.TRIAL_STATE, state.name)
    log.info("trial %d %s%s", trial.number, state.name.lower(),
             f": {value:.4f}" if value is not None else "")
    return state


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _best(history: list[dict], metric: str, direction: str) -> float | None:
    """The best epoch's value of ``metric`` (what the checkpoint keeps)."""
    values = [float(row[metric]) for row in history if row.get(metric) not in (None, "")]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)
