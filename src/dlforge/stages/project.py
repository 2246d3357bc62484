"""``dlforge init``: a new project, ready for git, Snakemake and DVC.

    dlforge init myproj                    # a CSV dataset of your own, your own network
    dlforge init myproj --example intent   # the CLINC150 sample, with its data
    dlforge init myproj --example digits   # scikit-learn's digits (built offline)

The project is written into a staging folder beside ``PATH`` and renamed into
place once complete, so that a failure leaves nothing half-made. It gets:

    conf/dataset/, conf/experiment/   an example dataset and experiment
    conf/model/<package>.yaml         the project's network, src/<package>/nets.py
    src/<package>/                    the project's own code
    workflow/config.yaml, profiles/   the experiments; local, SLURM and Kubernetes profiles
    Snakefile                         dlforge's packaged rules + rule all
    dvc.yaml, params.yaml             from `dlforge workflow dvc` (params: per experiment)
    data/raw/ + data/raw.dvc          the raw data, tracked by DVC
    .github/workflows/                `dlforge review` posted on each pull request
    .gitignore, README.md             and `git init`, where git is installed

The base configs (trainer, optimizer, ...) stay in the dlforge package, found
after the project's ``conf/`` (see :mod:`dlforge.core.config`).
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dlforge.core.errors import DlforgeError

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
EXAMPLES = {"intent": "text", "digits": "image"}  # example -> the kind of its inputs
PLACEHOLDER = re.compile(r"\{\{(name|package|experiment)\}\}")


def package_name(folder: Path) -> str:
    """The Python package of the project in ``folder``: its name, lower-cased, with
    ``-``, ``.`` and spaces as ``_``.

    Raises:
        DlforgeError: when that is not a Python identifier, or is a keyword.
    """
    name = re.sub(r"[-. ]", "_", folder.name.lower())
    if not name.isidentifier() or keyword.iskeyword(name) or name == "dlforge":
        raise DlforgeError(f"{folder}: the folder's name {folder.name!r} gives no Python "
                           f"package name for src/ ({name!r}). Fix: name the folder with "
                           "letters, digits and _ or -, starting with a letter")
    return name


def init(path: Path, example: str | None = None) -> dict:
    """Write a new project at ``path``.

    Raises:
        DlforgeError: when ``path`` is a file or a non-empty folder, its parent cannot
            be written, or ``example`` is unknown.
    """
    path = Path(path).absolute()
    if example is not None and example not in EXAMPLES:
        raise DlforgeError(f"--example {example}: no such example. Fix: use one of "
                           f"{', '.join(EXAMPLES)}, or none for a project of your own")
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
        values = {"name": path.name, "package": package, "experiment": experiment}
        _write_files(staging, values, example)
        tools = _track(staging)
        os.replace(staging, path)  # replaces an empty folder too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"project": str(path), "package": package, "experiment": experiment,
            "example": example, **tools,
            "next": _next_steps(path, package, example)}


def _write_files(root: Path, values: dict, example: str | None) -> None:
    project = TEMPLATES / "project"
    _copy_tree(project, root, values, skip={"gitignore", "nets.py", "package_init.py"},
               rename={"github": ".github"})
    _copy(project / "gitignore", root / ".gitignore", values)
    source = root / "src" / values["package"]
    _copy(project / "package_init.py", source / "__init__.py", values)
    _copy(project / "nets.py", source / "nets.py", values)
    kind = EXAMPLES.get(example, "text")
    _copy(TEMPLATES / "model" / kind / "model.yaml",
          root / "conf" / "model" / f"{values['package']}.yaml", values)
    _copy(TEMPLATES / "starter/data/raw/README.md", root / "data/raw/README.md", values)
    if example is not None:
        _copy_tree(TEMPLATES / "examples" / example, root, values)
    else:
        starter = TEMPLATES / "starter"
        _copy(starter / "conf/dataset/dataset.yaml",
              root / "conf/dataset" / f"{values['package']}.yaml", values)
        _copy(starter / "conf/experiment/experiment.yaml",
              root / "conf/experiment" / f"{values['package']}.yaml", values)


def _copy_tree(source: Path, target: Path, values: dict, skip: set[str] = frozenset(),
               rename: dict[str, str] | None = None) -> None:
    """Every file under ``source`` into ``target``, but those named in ``skip``; a top
    folder named in ``rename`` gets the new name (dot folders are not package data)."""
    for file in sorted(source.rglob("*")):
        if file.is_file() and file.name not in skip and "__pycache__" not in file.parts:
            parts = file.relative_to(source).parts
            parts = ((rename or {}).get(parts[0], parts[0]), *parts[1:])
            _copy(file, target.joinpath(*parts), values)


def _copy(source: Path, target: Path, values: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".csv":  # data: as it is
        shutil.copyfile(source, target)
        return
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], source.read_text())
    target.write_text(text)


def _track(root: Path) -> dict:
    """git (where installed, unless the folder is already in a repository), DVC,
    ``data/raw`` added to DVC, then dvc.yaml and params.yaml."""
    git = shutil.which("git") is not None
    inside = git and _run(["git", "rev-parse", "--is-inside-work-tree"], root,
                          check=False).returncode == 0
    if git and not inside:
        _run(["git", "init", "--quiet"], root)
    scm = git  # DVC needs git (here or above) unless told there is none
    _run([sys.executable, "-m", "dvc", "init", "--quiet", *([] if scm else ["--no-scm"])], root)
    with (root / ".dvc" / "config").open("a") as config:
        config.write("[core]\n    analytics = false\n")
    _run([sys.executable, "-m", "dvc", "add", "data/raw"], root)
    _run([sys.executable, "-m", "dlforge", "workflow", "dvc"], root)
    return {"git": "initialised" if git and not inside else
            ("inside an existing repository" if inside else "not installed")}


def _run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if check and result.returncode != 0:
        raise DlforgeError(f"{' '.join(command[-3:])} failed in the new project "
                           f"({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result


def _next_steps(path: Path, package: str, example: str | None) -> list[str]:
    steps = [f"cd {path}"]
    if example is None:
        steps += [f"put a CSV (text,label; no header) at data/raw/{package}.csv, then "
                  "`dvc add data/raw`",
                  f"edit src/{package}/nets.py and conf/model/{package}.yaml to taste"]
    steps += ["snakemake --profile workflow/profiles/local", "dlforge serve"]
    return steps
