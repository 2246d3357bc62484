"""``dlforge sweep experiment=X``: the config checked (:mod:`dlforge.stages.strict`),
then the Optuna study of :mod:`dlforge.hpo.sweep` over the experiment's snapshot.

Outputs under ``paths.sweep_dir``: best.yaml (what ``dlforge train`` applies
when ``hpo.enabled``), summary.json, the plots, one folder per study.
"""

from __future__ import annotations

from omegaconf import DictConfig

from dlforge.core.layout import ExperimentLayout
from dlforge.hpo import sweep as hpo_sweep
from dlforge.stages.common import experiment_snapshot
from dlforge.stages.record import attach, stage_record
from dlforge.stages.strict import check_config


def sweep(cfg: DictConfig) -> dict:
    """The sweep stage. Returns the study summary; ``summary.json`` gets its run record."""
    check_config("sweep", cfg)  # before the study, its storage or any MLflow run
    snapshot = experiment_snapshot(cfg)
    made_from = stage_record(cfg, "sweep", snapshot.version)  # before it writes
    summary = hpo_sweep.sweep(cfg, snapshot)
    attach(ExperimentLayout.from_config(cfg).sweep.summary, made_from)
    return {**summary, "record": made_from}
