"""Where a package's model class comes from, and how loading finds it again.

A package's ``model.json`` names its network class as ``module:Class`` and the
class's source, one of:

    {"code": "myproj"}                                the project's own code: the
        top-level package ``myproj`` (``src/myproj/``) is carried in the package
        as ``code/myproj/**.py``, digests included
    {"distribution": "dlforge", "version": "0.1.0"}   an installed distribution
        (dlforge itself, or any pip-installed package), checked on load

A package carries its project package only (``code/<top>/…`` or
``code/<top>.py``, ``<top>`` as model.json records it), as regular files (no
symbolic links). Carried code is imported under names of its own, from its
source files only (:mod:`dlforge.models.carried`): every line that runs is
covered by the package's SHA256SUMS, any number of versions of one project load
side by side, and the project's own ``src/<top>`` is never shadowed. Nothing is
unpickled.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import sys
import sysconfig
from importlib import import_module
from importlib.metadata import (
    PackageNotFoundError,
    distribution,
    packages_distributions,
    version,
)
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.models.carried import alias, code_digest

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
    names = _distributions_providing(top)
    if names:
        return {"distribution": names[0], "version": version(names[0])}, None
    root = _code_root(cls, top)
    return {"code": top}, root


@functools.cache
def _distributions_providing(top: str) -> list[str]:
    """The installed distributions that provide the top-level module ``top``, sorted.
    The distribution named as the module (dlforge, timm) is asked first: mapping every
    distribution's files takes a second or more, so only otherwise, once per process."""
    try:
        if _provides(top, top):
            return [top]
    except PackageNotFoundError:
        pass
    return sorted(set(packages_distributions().get(top, [])))


def _provides(name: str, top: str) -> bool:
    """Whether the installed distribution ``name`` provides the top-level module
    ``top``: as its ``top_level.txt`` declares, else as its files show (the rule of
    :func:`importlib.metadata.packages_distributions`, for one distribution)."""
    dist = distribution(name)
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return top in declared
    return any(file.parts[0] == top or (len(file.parts) == 1 and file.suffix == ".py"
                                        and file.stem == top)
               for file in dist.files or [])


def _code_root(cls: type, top: str) -> Path:
    """The folder of ``cls``'s top-level package (or its module's file, if not a package)."""
    module = sys.modules[cls.__module__]
    top_module = sys.modules[top]
    file = getattr(module, "__file__", None)
    if file is None:
        raise DlforgeError(f"the model class {class_path(cls)} has no source file. {FIX_CODE}")
    file = Path(file).absolute()  # not resolved: a link in the project is seen (and refused)
    roots = [Path(p).absolute() for p in getattr(top_module, "__path__", [])] or [file]
    root = next((r for r in roots if file == r or file.is_relative_to(r)), file)
    library = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "purelib", "platlib")}
    if any(root.resolve().is_relative_to(lib) for lib in library):
        raise DlforgeError(f"the model class {class_path(cls)} comes from {root}, which is "
                           "neither project code nor part of an installed distribution. "
                           f"{FIX_CODE}")
    return root


def carry(root: Path, folder: Path) -> list[str]:
    """Copy the ``.py`` files of ``root`` (a package folder or a module file) into
    ``folder/code/``; return their names relative to ``folder``.

    Raises:
        DlforgeError: naming a ``.py`` file (or a folder holding one) that is a
            symbolic link: only regular files are carried.
    """
    files = _regular_sources(root)
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


def _regular_sources(root: Path) -> list[Path]:
    """The ``.py`` files of ``root`` (a package folder or a module file), refusing a
    symbolic link among them, ``root`` itself included."""
    paths = [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]
    for path in paths:
        if path.is_symlink() and (path.suffix == ".py" or (
                path.is_dir() and any(path.rglob("*.py")))):
            raise DlforgeError(f"{path} is a symbolic link; a model package carries the "
                               "project's code as regular files only. Fix: replace the link "
                               "with the file (or folder) it points to")
    return sorted(root.rglob("*.py")) if root.is_dir() else [root]


def symlink_in(folder: Path, name: str) -> Path | None:
    """The first symbolic link on the way from ``folder`` to its file ``name`` (None: none)."""
    path = folder
    for part in name.split("/"):
        path = path / part
        if path.is_symlink():
            return path
    return None


def import_class(folder: Path, spec: dict, sums: dict[str, str]) -> type:
    """The network class ``spec`` (model.json) names, imported from the package's
    carried code (under names of its own, see :mod:`dlforge.models.carried`) or from
    the installed distribution it records.

    Args:
        sums: the package's verified SHA256SUMS (``{file: sha256}``).

    Raises:
        DlforgeError: naming model.json when the class path is malformed, names
            neither carried code nor an installed distribution, or is no Module;
            naming a carried file outside the recorded project package.
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
        module_name = f"{_use_code(folder, where, path, top, source, sums)}.{module_name}"
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


def _check_carried(folder: Path, source: dict, sums: dict[str, str]) -> None:
    """Refuse a carried file outside the project package model.json records
    (``code/<top>/…`` or ``code/<top>.py``): a stray top-level module such as
    ``code/wave.py`` could stand in for a standard library one."""
    top = source["code"]
    for name in sorted(sums):
        if name.startswith(f"{CODE}/") and not (name == f"{CODE}/{top}.py" or
                                                 name.startswith(f"{CODE}/{top}/")):
            raise DlforgeError(f"{folder / name}: the package carries code outside the "
                               f"project package model.json records ({CODE}/{top}), and a "
                               f"package may carry that package only. {REPACKAGE}")


def _use_code(folder: Path, where: Path, path: str, top: str, source: dict,
              sums: dict[str, str]) -> str:
    """The alias under which the package's ``code/<top>`` is imported."""
    carried = source["code"] == top and (
        f"{CODE}/{top}.py" in sums or any(n.startswith(f"{CODE}/{top}/") for n in sums))
    if not carried:
        raise DlforgeError(f"{where}: the class {path} is not in the code the package carries "
                           f"({CODE}/{source['code']}). {REPACKAGE}")
    _check_carried(folder, source, sums)
    return alias((folder / CODE).resolve(), top, code_digest(top, sums))


def _check_distribution(where: Path, path: str, top: str, source: dict) -> None:
    name, recorded = source["distribution"], source.get("version")
    try:
        installed = version(name)
    except PackageNotFoundError:
        raise DlforgeError(f"{where}: the model class {path} comes from the distribution "
                           f"{name}=={recorded}, which is not installed here. Fix: "
                           f"pip install '{name}=={recorded}'") from None
    if not _provides(name, top):
        raise DlforgeError(f"{where}: the class {path} is not part of the distribution {name} "
                           f"the package records, nor code the package carries. "
                           f"{REPACKAGE}")
    if installed != recorded:
        log.warning("%s: the model class %s was packaged with %s==%s; %s is installed",
                    where, path, name, recorded, installed)
