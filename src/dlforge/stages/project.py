"""``dlforge init``: a new project, ready for git, Snakemake and DVC.

    dlforge init myproj                    # a CSV dataset of your own, your own network
    dlforge init myproj --type image       # a folder of images per label, your own CNN
    dlforge init myproj --example intent   # the CLINC150 sample, with its data
    dlforge init myproj --example digits   # scikit-learn's digits (built offline)

The project's type (``--type``, default ``text``; an example has its own) picks
its dataset type (``text_intent`` or ``image_class``), its encoder
(``TextEncoder`` or ``ImageEncoder``, whose channels come from the train images)
and its starter network. It is never guessed from data: ``init`` writes into a
new or empty folder only, so there is none yet.

The project is written into a staging folder beside ``PATH`` and renamed into
place once complete, so that a failure leaves nothing half-made. It gets:

    conf/dataset/, conf/experiment/   an example dataset and experiment
    conf/model/<package>.yaml         the project's network, src/<package>/nets.py (per type)
    src/<package>/                    the project's own code
    workflow/config.yaml, profiles/   the experiments; local, SLURM and Kubernetes profiles
    Snakefile                         dlforge's packaged rules + rule all
    dvc.yaml, params.yaml             from `dlforge workflow dvc` (params: per experiment)
    data/raw/ + data/raw.dvc          the raw data, tracked by DVC
    .github/workflows/                `dlforge review` posted on each pull request
    .gitignore, README.md             and `git init`, where git is installed; the README
                                      says where the data goes (per type)

The base configs (trainer, optimizer, ...) stay in the dlforge package, found
after the project's ``conf/`` (see :mod:`dlforge.core.config`).
"""

from __future__ import annotations

import keyword
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dlforge import __version__
from dlforge.core.errors import DlforgeError

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
KINDS = ("text", "image")  # --type: the kind of a project's inputs
EXAMPLES = {"intent": "text", "digits": "image"}  # example -> the kind of its inputs
DATA = {"text": "a CSV (text,label; no header) at data/raw/{package}.csv",
        "image": "a folder of images per label at data/raw/{package}/ "
                 "(data/raw/{package}/<label>/*.png)"}
# {{dlforge_version}}: the review workflow installs the dlforge that wrote the project
PLACEHOLDER = re.compile(r"\{\{(name|package|experiment|dlforge_version)\}\}")
PACKAGE = re.compile(r"[a-z][a-z0-9_]{0,99}")  # also an experiment name (dlforge.core.names)
OWN_MODULES = frozenset({"dlforge", "hydra_plugins"})  # what dlforge installs
# Imported by Python itself (site, multiprocessing) or the name of the running script.
SPECIAL_MODULES = frozenset({"sitecustomize", "usercustomize", "__main__", "__mp_main__"})


def package_name(folder: Path) -> str:
    """The Python package of the project in ``folder``: its name, lower-cased, with
    ``-``, ``.`` and spaces as ``_``. It is also the experiment's name (``outputs/<name>``).

    Raises:
        DlforgeError: when that is not a package name (ASCII letters, digits and ``_``,
            starting with a letter), is a keyword, or names a module that is importable
            already (see :func:`importable_as`).
    """
    name = re.sub(r"[-. ]", "_", folder.name.lower())
    taken = importable_as(name)
    if taken:
        raise DlforgeError(f"{folder}: the project name {name!r} is {taken}: src/{name}/ would "
                           "hide it from every stage, which imports the project's code first. "
                           f"Fix: choose another name, e.g. `dlforge init "
                           f"{folder.with_name(f'{name}_project')}`")
    if not PACKAGE.fullmatch(name) or keyword.iskeyword(name):
        raise DlforgeError(f"{folder}: the folder's name {folder.name!r} gives no Python "
                           f"package name for src/ ({name!r}). Fix: name the folder with "
                           "letters, digits and _ or -, starting with a letter")
    return name


