"""The server's settings: conf/serve.yaml checked once, before anything is served."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.serve.settings import ModelSettings
from dlforge.stages.serve import server_settings


def settings(tmp_path, *overrides: str):
    return server_settings(compose("serve", [f"paths.root={tmp_path}", "api_key=null",
                                             *overrides]))


def test_the_shipped_settings_are_plain_data_with_absolute_paths(tmp_path):
    s = settings(tmp_path, "models={intent: {}, other: {strategy: bandit, versions: [3, 4]}}")
    assert pickle.loads(pickle.dumps(s)) == s  # the worker processes receive it
    assert s.models["intent"] == ModelSettings() and s.default_model == "intent"
    assert s.models["other"].release().versions == ("3", "4")
    for path in (s.log_dir, s.state_path, s.metrics_dir, s.cache_dir):
        assert Path(path).is_absolute() and Path(path).is_relative_to(tmp_path)
    assert s.tracking_uri.startswith("sqlite:////")
    assert s.state_max_bytes == 256 * 2**20


def test_by_default_the_project_serves_the_champion_of_each_experiment(tmp_path,
                                                                      monkeypatch):
    s = settings(tmp_path)  # the sample project: workflow/config.yaml lists intent, digits
    assert list(s.models) == ["intent", "digits"] and s.default_model == "intent"
    assert s.models["digits"] == ModelSettings(strategy="blue_green", alias="champion")
    monkeypatch.chdir(tmp_path)  # no project here: the model must be named
    with pytest.raises(DlforgeError, match="nothing to serve. Fix: .*'models={NAME: {}}'"):
        settings(tmp_path)
    assert list(settings(tmp_path, "models={mine: {}}").models) == ["mine"]


def test_the_api_key_is_not_in_the_settings_repr(tmp_path):
    assert "s3cret" not in repr(settings(tmp_path, "api_key=s3cret"))


@pytest.mark.parametrize(("override", "words"), [
    ("models={other: {strategy: rolling}}",
     "models.other.strategy='rolling' in conf/serve.yaml: expected one of blue_green"),
    ("models={intent: {stratgy: canary}}", "models.intent: unknown keys \\['stratgy'\\]"),
    ("models={intent: {share: 1.5}}",
     "models.intent.share=1.5 .*: expected a value in \\[0, 1\\]"),
    ("default_model=nope", "default_model='nope' is not one of models"),
    ("cpu_threads=0", "cpu_threads=0 .*: expected a value >= 1"),
    ("batch_timeout=-1", "batch_timeout=-1 .*: expected a value >= 0"),
    ("api_key=''", "api_key .* is set but empty"),
    ("api_key='  '", "api_key .* is set but empty"),
    ("request_timeout=0", "request_timeout=0 .*: expected a value > 0"),
    ("max_image_pixels=0", "max_image_pixels=0 .*: expected a value >= 1"),
    ("max_label_chars=0", "max_label_chars=0 .*: expected a value >= 1"),
    ("log_max_bytes=10", "log_max_bytes=10 .*: expected a value >= 1024"),
    ("log_keep_files=-1", "log_keep_files=-1 .*: expected a value >= 0"),
    ("state_max_bytes=65536",
     "state_max_bytes=65536 in conf/serve.yaml: expected a value >= 1048576"),
    ("max_batch_size=two", "max_batch_size='two' .*: expected a whole number"),
])
def test_bad_settings_fail_before_serving_naming_the_key(tmp_path, override, words):
    with pytest.raises(DlforgeError, match=words):
        settings(tmp_path, override)


def test_a_bad_api_key_is_never_echoed(tmp_path):
    with pytest.raises(DlforgeError) as raised:
        settings(tmp_path, "api_key=12345")
    assert "12345" not in str(raised.value)
