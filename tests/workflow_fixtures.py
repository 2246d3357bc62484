"""The workflow's test projects and the commands run in them: a quick copy of the
project (intent only, 5% of the sample, one epoch), and that copy as a complete
Snakemake run left it, each built once per test run and copied by each test that
needs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dlforge
from tests.helpers import BIN, ROOT, built_once, run

GITIGNORE = Path(dlforge.__file__).parent / "templates" / "project" / "gitignore"


def snakemake(project: Path, *args: str) -> str:
    """``snakemake --profile workflow/profiles/local ARGS`` in ``project``."""
    return run(project, f"{BIN}/snakemake", "--profile", "workflow/profiles/local", *args)


def planned_rules(plan: str) -> set[str]:
    """The rules of a Snakemake plan or log, ``all`` left out: ``rule NAME:`` lines, and
    ``localrule NAME:`` where a run executes jobs on this machine."""
    return {line.split("rule ", 1)[1].rstrip(":") for line in plan.splitlines()
            if line.startswith(("rule ", "localrule "))} - {"all"}


def dvc_ran(log: str) -> set[str]:
    """The stages a ``dvc repro`` (or ``dvc exp run``) log says it ran."""
    return {line.split("'")[1] for line in log.splitlines()
            if line.startswith("Running stage '")}


def quick_project(root: Path) -> Path:
    """A copy of the project's workflow, configs and sample data in ``root``: the
    intent experiment only (digits has tests of its own), 5% of its rows, one epoch,
    one sweep trial; dvc.yaml and params.yaml written for it."""
    for name in ("conf", "workflow"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "Snakefile", root / "Snakefile")
    shutil.copytree(ROOT / "data" / "raw" / "clinc150", root / "data" / "raw" / "clinc150")
    for part in (root / "data" / "raw" / "clinc150").glob("part-*.csv"):
        part.write_text("".join(part.read_text().splitlines(keepends=True)[::20]))  # 5%
    experiment = root / "conf" / "experiment" / "intent.yaml"
    quick = experiment.read_text().replace("n_trials: 8", "n_trials: 1").replace(
        "n_workers: 2", "n_workers: 1").replace("max_epochs: 6", "max_epochs: 1")
    experiment.write_text(quick + "trainer:\n  max_epochs: 1\n  enable_progress_bar: false\n")
    (root / "workflow" / "config.yaml").write_text("experiments:\n  - intent\n")
    run(root, f"{BIN}/dlforge", "workflow", "dvc")
    return root


def set_sweep(project: Path, enabled: bool) -> None:
    """Turn the intent experiment's sweep on or off (off, a run trains straight away)."""
    experiment = project / "conf" / "experiment" / "intent.yaml"
    old, new = ("false", "true") if enabled else ("true", "false")
    experiment.write_text(experiment.read_text().replace(f"enabled: {old}", f"enabled: {new}"))


def without_sweep(project: Path) -> None:
    """Turn the intent experiment's sweep off."""
    set_sweep(project, False)


def copy_of(project: Path, where: Path) -> Path:
    """``project`` copied to ``where``, modification times kept (Snakemake's measure)."""
    shutil.copytree(project, where, symlinks=True)
    return where


def build_pipeline(root: Path) -> None:
    """The quick project, without its sweep, in git and DVC as `dlforge init` sets a
    project up (its .gitignore, the sources tracked by DVC), after one complete
    Snakemake run, committed."""
    project = quick_project(root)
    without_sweep(project)
    shutil.copy(GITIGNORE, project / ".gitignore")
    run(project, "git", "init", "-q")
    run(project, f"{BIN}/dvc", "init", "-q")
    run(project, f"{BIN}/dvc", "add", "-q", "data/raw")  # as data.dvc tracks a project's
    snakemake(project)
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline")


@pytest.fixture(scope="session")
def quick(tmp_path_factory) -> Path:
    """The quick project (:func:`quick_project`), written once per test run: copy it
    (:func:`copy_of`) before changing anything."""
    return built_once(tmp_path_factory, "quick", quick_project)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """The quick project as one complete, real Snakemake run left it (sweep off): a
    champion registered, dvc.lock recorded, all committed in git. Shared by every test
    of the run: copy it (:func:`copy_of`) before changing anything."""
    with pytest.MonkeyPatch.context() as env:
        # Built before the tests' own fixture drops it: a shell's would take the runs.
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        return built_once(tmp_path_factory, "pipeline", build_pipeline)