def importable_as(name: str) -> str | None:
    """What ``name`` already is to Python (None when nothing): a module of the standard
    library, of an installed distribution, dlforge's own, or one Python treats specially."""
    from importlib.metadata import packages_distributions

    if name in SPECIAL_MODULES:
        return "a module name Python treats specially"
    if name in sys.stdlib_module_names:
        return "a module of Python's standard library"
    if name in OWN_MODULES:
        return "one of dlforge's own packages"
    installed = {module.lower(): dists for module, dists in packages_distributions().items()}
    if name in installed:
        return f"a module of the installed distribution {', '.join(sorted(installed[name]))}"
    found = _installed_module(name)
    if found:
        return f"a module Python imports already, from {found}"
    return None


def _installed_module(name: str) -> str | None:
    """Where Python finds a top-level module ``name`` outside the working folder (the
    standard library's ``test``, a module on PYTHONPATH), or None."""
    from importlib.machinery import PathFinder

    here = Path.cwd().resolve()
    paths = [p for p in sys.path if p and Path(p).resolve() != here]
    spec = PathFinder.find_spec(name, paths)
    if spec is None:
        return None
    return spec.origin or ", ".join(spec.submodule_search_locations or []) or "sys.path"


def init(path: Path, example: str | None = None, kind: str | None = None) -> dict:
    """Write a new project at ``path``; ``kind``: its inputs, ``text`` or ``image``
    (None: the example's, else ``text``).

    Raises:
        DlforgeError: when ``path`` is a file or a non-empty folder, its parent cannot
            be written, ``example`` or ``kind`` is unknown, or they disagree.
    """
    path = Path(path).absolute()
    kind = project_kind(example, kind)
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise DlforgeError(f"{path} exists and is not an empty folder: dlforge init writes "
                           "a new project only. Fix: name a new or empty folder")
    package = package_name(path)
    experiment = example or package
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.init-", dir=path.parent))
    except OSError as err:
        raise DlforgeError(f"{path}: cannot create the project there ({err.strerror}). "
                           "Fix: choose a folder you can write") from None
    try:
        values = {"name": path.name, "package": package, "experiment": experiment,
                  "dlforge_version": __version__}
        _write_files(staging, values, example, kind)
        tools = _track(staging)
        os.replace(staging, path)  # replaces an empty folder too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"project": str(path), "package": package, "experiment": experiment,
            "example": example, "type": kind, **tools,
            "next": _next_steps(path, package, example, kind)}


def project_kind(example: str | None, kind: str | None) -> str:
    """The kind of the project's inputs: ``kind``, else the example's, else ``text``.

    Raises:
        DlforgeError: for an unknown example or kind, or an example of another kind.
    """
    if example is not None and example not in EXAMPLES:
        raise DlforgeError(f"--example {example}: no such example. Fix: use one of "
                           f"{', '.join(EXAMPLES)}, or none for a project of your own")
    if kind is not None and kind not in KINDS:
        raise DlforgeError(f"--type {kind}: no such project type. Fix: use one of "
                           f"{', '.join(KINDS)}")
    if example is not None and kind not in (None, EXAMPLES[example]):
        raise DlforgeError(f"--example {example} is of --type {EXAMPLES[example]}, not "
                           f"{kind}. Fix: leave out --type, or choose an example of type "
                           f"{kind}")
    return kind or EXAMPLES.get(example, "text")


