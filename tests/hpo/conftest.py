"""A sweep config over a toy snapshot that trains a trial in a few seconds."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf, open_dict

from dlforge.core.config import compose
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows

SWEEP_FAST = ["hpo.n_trials=3", "hpo.n_workers=1", "hpo/pruner=none", "hpo/sampler=random"]


@pytest.fixture
def sweep_cfg(tmp_path, mlflow_dir):
    """``sweep_cfg(*overrides, space=None, enqueue=None)``: the intent sweep on toy data.

    Trials train like ``dlforge train`` with the same overrides: the intent
    experiment's own ``hpo.overrides`` are cleared.
    """
    make_snapshot(tmp_path, toy_rows(400))

    def make(*overrides: str, space: dict | None = None, enqueue: list | None = None):
        cfg = compose("sweep", ["experiment=intent", f"paths.root={tmp_path}",
                                f"paths.mlflow_dir={mlflow_dir}", "dataset.name=toy",
                                f"tracking.experiment=sweep-{tmp_path.name}", *FAST,
                                *SMALL_MODEL, *SWEEP_FAST, *overrides])
        with open_dict(cfg):
            if not any(o.startswith("+hpo.overrides") for o in overrides):
                cfg.hpo.overrides = {}
            if space is not None:
                cfg.hpo.space = OmegaConf.create(space)
            if enqueue is not None:
                cfg.hpo.enqueue = OmegaConf.create(enqueue)
        return cfg

    return make


