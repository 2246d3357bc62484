"""``dlforge sweep experiment=X``: the config checked (:mod:`dlforge.stages.strict`),
then the Optuna study of :mod:`dlforge.hpo.sweep` over the experiment's snapshot.

Outputs under ``paths.sweep_dir``: best.yaml (what ``dlforge train`` applies
when ``hpo.enabled``), summary.json, the plots, one folder per study.
"""

from __future__ import annotations

from omegaconf import DictConfig

from dlforge.hpo import sweep as hpo_sweep
from dlforge.stages.common import experiment_snapshot
from dlforge.stages.strict import check_config


def sweep(cfg: DictConfig) -> dict:
    """The sweep stage. Returns the study summary."""
    check_config("sweep", cfg)  # before the study, its storage or any MLflow run
    return hpo_sweep.sweep(cfg, experiment_snapshot(cfg))
