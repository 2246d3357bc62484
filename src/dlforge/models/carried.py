"""Carried code under names of its own, so any number of versions of one project
run side by side in one process.

    package v1   code/myproj/nets.py    ->  _dlforge_code_1a2b3c4d5e6f7a8b.myproj.nets
    package v2   code/myproj/nets.py    ->  _dlforge_code_9f8e7d6c5b4a3f2e.myproj.nets
    the project  src/myproj/nets.py     ->  myproj.nets   (training's; never touched)

Why: ``sys.modules`` caches a module by its name. Imported as ``myproj``, the
first package's code would answer for every later version of the project in
that process (a rollback would serve v1's weights with v2's code), and it would
shadow, or be shadowed by, the project's own ``src/myproj`` that training imports.

How: a meta-path finder serves the names under each alias from that package's
``code/`` folder only (no other folder, no other top-level name), compiled from
source: no bytecode is read or written, so every line that runs is covered by
the package's SHA256SUMS. Carried modules import themselves by the project's
name (``from myproj.layers import X``): their builtins carry an ``__import__``
that maps ``myproj`` to their alias; relative imports (``from .layers import X``)
resolve through ``__package__`` as usual. (A name built at run time,
``importlib.import_module("myproj.x")``, is not mapped: carried code that does
so names ``f"{__package__}.x"`` instead.) The alias is named after the digest
of the carried code, so a package loaded again (or another version with the
same code) reuses the modules already imported.
"""

from __future__ import annotations

import builtins
import hashlib
import sys
import threading
from dataclasses import dataclass, field
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader
from importlib.util import spec_from_file_location
from pathlib import Path

PREFIX = "_dlforge_code_"


def code_digest(top: str, sums: dict[str, str]) -> str:
    """The digest of a package's carried code: its ``code/`` lines of SHA256SUMS."""
    lines = "".join(f"{sums[n]}  {n}\n" for n in sorted(sums) if n.startswith("code/"))
    return hashlib.sha256(f"{top}\n{lines}".encode()).hexdigest()


@dataclass
class _Carried:
    """One package's code: the folder it is read from and the name it imports itself by."""

    root: Path  # the package's code/ folder
    top: str
    digest: str
    builtins: dict = field(default_factory=dict)


_CARRIED: dict[str, _Carried] = {}  # alias -> its code
_LOCK = threading.Lock()


def alias(code: Path, top: str, digest: str) -> str:
    """The module name under which ``code/<top>`` (of digest ``digest``) is imported:
    ``<alias>.<top>``. The same code always gets the same alias."""
    with _LOCK:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        for name in (PREFIX + digest[:16], PREFIX + digest):  # the long one: a prefix clash
            known = _CARRIED.get(name)
            if known is None or known.digest == digest:
                break
        if known is None:
            known = _CARRIED[name] = _Carried(code, top, digest)
            known.builtins = {**vars(builtins), "__import__": _importer(name, top)}
        if _read_from_a_gone_folder(sys.modules.get(f"{name}.{top}")):
            # The folder its modules were read from is gone (a verify's scratch folder):
            # they are read again from this one, which holds the same files, so that what
            # reads a module's file (a package saved from its class) finds it.
            for module in [m for m in list(sys.modules) if m.startswith(name + ".")]:
                sys.modules.pop(module, None)
        known.root = code  # the same files, just verified: later lazy imports read these
    return name


def _read_from_a_gone_folder(module) -> bool:
    """Whether ``module`` (a loaded carried package or module) was read from files that
    are no longer there."""
    if module is None:
        return False
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    return where is not None and not Path(where).exists()


def _importer(name: str, top: str):
    """``__import__`` for the carried modules of ``name``: ``top`` means ``name.top``."""

    def __import__(module, globals=None, locals=None, fromlist=(), level=0):  # noqa: A001
        if level == 0 and (module == top or module.startswith(top + ".")):
            found = builtins.__import__(f"{name}.{module}", globals, locals, fromlist, 0)
            return found if fromlist else sys.modules[f"{name}.{top}"]
        return builtins.__import__(module, globals, locals, fromlist, level)

    return __import__


class _SourceOnlyLoader(SourceFileLoader):
    """Compiles a carried module from its (digest-checked) source every time, with the
    builtins of its package."""

    def __init__(self, fullname: str, path: str, own_builtins: dict):
        super().__init__(fullname, path)
        self.own_builtins = own_builtins

    def path_stats(self, path):
        raise OSError("carried code is compiled from source")  # importlib then skips pyc

    def exec_module(self, module) -> None:
        module.__builtins__ = self.own_builtins
        super().exec_module(module)


class _Empty(Loader):
    """A package without code: the alias itself, or a carried folder without __init__.py."""

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        pass


class _Finder(MetaPathFinder):
    """Finds ``<alias>.<top>…`` in that alias's code folder, and nothing else there."""

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        name, _, rest = fullname.partition(".")
        carried = _CARRIED.get(name)
        if carried is None:
            return None  # not carried code: the next finder decides
        if not rest:
            spec = ModuleSpec(fullname, _Empty(), is_package=True)
            spec.submodule_search_locations = []
            return spec
        parts = rest.split(".")
        if parts[0] == carried.top and all(p.isidentifier() for p in parts):
            spec = _spec(fullname, carried, carried.root.joinpath(*parts))
            if spec is not None:
                return spec
        raise ModuleNotFoundError(f"No module named {rest!r} in the code carried in "
                                  f"{carried.root}", name=fullname)


_FINDER = _Finder()


def _spec(fullname: str, carried: _Carried, base: Path) -> ModuleSpec | None:
    """The spec of the package ``base/`` or the module ``base.py`` (None: neither)."""
    init, file = base / "__init__.py", base.parent / f"{base.name}.py"
    if init.is_file():
        return spec_from_file_location(
            fullname, init, loader=_SourceOnlyLoader(fullname, str(init), carried.builtins),
            submodule_search_locations=[str(base)])
    if file.is_file():
        return spec_from_file_location(
            fullname, file, loader=_SourceOnlyLoader(fullname, str(file), carried.builtins))
    if base.is_dir():  # a namespace package in the project: a folder of modules
        spec = ModuleSpec(fullname, _Empty(), is_package=True)
        spec.submodule_search_locations = [str(base)]
        return spec
    return None
