"""Every shipped config loads, and every entry config composes with the experiments."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dlforge.core.config import PACKAGED_CONF, compose
from dlforge.stages.workflow import experiments
from tests.conftest import ROOT

ENTRY = ["ingest", "snapshot"]
SHIPPED = [*(ROOT / "conf").rglob("*.yaml"), *PACKAGED_CONF.rglob("*.yaml")]


@pytest.mark.parametrize("path", sorted(SHIPPED), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_loads(path):
    assert OmegaConf.load(path) is not None


@pytest.mark.parametrize("entry", ENTRY)
@pytest.mark.parametrize("exp", experiments(ROOT / "workflow" / "config.yaml"))
def test_entry_configs_compose_and_resolve(entry, exp):
    cfg = compose(entry, [f"experiment={exp}"])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["experiment_name"] == exp
    assert resolved["dataset"]["sources"], "an experiment's dataset declares its sources"


def test_the_data_config_gives_paths_and_split():
    cfg = compose("data")
    assert cfg.paths.store_dir.endswith("data/store")
    assert cfg.split.train + cfg.split.val + cfg.split.test == pytest.approx(1.0)


def test_a_stage_without_experiment_lists_the_choices():
    with pytest.raises(Exception, match="You must specify 'experiment'") as caught:
        compose("ingest")
    assert "intent" in str(caught.value)
