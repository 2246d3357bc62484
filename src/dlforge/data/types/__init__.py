"""The registry of dataset types.

Built-in types are ``text_intent`` and ``image_class``. A new type plugs in by
subclassing :class:`DatasetType` and either calling :func:`register` or
declaring an entry point in the ``dlforge.dataset_types`` group::

    [project.entry-points."dlforge.dataset_types"]
    audio_clip = "mypkg.audio:AudioClip"
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from dlforge.core.errors import NotFound
from dlforge.data.types.base import DatasetType, Staged

__all__ = ["DatasetType", "Staged", "get_type", "register", "type_names"]

_BUILTIN = {
    "text_intent": "dlforge.data.types.text_intent:TextIntent",
    "image_class": "dlforge.data.types.image_class:ImageClass",
}
_registered: dict[str, type[DatasetType]] = {}


def register(cls: type[DatasetType]) -> type[DatasetType]:
    """Add a dataset type (usable as a class decorator)."""
    _registered[cls.name] = cls
    return cls


def type_names() -> list[str]:
    names = set(_BUILTIN) | set(_registered)
    names |= {ep.name for ep in entry_points(group="dlforge.dataset_types")}
    return sorted(names)


def get_type(name: str) -> DatasetType:
    """An instance of the dataset type called ``name``.

    Raises:
        NotFound: listing the known types.
    """
    if name in _registered:
        return _registered[name]()
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        return getattr(import_module(module), attr)()
    for ep in entry_points(group="dlforge.dataset_types", name=name):
        return ep.load()()
    raise NotFound(
        f"unknown dataset type '{name}'. Known types: {', '.join(type_names())}. "
        "Fix: pick one of them, or register a new type (see dlforge.data.types)"
    )
