"""Typed settings: one frozen dataclass per command, read from its config node and
checked once, at the start, with errors that name the key.

    @dataclass(frozen=True)
    class SweepSettings(Settings):
        n_trials: int = field(metadata=at_least(1))
        timeout: float | None = field(default=None, metadata=above(0))
        direction: str = field(default="maximize", metadata=one_of("maximize", "minimize"))

    settings = SweepSettings.from_config(cfg.hpo, "hpo")   # DlforgeError: "hpo.n_trials=0: ..."

A field's type is enforced (``bool`` is not a number, an ``int`` is a valid
``float``, ``X | None`` allows null); ``metadata`` adds a range or a choice. A
subclass checks what spans several fields in :meth:`Settings.check`. Keys of
the node that are not fields are ignored, so a config group may hold more
than one command reads. Plain standard library: no omegaconf at import.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from dlforge.core.errors import DlforgeError

_CHECK = "dlforge.check"  # the metadata key of a field's extra check


def at_least(low: float) -> dict:
    """Field metadata: the value (when not null) is >= ``low``."""
    return {_CHECK: (lambda v: v >= low, f"a value >= {low}")}


def above(low: float) -> dict:
    """Field metadata: the value (when not null) is > ``low``."""
    return {_CHECK: (lambda v: v > low, f"a value > {low}")}


def between(low: float, high: float) -> dict:
    """Field metadata: ``low <= value <= high`` (when not null)."""
    return {_CHECK: (lambda v: low <= v <= high, f"a value in [{low}, {high}]")}


def one_of(*choices: str) -> dict:
    """Field metadata: the value is one of ``choices``."""
    return {_CHECK: (lambda v: v in choices, f"one of {', '.join(map(str, choices))}")}


class Settings:
    """Base of a command's settings (subclasses are frozen dataclasses)."""

    #: where the keys live, for messages (e.g. ``conf/serve.yaml``); set by subclasses
    SOURCE = "the config"

    @classmethod
    def from_config(cls, node: Any, prefix: str = "") -> Settings:
        """Build from a config node (a DictConfig or a plain mapping), checking every field.

        Raises:
            DlforgeError: naming ``prefix.key``, the value and what is expected.
        """
        values = _plain(node)
        if not isinstance(values, Mapping):
            raise DlforgeError(f"{prefix or cls.SOURCE} is not a mapping of settings. Fix: "
                               f"give it keys as in {cls.SOURCE}")
        hints = typing.get_type_hints(cls)
        given = {}
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}" if prefix else f.name
            if f.name not in values:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise DlforgeError(f"{key} is missing. Fix: set it in {cls.SOURCE} or on "
                                       f"the command line ({key}=...)")
                continue
            given[f.name] = _checked(key, values[f.name], hints[f.name], f.metadata,
                                     cls.SOURCE)
        settings = cls(**given)
        settings.check(prefix)
        return settings

    def check(self, prefix: str) -> None:
        """Checks across fields; raise :meth:`invalid` errors. Nothing by default."""

    def invalid(self, prefix: str, name: str, problem: str, fix: str) -> DlforgeError:
        """An error about field ``name``: ``prefix.name=value: problem. Fix: fix``."""
        key = f"{prefix}.{name}" if prefix else name
        return DlforgeError(f"{key}={getattr(self, name)!r} in {self.SOURCE}: {problem}. "
                            f"Fix: {fix}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain containers, resolved; anything else as it is."""
    if type(node).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(node, resolve=True)
    return node


def _checked(key: str, value: Any, hint: Any, metadata: Mapping, source: str) -> Any:
    expected, allows_none, converted = _expect(hint, value)
    if value is None and allows_none:
        return None
    if converted is _WRONG:
        raise DlforgeError(f"{key}={value!r} in {source}: expected {expected}"
                           f"{' or null' if allows_none else ''}. Fix: set {key} to "
                           f"{expected}")
    check = metadata.get(_CHECK)
    if check is not None and not check[0](converted):
        raise DlforgeError(f"{key}={value!r} in {source}: expected {check[1]}. Fix: set {key} "
                           f"to {check[1]}")
    return converted


_WRONG = object()


def _expect(hint: Any, value: Any) -> tuple[str, bool, Any]:
    """(what is expected, whether null is allowed, the value converted or _WRONG)."""
    args = typing.get_args(hint)
    allows_none = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        allows_none = type(None) in args
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else typing.Any
    if hint is typing.Any:
        return "any value", allows_none, value
    if hint is bool:
        return "true or false", allows_none, value if isinstance(value, bool) else _WRONG
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return "a whole number", allows_none, value if ok else _WRONG
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return "a number", allows_none, float(value) if ok else _WRONG
    if hint is str:
        return "a string", allows_none, value if isinstance(value, str) else _WRONG
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple):
        ok = isinstance(value, list | tuple)
        return "a list", allows_none, origin(value) if ok else _WRONG
    if origin in (dict, Mapping):
        return "a mapping", allows_none, dict(value) if isinstance(value, Mapping) else _WRONG
    return getattr(hint, "__name__", str(hint)), allows_none, value
