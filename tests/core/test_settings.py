"""Typed settings: every field is checked once, and a bad value names its key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.settings import Settings, above, at_least, between, one_of


@dataclass(frozen=True)
class Example(Settings):
    SOURCE = "conf/example.yaml"

    workers: int = field(metadata=at_least(1))
    timeout: float | None = field(default=None, metadata=above(0))
    share: float = field(default=0.5, metadata=between(0, 1))
    direction: str = field(default="maximize", metadata=one_of("maximize", "minimize"))
    enabled: bool = False
    tags: list[str] = field(default_factory=list)

    def check(self, prefix: str) -> None:
        if self.enabled and self.timeout is None:
            raise self.invalid(prefix, "timeout", "an enabled example needs a timeout",
                               "set a timeout in seconds")


def test_a_composed_config_node_becomes_typed_values():
    node = OmegaConf.create({"workers": 2, "timeout": 3, "n": "${workers}", "tags": ["a"]})
    settings = Example.from_config(node, "example")
    assert settings == Example(workers=2, timeout=3.0, tags=["a"])
    assert isinstance(settings.timeout, float)  # a whole number is a valid float
    assert settings.as_dict()["direction"] == "maximize"


@pytest.mark.parametrize(("given", "message"), [
    ({}, "example.workers is missing. Fix: set it in conf/example.yaml"),
    ({"workers": 0}, "example.workers=0 in conf/example.yaml: expected a value >= 1"),
    ({"workers": True}, "example.workers=True in conf/example.yaml: expected a whole number"),
    ({"workers": "2"}, "example.workers='2' in conf/example.yaml: expected a whole number"),
    ({"workers": 1, "timeout": 0}, "example.timeout=0 in conf/example.yaml: expected a value > 0"),
    ({"workers": 1, "share": 1.5}, "example.share=1.5 in conf/example.yaml: expected a value in"),
    ({"workers": 1, "direction": "up"}, "expected one of maximize, minimize"),
    ({"workers": 1, "enabled": "yes"}, "example.enabled='yes' in conf/example.yaml: expected "
                                       "true or false"),
    ({"workers": 1, "tags": "a"}, "example.tags='a' in conf/example.yaml: expected a list"),
    ({"workers": 1, "enabled": True}, "example.timeout=None in conf/example.yaml: an enabled "
                                      "example needs a timeout. Fix: set a timeout"),
])
def test_a_bad_value_names_the_key_the_value_and_the_fix(given, message):
    with pytest.raises(DlforgeError) as info:
        Example.from_config(given, "example")
    assert message in str(info.value)
    assert "Fix:" in str(info.value)


def test_null_is_a_value_only_where_the_type_allows_it():
    assert Example.from_config({"workers": 1, "timeout": None}, "x").timeout is None
    with pytest.raises(DlforgeError, match=r"x.workers=None .*expected a whole number\. Fix"):
        Example.from_config({"workers": None}, "x")


def test_settings_are_frozen():
    settings = Example.from_config({"workers": 1})
    with pytest.raises(AttributeError):
        settings.workers = 2
