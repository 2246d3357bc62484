"""Strict configs: a stage's config holds only the sections dlforge's configs declare.

    check_sections(stage, cfg, overrides)   every top-level key is a declared section
    declared_sections(stage)                those sections, learnt from the configs
    origin(key, stage, overrides)           where a key was set: the command line or a file
    unknown_key(key, problem, names, source) the error, with the nearest valid name

A section is declared by an entry config (``conf/<stage>.yaml`` and the configs it
includes): a config group it chooses (``trainer``, ``dataset``) or a key of its own
body (``seed``, ``batch_size``). They are read from Hydra's defaults lists, never
kept in a list here. An experiment (``# @package _global_``) is shared by every
stage that takes one, so such a stage accepts the sections any of them declares:
``trainer:`` is read by ``dlforge train`` and ignored by ``dlforge evaluate``,
``trainr:`` is declared by none. A stage without an experiment (``serve``) accepts
its own. ``+key=value`` adds a key on purpose and is checked all the same.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

import yaml

from dlforge import __version__
from dlforge.core import config as config_module
from dlforge.core.config import (
    PACKAGED_CONF,
    conf_dir,
    config_file,
    config_groups,
    defaults_list,
)
from dlforge.core.errors import DlforgeError
from dlforge.core.io import user_cache_dir, write_text_atomic

EXPERIMENT = "experiment"  # the group of experiment files, merged at the top level
COMMAND_LINE = "the command line"
NOT_SECTIONS = ("defaults", "hydra")  # keys of a config file that are Hydra's, not the config's


def check_sections(stage: str, cfg, overrides: Iterable[str] = ()) -> None:
    """Raise when a top-level key of ``cfg`` (the composed config of ``stage``) is not a
    declared section, naming where it was set and the nearest section."""
    declared = declared_sections(stage)
    for key in cfg:
        if key != "hydra" and key not in declared:
            raise unknown_key(str(key), f"is not a config section of `dlforge {stage}`",
                              declared, origin(str(key), stage, overrides))


def unknown_key(key: str, problem: str, names: Iterable[str], source: str | None
                ) -> DlforgeError:
    """The error for ``key`` (dotted) whose last part is none of ``names``."""
    parent, _, name = key.rpartition(".")
    names = sorted(names)
    near = difflib.get_close_matches(name, names, n=1)
    where = f" (from {source})" if source else ""
    if near:
        place = {None: "", COMMAND_LINE: " on the command line"}.get(source, f" in {source}")
        renamed = f"{parent}.{near[0]}" if parent else near[0]
        return DlforgeError(f"{key} {problem}{where}. Did you mean {near[0]}? Fix: rename "
                            f"it to {renamed}{place}")
    place = f" from {source}" if source else ""
    return DlforgeError(f"{key} {problem}{where}. Fix: remove it{place}, or use one of: "
                        f"{', '.join(names)}")


def declared_sections(stage: str) -> frozenset[str]:
    """The top-level keys a config of ``stage`` may have (see the module's docstring).

    Raises:
        DlforgeError: when ``stage``'s own defaults do not resolve.
    """
    roots = tuple(dict.fromkeys([conf_dir(), PACKAGED_CONF]))
    entries = _entries(roots, _stamp(roots))
    own, shared = entries[stage] if stage in entries else _entry(stage)
    if not shared:
        return own
    return frozenset().union(*(keys for keys, takes in entries.values() if takes))


def _stamp(roots: tuple[Path, ...]) -> tuple:
    """What the sections are learnt from: each root's config files, by their path in
    the root and a digest of their text. A copy of the project elsewhere, or a checkout
    that wrote every file again, has the same stamp; an edit, a new file, a renamed one
    or a change of roots has another."""
    return tuple(tuple((path.relative_to(root).as_posix(),
                        hashlib.sha256(path.read_bytes()).hexdigest())
                       for path in sorted(root.rglob("*.yaml"))) for root in roots)


@functools.lru_cache(maxsize=8)
def _entries(roots: tuple[Path, ...], stamp: tuple) -> dict[str, tuple[frozenset[str], bool]]:
    """Every entry config on the search path (``roots``): its sections, and whether it
    takes an experiment. Kept while no config file changes (``stamp``, :func:`_stamp`):
    a stage checks its config at composition and again when it runs; and on disk
    (:func:`_cache_file`), as learning them takes seconds that every stage process
    would pay again."""
    cache = _cache_file(stamp)
    try:
        return {name: (frozenset(keys), takes)
                for name, (keys, takes) in json.loads(cache.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # none yet, or unreadable: learnt again
    entries = {}
    for name in sorted({path.stem for root in roots for path in root.glob("*.yaml")}):
        try:
            entries[name] = _entry(name)
        except DlforgeError:
            continue  # not an entry config, or a broken one: its own command says so
    try:
        write_text_atomic(cache, json.dumps(
            {name: [sorted(keys), takes] for name, (keys, takes) in entries.items()}))
        _prune(cache.parent)
    except OSError:
        pass  # a read-only or full cache folder costs the next process the seconds
    return entries


CACHE_KEPT = 100  # files of the cache, the most recently written


def _prune(folder: Path) -> None:
    """Keep the :data:`CACHE_KEPT` newest files of the cache (another process may be
    pruning too: a file already gone is fine)."""
    def written(file: Path) -> int:
        try:
            return file.stat().st_mtime_ns
        except OSError:
            return 0

    for old in sorted(folder.glob("*.json"), key=written, reverse=True)[CACHE_KEPT:]:
        old.unlink(missing_ok=True)


def _cache_file(stamp: tuple) -> Path:
    """The user's cache file of the entries learnt from exactly these config files
    (:func:`_stamp`) by exactly this code (this module's and the config module's, with
    this Hydra), in the user's cache (:func:`~dlforge.core.io.user_cache_dir`)."""
    code = tuple((str(path), path.stat().st_mtime_ns)
                 for path in (Path(__file__), Path(config_module.__file__)))
    key = hashlib.sha256(repr((__version__, version("hydra-core"), stamp, code)
                              ).encode()).hexdigest()
    return user_cache_dir() / "sections" / f"{key[:32]}.json"


def _entry(name: str) -> tuple[frozenset[str], bool]:
    files, choices = defaults_list(name, skip_missing=True)
    return _sections(files, choices), EXPERIMENT in choices


def _sections(files: list[tuple[str, str]], choices: dict) -> frozenset[str]:
    """The sections one entry config declares: its groups (chosen or still to be chosen,
    as ``dataset: ???``) and the keys of the files merged at the top level."""
    keys = {group for group in choices if "/" not in group and group != EXPERIMENT}
    for path, package in files:
        keys.update([package.split(".")[0]] if package else _body(path))
    return frozenset(keys)


def origin(key: str, stage: str, overrides: Iterable[str] = ()) -> str | None:
    """Where ``key`` (dotted) of ``stage``'s config was set: :data:`COMMAND_LINE`, the
    config file that sets it (relative to the working directory), or None (unknown)."""
    overrides = [o for o in overrides if not o.startswith("-")]  # Hydra's flags aside
    if _given(key, overrides):
        return COMMAND_LINE
    try:
        files, _ = defaults_list(stage, overrides)
    except DlforgeError:
        return None
    for path, package in reversed(files):  # the last file merged is the one that counts
        tree = _body(path)
        for part in reversed(package.split(".") if package else []):
            tree = {part: tree}
        if _has(tree, key):
            return _shown(config_file(f"{path}.yaml"))
    return None


def _given(key: str, overrides: list[str]) -> bool:
    """Whether an override sets ``key``, a key under it or the section holding it (a
    group's choice, ``trainer=ddp``, sets no key: its file does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - a malformed override has failed composition already
        return False
    groups = set(config_groups())
    for override in parsed:
        name = override.key_or_group
        if override.is_delete() or (name in groups and not isinstance(override.value(), dict)):
            continue
        if key == name or key.startswith(f"{name}.") or name.startswith(f"{key}."):
            return True
    return False


def _body(path: str) -> dict:
    """The keys a config file (``trainer/default``) sets, Hydra's own aside."""
    file = config_file(f"{path}.yaml")
    try:
        body = yaml.safe_load(file.read_text()) if file else None
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if k not in NOT_SECTIONS}


def _has(tree: dict, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _shown(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
