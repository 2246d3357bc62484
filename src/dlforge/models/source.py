"""Where a package's model class comes from, and how loading finds it again.

A package's ``model.json`` names its network class as ``module:Class`` and the
class's source, one of:

    {"code": "myproj"}                                the project's own code: the
        top-level package ``myproj`` (``src/myproj/``) is carried in the package
        as ``code/myproj/**.py``, digests included
    {"distribution": "dlforge", "version": "0.1.0"}   an installed distribution
        (dlforge itself, or any pip-installed package), checked on load

Carried code is imported from its source files only: a path hook reads
``code/`` without reading or writing bytecode (``__pycache__``), so every line
that runs is covered by the package's SHA256SUMS. Nothing is unpickled.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import sysconfig
from importlib import import_module
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, SourceFileLoader
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from dlforge.core.errors import DlforgeError

log = logging.getLogger(__name__)

CODE = "code"  # the package's folder of carried code
# a carried file: code/ + importable names only (no '..', no hidden or odd names, no bytecode)
CODE_FILE = re.compile(r"code/(?:[A-Za-z_][A-Za-z0-9_]*/)*[A-Za-z_][A-Za-z0-9_]*\.py")
CLASS_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
REPACKAGE = "Fix: use the package as written by training (or re-register it)"
FIX_CODE = ("Fix: put the class in a module of the project's src/<name>/ folder (or an "
            "installed package) and name it in model.net._target_")


def class_path(cls: type) -> str:
    """``module:Class`` of ``cls``, refusing a class that cannot be imported again."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise DlforgeError(f"the model class {cls.__qualname__} is defined in "
                           f"{'a function' if '<locals>' in cls.__qualname__ else '__main__'}, "
                           f"so a package cannot name it. {FIX_CODE}")
    return f"{cls.__module__}:{cls.__qualname__}"


def describe(cls: type) -> tuple[dict, Path | None]:
    """The source record of ``cls`` for model.json, and the code to carry (the
    top-level package folder or single module file; None for a distribution)."""
    top = cls.__module__.split(".")[0]
    names = sorted(set(packages_distributions().get(top, [])))
    if names:
        return {"distribution": names[0], "version": version(names[0])}, None
    root = _code_root(cls, top)
    return {"code": top}, root


def _code_root(cls: type, top: str) -> Path:
    """The folder of ``cls``'s top-level package (or its module's file, if not a package)."""
    module = sys.modules[cls.__module__]
    top_module = sys.modules[top]
    file = getattr(module, "__file__", None)
    if file is None:
        raise DlforgeError(f"the model class {class_path(cls)} has no source file. {FIX_CODE}")
    file = Path(file).resolve()
    roots = [Path(p).resolve() for p in getattr(top_module, "__path__", [])] or [file]
    root = next((r for r in roots if file == r or file.is_relative_to(r)), file)
    library = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "purelib", "platlib")}
    if any(root.is_relative_to(lib) for lib in library):
        raise DlforgeError(f"the model class {class_path(cls)} comes from {root}, which is "
                           "neither project code nor part of an installed distribution. "
                           f"{FIX_CODE}")
    return root


def carry(root: Path, folder: Path) -> list[str]:
    """Copy the ``.py`` files of ``root`` (a package folder or a module file) into
    ``folder/code/``; return their names relative to ``folder``."""
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    names = []
    for path in files:
        name = f"{CODE}/{root.name}" + ("" if path == root else f"/{path.relative_to(root)}")
        if "__pycache__" in name or not CODE_FILE.fullmatch(name):
            log.debug("not carried (not an importable module name): %s", path)
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
        names.append(name)
    return names


def import_class(folder: Path, spec: dict, listed: set[str]) -> type:
    """The network class ``spec`` (model.json) names, imported from the package's
    carried code or from the installed distribution it records.

    Raises:
        DlforgeError: naming model.json when the class path is malformed, names
            neither carried code nor an installed distribution, or is no Module.
    """
    import torch

    where = folder / "model.json"
    path, source = spec.get("class"), spec.get("source") or {}
    if not isinstance(path, str) or not CLASS_PATH.fullmatch(path):
        raise DlforgeError(f"{where}: 'class' must be 'module:Class', not {path!r}. "
                           f"{REPACKAGE}")
    module_name, qualname = path.split(":")
    top = module_name.split(".")[0]
    if "code" in source:
        _use_code(folder, where, path, top, source, listed)
    elif "distribution" in source:
        _check_distribution(where, path, top, source)
    else:
        raise DlforgeError(f"{where}: the class {path} names neither code the package carries "
                           f"nor an installed distribution. {REPACKAGE}")
    try:
        found = import_module(module_name)
        for attr in qualname.split("."):
            found = getattr(found, attr)
    except (ImportError, AttributeError) as err:
        raise DlforgeError(f"{where}: the class {path} cannot be imported ({err}). "
                           f"{REPACKAGE}") from None
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise DlforgeError(f"{where}: {path} is not a torch.nn.Module subclass. {REPACKAGE}")
    return found



def _use_code(folder: Path, where: Path, path: str, top: str, source: dict,
              listed: set[str]) -> None:
    """Put the package's ``code/`` first on sys.path (source-only imports)."""
    carried = source["code"] == top and (
        f"{CODE}/{top}.py" in listed or any(n.startswith(f"{CODE}/{top}/") for n in listed))
    if not carried:
        raise DlforgeError(f"{where}: the class {path} is not in the code the package carries "
                           f"({CODE}/{source['code']}). {REPACKAGE}")
    code = str((folder / CODE).resolve())
    loaded = sys.modules.get(top)
    if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(code):
        log.info("%s: using the module %s already imported from %s", where, top,
                 getattr(loaded, "__file__", None))
    add_code_path(code)


_CODE_ROOTS: set[str] = set()


class _SourceOnlyLoader(SourceFileLoader):
    """Compiles a carried module from its (digest-checked) source every time: no
    bytecode is read from or written to the package."""

    def path_stats(self, path):
        raise OSError("carried code is compiled from source")  # importlib then skips pyc


def _source_only_finder(path: str) -> FileFinder:
    if not any(path == root or path.startswith(root + os.sep) for root in _CODE_ROOTS):
        raise ImportError  # not carried code: the next path hook decides
    return FileFinder(path, (_SourceOnlyLoader, SOURCE_SUFFIXES))


def add_code_path(code: str) -> None:
    """Import modules under the folder ``code`` from source only, ahead of sys.path."""
    if _source_only_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _source_only_finder)
    _CODE_ROOTS.add(code)
    sys.path_importer_cache.pop(code, None)
    if code in sys.path:
        sys.path.remove(code)
    sys.path.insert(0, code)


def _check_distribution(where: Path, path: str, top: str, source: dict) -> None:
    name, recorded = source["distribution"], source.get("version")
    try:
        installed = version(name)
    except PackageNotFoundError:
        raise DlforgeError(f"{where}: the model class {path} comes from the distribution "
                           f"{name}=={recorded}, which is not installed here. Fix: "
                           f"pip install '{name}=={recorded}'") from None
    if name not in packages_distributions().get(top, []):
        raise DlforgeError(f"{where}: the class {path} is not part of the distribution {name} "
                           f"the package records, nor code the package carries. "
                           f"{REPACKAGE}")
    if installed != recorded:
        log.warning("%s: the model class %s was packaged with %s==%s; %s is installed",
                    where, path, name, recorded, installed)
