"""``dlforge train experiment=X``: the experiment's snapshot, the sweep's best
parameters when it enables the sweep, a pending retrain request, then
:func:`dlforge.train.fit.run_training`.

Outputs under ``paths.train_dir``: config.yaml (frozen), metrics.json,
history.csv, curves.png, model/ (the package), checkpoints/, run.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from dlforge.monitor.retrain import retrain_request
from dlforge.stages.common import experiment_snapshot
from dlforge.stages.config import apply_best, command_line_overrides
from dlforge.train.fit import run_training

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """The train stage. Returns the metrics written to ``metrics.json``.

    A retrain request of ``dlforge monitor`` (``retrain.json``, request N) trains
    with ``seed + N``: a retrain on unchanged data is a new sample of the model,
    which the registry's gate then judges.
    """
    if cfg.get("hpo") and cfg.hpo.enabled:
        cfg = apply_best(cfg, Path(cfg.paths.sweep_dir) / "best.yaml", command_line_overrides())
    request = retrain_request(cfg.paths.exp_dir)
    if request:
        cfg = cfg.copy()
        cfg.seed = int(cfg.seed) + request
        log.info("retrain request %d: seed %d <%s/retrain.json>", request, cfg.seed,
                 cfg.paths.exp_dir)
    return run_training(cfg, experiment_snapshot(cfg))
