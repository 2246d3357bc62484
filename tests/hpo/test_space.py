"""Search spaces: parsed from config, checked against the training config, sampled."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from dlforge.core.config import PACKAGED_CONF, compose, has_key
from dlforge.core.errors import DlforgeError
from dlforge.hpo.space import parse_space
from dlforge.stages.project import TEMPLATES
from tests.helpers import ROOT

MODELS = sorted(p.stem for p in (PACKAGED_CONF / "model").glob("*.yaml"))
MODEL_CONFIGS = sorted([*(PACKAGED_CONF / "model").glob("*.yaml"),
                        *TEMPLATES.glob("model/*/model.yaml")])
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
# The space outputs/intent/sweep/ was produced with: its results stay current only
# while intent composes to these keys and ranges.
INTENT_SPACE = {
    "optimizer.lr": {"type": "float", "low": 0.0003, "high": 0.01, "log": True},
    "model.net.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "model.net.hidden_dim": {"type": "categorical", "choices": [128, 256, 512]},
    "datamodule.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}


@pytest.fixture(scope="module")
def train_cfg():
    return compose("train", ["experiment=intent"])


def test_the_shipped_space_parses_and_samples_valid_overrides(train_cfg):
    space = parse_space(train_cfg.hpo.space, train_cfg)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = [p.override(p.suggest(trial)) for p in space]
    assert [o.split("=")[0] for o in overrides] == [p.key for p in space]
    # The overrides compose: a trial's config is the training config plus them.
    cfg = compose("train", ["experiment=intent", *overrides])
    assert 0.0003 <= cfg.optimizer.lr <= 0.01
    assert cfg.model.net.hidden_dim in (128, 256, 512)
    assert round(cfg.model.net.dropout * 10) == pytest.approx(cfg.model.net.dropout * 10)


def test_the_intent_space_is_the_one_its_results_were_swept_with(train_cfg):
    assert OmegaConf.to_container(train_cfg.hpo.space) == INTENT_SPACE


def test_the_default_space_names_only_keys_every_model_has():
    space = OmegaConf.load(PACKAGED_CONF / "hpo/default.yaml").space
    assert list(space) == ["optimizer.lr", "datamodule.batch_size"]


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_model_config_carries_a_space_over_its_own_keys(path):
    text = path.read_text()
    assert text.startswith("# @package _global_\n")  # to set hpo.space next to model
    cfg = OmegaConf.create(text.replace("{{package}}", "proj"))
    assert set(cfg) == {"model", "hpo"} and set(cfg.hpo) == {"space"}
    for key in cfg.hpo.space:
        assert key.startswith("model.net.") and has_key(cfg, key), key


@pytest.mark.parametrize("model", MODELS)
def test_every_packaged_model_adds_its_space_to_the_shared_one(model):
    cfg = compose("sweep", ["experiment=intent", f"model={model}"])
    own = OmegaConf.load(PACKAGED_CONF / f"model/{model}.yaml").hpo.space
    keys = [p.key for p in parse_space(cfg.hpo.space, cfg)]
    assert keys == [*own, "optimizer.lr", "datamodule.batch_size"]


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_sweeps_without_editing_the_space(exp):
    cfg = compose("sweep", [f"experiment={exp}", "hpo.enabled=true"])
    space = parse_space(cfg.hpo.space, cfg)
    assert all(has_key(cfg, p.key) for p in space)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = [p.override(p.suggest(trial)) for p in space]
    trial_cfg = compose("train", [f"experiment={exp}", *overrides])
    for p in space:
        assert OmegaConf.select(trial_cfg, p.key) == pytest.approx(trial.params[p.key])


def test_digits_sweeps_its_cnn_width():
    cfg = compose("sweep", ["experiment=digits"])
    assert "model.net.width" in [p.key for p in parse_space(cfg.hpo.space, cfg)]


def test_a_null_entry_leaves_a_merged_key_out():
    cfg = compose("sweep", ["experiment=intent", "hpo.space={model.net.dropout:null}"])
    keys = [p.key for p in parse_space(cfg.hpo.space, cfg)]
    assert keys == ["model.net.hidden_dim", "optimizer.lr", "datamodule.batch_size"]


def test_another_models_key_fails_naming_it_and_the_fix():
    cfg = compose("sweep", ["experiment=digits"])
    space = {**OmegaConf.to_container(cfg.hpo.space),
             "model.net.hidden_dim": INTENT_SPACE["model.net.hidden_dim"]}
    with pytest.raises(DlforgeError, match=r"hpo\.space\.model\.net\.hidden_dim: "
                       r"'model\.net\.hidden_dim' is not a key .* Fix: .* leave it out: "
                       r"`hpo: \{space: \{model\.net\.hidden_dim: null\}\}`"):
        parse_space(space, cfg)


def test_int_log_and_step_parameters(train_cfg):
    (log_int,) = parse_space({"trainer.max_epochs": {"type": "int", "low": 1, "high": 64,
                                                     "log": True}}, train_cfg)
    (stepped,) = parse_space({"datamodule.batch_size": {"type": "int", "low": 16, "high": 128,
                                                        "step": 16}}, train_cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        assert 1 <= log_int.suggest(trial) <= 64
        assert stepped.suggest(trial) % 16 == 0


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}},
         "hpo.space.optimizer.lr: low=0.1 is greater than high=0.01"),
        ({"optimizer.lr": {"type": "gaussian", "low": 0, "high": 1}},
         "hpo.space.optimizer.lr: unknown type 'gaussian'"),
        ({"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 1}},
         "hpo.space.optimizer.learning_rate: 'optimizer.learning_rate' is not a key"),
        ({"model.net.hidden_dim": {"type": "categorical", "choices": []}},
         "hpo.space.model.net.hidden_dim: a categorical parameter needs a non-empty"),
        ({"optimizer.lr": {"type": "float", "low": 0, "high": 1, "log": True}},
         "a log scale needs low > 0"),
        ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}},
         "'log' and 'step' cannot be combined"),
        ({"trainer.max_epochs": {"type": "int", "low": 1.5, "high": 4}}, "whole low, high"),
        ({"optimizer.lr": {"type": "float", "low": "a", "high": 1}}, "must be numbers"),
        ({}, "hpo.space is empty"),
        ({"optimizer.lr": None}, "hpo.space is empty"),
        ({"model.net.droput": None}, "hpo.space.model.net.droput: 'model.net.droput' is not"),
    ],
)
def test_invalid_spaces_fail_naming_the_key(train_cfg, spec, words):
    with pytest.raises(DlforgeError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_space(spec, train_cfg)
