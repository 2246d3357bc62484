"""An Optuna study over the training config (the ``dlforge sweep`` stage's work).

    sweep(cfg, snapshot)   check the space and settings, open (or continue) the study,
                 fail trials a killed worker left running (:mod:`dlforge.hpo.recovery`),
                 open the parent MLflow run, run the workers, then write best.yaml,
                 summary.json and the plots under ``paths.sweep_dir``

The sweep's training config is frozen (with ``hpo.overrides`` applied and the
snapshot pinned) to ``<sweep_dir>/<study>/sweep.yaml``; every worker and every
trial starts from it. The file holds no password: a storage or tracking URL
with one stays the interpolation that gives it (:mod:`dlforge.core.secrets`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.config import dotted, has_key
from dlforge.core.errors import DlforgeError
from dlforge.core.layout import SweepFiles
from dlforge.data.snapshot import Snapshot
from dlforge.hpo import study as s
from dlforge.hpo.space import check_enqueued, parse_space
from dlforge.hpo.storage import close_storages

log = logging.getLogger(__name__)


def sweep(cfg: DictConfig, snapshot: Snapshot) -> dict:
    """Run the study of ``cfg`` on ``snapshot``. Returns its summary (also in
    ``summary.json``)."""
    from dlforge.hpo.recovery import recover
    from dlforge.hpo.report import close_parent, open_parent, write_report
    from dlforge.hpo.worker import run_workers, write_sweep_config
    from dlforge.train import tracking
    from dlforge.train.contract import check_targets

    settings = s.SweepSettings.from_config(cfg.hpo, "hpo")
    params = parse_space(cfg.hpo.space, cfg)
    enqueued = check_enqueued(OmegaConf.to_container(cfg.hpo.enqueue), params)
    s.check_target(cfg.hpo.sampler, "hpo.sampler")
    s.check_target(cfg.hpo.pruner, "hpo.pruner")
    check_targets(cfg, snapshot)
    n_trials = settings.n_trials
    if cfg.hpo.sampler._target_.endswith("GridSampler"):
        n_trials = min(n_trials, s.grid_size(params))
    base = _trial_base(cfg, snapshot)
    training_hash = tracking.config_hash(OmegaConf.to_container(OmegaConf.create(base),
                                                                resolve=True))
    name = s.study_name(settings.study_name, params, settings, training_hash)
    files = SweepFiles(Path(cfg.paths.sweep_dir)).study(name)
    study = s.open_study(name, settings)
    with s.claim_lock(settings.storage, name):  # sweeps started together: one parent run
        parent = open_parent(cfg, study, name, settings, params)
        recover(study, settings, cfg.tracking)
        if enqueued and not study.get_trials(deepcopy=False):
            for values in enqueued:
                study.enqueue_trial(values)
    frozen = {"train": base, "sweep": {
        "study": name, "storage": settings.storage, "folder": str(files.dir),
        "snapshot_path": str(snapshot.path),
        "metric": settings.metric, "direction": settings.direction, "n_trials": n_trials,
        "deadline": time.time() + settings.timeout if settings.timeout else None,
        "parent_run": parent, "settings": settings.as_dict(),
        "params": [p.__dict__ for p in params]}}
    frozen_path = files.frozen_config
    write_sweep_config(frozen_path, frozen)
    log.info("study %s: %d of %d trials done <hpo.storage=%s>", name, s.budget_used(study),
             n_trials, s.redact(settings.storage))
    try:
        run_workers(frozen_path, frozen)
        summary = write_report(study, settings, params, Path(cfg.paths.sweep_dir), n_trials)
    except BaseException as err:
        close_parent(parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        close_storages()
    close_parent(parent, "FINISHED", summary, Path(cfg.paths.sweep_dir))
    return {k: summary[k] for k in ("study", "storage", "counts", "best", "stopped", "cost")}


def _trial_base(cfg: DictConfig, snapshot: Snapshot) -> dict:
    """The training config every trial starts from, interpolations kept.

    ``hpo.overrides`` (a cheaper budget for trials, say) are applied and the
    snapshot is pinned, so all trials train on the same data.
    """
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key, value in dotted(OmegaConf.to_container(cfg.hpo.overrides) or {}).items():
        if not has_key(base, key):
            raise DlforgeError(f"hpo.overrides.{key}: '{key}' is not a key of the training "
                               "config. Fix: use a dotted path that `dlforge train "
                               "experiment=... --cfg job` shows")
        OmegaConf.update(base, key, value, merge=False)
    base.snapshot = snapshot.version
    return OmegaConf.to_container(base, resolve=False)
