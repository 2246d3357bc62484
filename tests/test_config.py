"""Every shipped config loads, every entry config composes with the experiments, and
every shipped experiment, packaged option and project template passes the strict check."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dlforge.core.config import PACKAGED_CONF, compose
from dlforge.stages.strict import check_config
from dlforge.stages.workflow import experiments
from tests.helpers import ROOT
from tests.initialised import initialised

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


STAGES = ("ingest", "snapshot", "sweep", "train", "evaluate", "register", "monitor")
# The groups of what training builds, each option of which is checked by the sweep's config
BUILT_GROUPS = ("trainer", "optimizer", "scheduler", "callbacks", "datamodule", "model",
                "hpo/sampler", "hpo/pruner")


def check_stages(exp: str) -> None:
    """Every stage's config of experiment ``exp`` composes and passes the strict check."""
    for stage in STAGES:
        overrides = [f"experiment={exp}"]
        check_config(stage, compose(stage, overrides), overrides)


@pytest.mark.parametrize("exp", sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml")))
def test_every_shipped_experiment_passes_the_strict_check(exp):
    check_stages(exp)


@pytest.mark.parametrize("option", sorted(
    f"{group}={path.stem}" for group in BUILT_GROUPS
    for path in (PACKAGED_CONF / group).glob("*.yaml")))
def test_every_packaged_option_passes_the_strict_check(option):
    overrides = ["experiment=intent", option]
    check_config("sweep", compose("sweep", overrides), overrides)


def test_serving_passes_the_strict_check():
    check_config("serve", compose("serve"), [])


@pytest.mark.slow
@pytest.mark.parametrize(("example", "kind"), [(None, "text"), (None, "image"),
                                               ("intent", None), ("digits", None)])
def test_every_project_template_passes_the_strict_check(tmp_path_factory, monkeypatch, example,
                                                       kind):
    # The check only reads the project: the one tests/test_init.py reads too.
    summary = initialised(tmp_path_factory, example=example, kind=kind)
    monkeypatch.chdir(summary["project"])
    check_stages(summary["experiment"])
