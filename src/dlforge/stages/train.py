"""``dlforge train experiment=X``: the config checked (:mod:`dlforge.stages.strict`),
the experiment's snapshot, the sweep's best parameters when it enables the sweep, a
pending retrain request, then :func:`dlforge.train.fit.run_training`.

Outputs under ``paths.train_dir``: config.yaml (frozen), metrics.json,
history.csv, curves.png, model/ (the package), checkpoints/, run.json.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from dlforge.core.layout import ExperimentLayout
from dlforge.monitor.retrain import retrain_request
from dlforge.stages.common import experiment_snapshot
from dlforge.stages.config import apply_best, command_line_overrides
from dlforge.stages.record import stage_record, with_record
from dlforge.stages.strict import check_config
from dlforge.train.fit import run_training

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """The train stage. Returns the metrics written to ``metrics.json``.

    A retrain request of ``dlforge monitor`` (``retrain.json``, request N) trains
    with ``seed + N``: a retrain on unchanged data is a new sample of the model,
    which the registry's gate then judges. The run record (:mod:`dlforge.stages.record`)
    goes into the frozen config and ``metrics.json`` and onto the MLflow run.
    """
    check_config("train", cfg)  # a config mistake leaves no run and no output behind
    layout = ExperimentLayout.from_config(cfg)
    snapshot = experiment_snapshot(cfg)
    swept = bool(cfg.get("hpo") and cfg.hpo.enabled)
    # The config as composed: the sweep's best and a retrain's seed are results it read.
    record = stage_record(cfg, "train", snapshot.version, skip=() if swept else ("sweep",))
    if swept:
        cfg = apply_best(cfg, layout.sweep.best, command_line_overrides())
    request = retrain_request(layout.retrain_marker)
    if request:
        cfg = cfg.copy()
        cfg.seed = int(cfg.seed) + request
        log.info("retrain request %d: seed %d <%s>", request, cfg.seed, layout.retrain_marker)
    return run_training(with_record(cfg, record), snapshot)
