"""Search spaces: parsed from config, checked against the training config, sampled."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from dlforge.core.config import PACKAGED_CONF, compose
from dlforge.core.errors import DlforgeError
from dlforge.hpo.space import parse_space


@pytest.fixture(scope="module")
def train_cfg():
    return compose("train", ["experiment=intent"])


def test_the_shipped_space_parses_and_samples_valid_overrides(train_cfg):
    space = parse_space(OmegaConf.load(PACKAGED_CONF / "hpo/default.yaml").space, train_cfg)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = [p.override(p.suggest(trial)) for p in space]
    assert [o.split("=")[0] for o in overrides] == [p.key for p in space]
    # The overrides compose: a trial's config is the training config plus them.
    cfg = compose("train", ["experiment=intent", *overrides])
    assert 0.0003 <= cfg.optimizer.lr <= 0.01
    assert cfg.model.net.hidden_dim in (128, 256, 512)
    assert round(cfg.model.net.dropout * 10) == pytest.approx(cfg.model.net.dropout * 10)


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
    ],
)
def test_invalid_spaces_fail_naming_the_key(train_cfg, spec, words):
    with pytest.raises(DlforgeError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_space(spec, train_cfg)
