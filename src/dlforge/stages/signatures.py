"""The keyword arguments a config's ``_target_`` takes, read from its signature and
remembered on disk while the code that decides them is unchanged.

    arguments(key, target)   the names ``target`` takes; None for any (``**kwargs``,
                             or no signature to read)

Reading a signature means importing the target: ``lightning.pytorch.Trainer`` costs
seconds of Lightning's imports to a process that may never train (the sweep that
starts its workers, ``launch=false``, a DDP launch). So each answer is kept in the
user's cache (:func:`~dlforge.core.io.user_cache_dir`), under the target and where
its top-level package is found (two projects may each have a ``myproj``), with the
files it was read from, each with its size and modification time: every module of
the target's dotted path and of the path of the module that defines it, and the
source of the ``__init__``, ``__new__`` or function whose parameters were read. A
later process whose files all match takes the answer without importing anything;
any change (an edit, an upgrade, a re-export moved in a package's ``__init__``)
reads it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import sys
from pathlib import Path

from dlforge import __version__
from dlforge.core.errors import DlforgeError
from dlforge.core.io import user_cache_dir, write_text_atomic

Stamp = list  # [path, size, modification time in ns]
KEPT = 500  # answers in the cache, the most recently read


def arguments(key: str, target: str) -> set[str] | None:
    """The keyword arguments ``target`` takes; None for any. An error naming ``key``
    when ``target`` cannot be imported."""
    package = _package(target)
    entry = f"{target} from {package}"  # two projects may each have a `myproj`
    remembered = _remembered().get(entry)
    if remembered is not None and _current(remembered):
        taken = remembered["arguments"]
        return None if taken is None else set(taken)
    builder = _import(key, target)
    taken = _read(builder)
    files = _files(target, builder)
    if files is not None and package is not None:
        _remember(entry, {"files": files, "arguments": None if taken is None else sorted(taken)})
    return taken


def _current(remembered: dict) -> bool:
    """Whether the files ``remembered`` was read from are unchanged."""
    try:
        return all(_stamp(path) == [path, *rest] for path, *rest in remembered["files"])
    except (TypeError, ValueError):
        return False  # not what this module writes: read again


def _package(target: str) -> str | None:
    """Where ``target``'s top-level package is found, without importing it."""
    from importlib.util import find_spec

    try:
        spec = find_spec(target.split(".")[0])
    except (ImportError, ValueError):
        return None
    return None if spec is None else str(spec.origin or list(spec.submodule_search_locations or []))


def _import(key: str, target: str):
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception:  # noqa: BLE001 - any failure to import is the user's path
        raise DlforgeError(f"{key}._target_={target} cannot be imported. Fix: correct the "
                           f"path, or pick a config from conf/{key.split('.')[0]}/") from None


def _read(builder) -> set[str] | None:
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _files(target: str, builder) -> list[Stamp] | None:
    """The stamps of the files that decide what ``target`` is and what it takes; None
    when one has no file to stamp (a built-in, a module made at run time)."""
    modules = _path_modules(target) + _path_modules(getattr(builder, "__module__", "") + ".")
    code = [getattr(inspect.unwrap(f), "__code__", None) for f in _signature_functions(builder)]
    paths = [getattr(module, "__file__", None) for module in modules]
    paths += [c.co_filename if c is not None else None for c in code]
    if not paths or None in paths:
        return None
    stamps = [_stamp(path) for path in dict.fromkeys(paths)]
    return None if None in stamps else stamps


def _path_modules(dotted: str) -> list:
    """The imported modules named by the prefixes of ``dotted`` (``a``, ``a.b``, ...)."""
    parts = dotted.split(".")[:-1]
    names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [sys.modules[name] for name in names if name in sys.modules]


def _signature_functions(builder) -> list:
    """What ``inspect.signature`` reads ``builder``'s parameters from."""
    if not inspect.isclass(builder):
        return [builder]
    found = [vars(klass)[name] for name in ("__init__", "__new__") for klass in builder.__mro__
             if klass is not object and name in vars(klass)]
    return [f for f in found if inspect.isfunction(inspect.unwrap(f))] or [builder]


def _stamp(path: str) -> Stamp | None:
    try:
        status = Path(path).stat()
    except OSError:
        return None
    return [path, status.st_size, status.st_mtime_ns]


def _cache_file() -> Path:
    """One file per dlforge version and version of this module's code."""
    this = Path(__file__).stat()
    key = hashlib.sha256(repr((__version__, this.st_size, this.st_mtime_ns)).encode())
    return user_cache_dir() / "signatures" / f"{key.hexdigest()[:32]}.json"


def _remembered() -> dict:
    try:
        found = json.loads(_cache_file().read_text())
        return {entry: answer for entry, answer in found.items()
                if {"files", "arguments"} <= set(answer)}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}  # none yet, or unreadable: read again


def _remember(entry: str, answer: dict) -> None:
    """Add ``answer`` to the cache file (another process's write in between may be lost:
    it is read again next time)."""
    kept = _remembered()
    kept.pop(entry, None)
    kept[entry] = answer
    with contextlib.suppress(OSError):  # a read-only or full cache: the next one imports
        write_text_atomic(_cache_file(), json.dumps(dict(list(kept.items())[-KEPT:])))