def _write_files(root: Path, values: dict, example: str | None, kind: str) -> None:
    project, model = TEMPLATES / "project", TEMPLATES / "model" / kind
    _copy_tree(project, root, values, skip={"gitignore", "package_init.py"},
               rename={"github": ".github"})
    _copy(project / "gitignore", root / ".gitignore", values)
    source = root / "src" / values["package"]
    _copy(project / "package_init.py", source / "__init__.py", values)
    _copy(model / "nets.py", source / "nets.py", values)
    _copy(model / "model.yaml", root / "conf" / "model" / f"{values['package']}.yaml", values)
    _copy(TEMPLATES / "starter/data/raw/README.md", root / "data/raw/README.md", values)
    if example is not None:
        _copy_tree(TEMPLATES / "examples" / example, root, values)
    else:
        starter = TEMPLATES / "starter" / kind
        _copy(starter / "conf/dataset/dataset.yaml",
              root / "conf/dataset" / f"{values['package']}.yaml", values)
        _copy(starter / "conf/experiment/experiment.yaml",
              root / "conf/experiment" / f"{values['package']}.yaml", values)
        _copy(starter / "README.md", root / "README.md", values, append=True)


def _copy_tree(source: Path, target: Path, values: dict, skip: set[str] = frozenset(),
               rename: dict[str, str] | None = None) -> None:
    """Every file under ``source`` into ``target``, but those named in ``skip``; a top
    folder named in ``rename`` gets the new name (dot folders are not package data)."""
    for file in sorted(source.rglob("*")):
        if file.is_file() and file.name not in skip and "__pycache__" not in file.parts:
            parts = file.relative_to(source).parts
            parts = ((rename or {}).get(parts[0], parts[0]), *parts[1:])
            _copy(file, target.joinpath(*parts), values)


def _copy(source: Path, target: Path, values: dict, append: bool = False) -> None:
    """``source`` to ``target`` with the placeholders filled in (data files as they are);
    ``append``: after what ``target`` holds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".csv":  # data: as it is
        shutil.copyfile(source, target)
        return
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], source.read_text())
    with target.open("a" if append else "w") as out:
        out.write(text)


def _track(root: Path) -> dict:
    """git (where installed, unless the folder is already in a repository), DVC,
    ``data/raw`` added to DVC, then dvc.yaml and params.yaml."""
    git = shutil.which("git") is not None
    inside = git and _run(["git", "rev-parse", "--is-inside-work-tree"], root,
                          check=False).returncode == 0
    if git and not inside:
        _run(["git", "init", "--quiet"], root)
    _track_data(root, scm=git, subdir=inside)
    _run([sys.executable, "-m", "dlforge", "workflow", "dvc"], root)
    return {"git": "initialised" if git and not inside else
            ("inside an existing repository" if inside else "not installed")}


def _track_data(root: Path, scm: bool, subdir: bool) -> None:
    """``dvc init`` (its usage reports off) and ``dvc add data/raw`` in ``root``, through
    DVC's API: in this process, which saves two of DVC's starts. DVC needs git (here or
    above: ``subdir``, a project in a repository's folder) unless told there is none."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    step = "dvc init"
    dvc_log = logging.getLogger("dvc")  # its info is for its own command line (stdout)
    level = dvc_log.level
    dvc_log.setLevel(logging.WARNING)
    try:
        with Repo.init(str(root), no_scm=not scm, subdir=subdir) as repo:
            with repo.config.edit() as config:
                config["core"]["analytics"] = False
            step = "dvc add data/raw"
            repo.add(str(root / "data" / "raw"))  # a path of the cwd's, as on the command line
    except DvcException as error:
        raise DlforgeError(f"{step} failed in the new project: {error}. Fix: see DVC's "
                           f"message; nothing was written where the project goes") from None
    finally:
        dvc_log.setLevel(level)


def _run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise DlforgeError(f"{' '.join(command[-3:])} failed in the new project "
                           f"({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result


def _next_steps(path: Path, package: str, example: str | None, kind: str) -> list[str]:
    steps = [f"cd {path}"]
    if example is None:
        steps += [f"put {DATA[kind].format(package=package)}, then `dvc add data/raw`",
                  f"edit src/{package}/nets.py and conf/model/{package}.yaml to taste"]
    steps += ["snakemake --profile workflow/profiles/local", "dlforge serve"]
    return steps
