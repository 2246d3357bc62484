"""Data moves through a DVC remote: a fresh clone pulls what the workflow built and has
nothing left to build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dlforge
from tests.conftest import tree_digest
from tests.test_workflow import BIN, project, quick, run, snakemake  # noqa: F401

pytestmark = pytest.mark.slow

DVC = f"{BIN}/dvc"
GITIGNORE = Path(dlforge.__file__).parent / "templates" / "project" / "gitignore"
# What DVC caches of the data stages: the sources (data.dvc in a project), the dataset
# store and the snapshots (persist outputs of ingest and snapshot).
CACHED = ("data/raw", "data/store/clinc150", "data/snapshots/clinc150")
DATA_STAGES = ("ingest-intent", "snapshot-intent")
SNAPSHOT = "outputs/intent/snapshot.json"  # the data stages' last output


def test_a_fresh_clone_pulls_the_built_data_and_has_nothing_to_rebuild(
        project, tmp_path_factory, monkeypatch):  # noqa: F811
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "dlforge@example.org")
    shutil.copy(GITIGNORE, project / ".gitignore")  # what `dlforge init` writes
    run(project, "git", "init", "-q")
    run(project, DVC, "init", "-q")
    run(project, DVC, "add", "-q", "data/raw")  # as data.dvc tracks a project's sources
    # The data stages; Snakemake's onsuccess records them in dvc.lock (`dvc commit`).
    snakemake(project, SNAPSHOT)
    remote = tmp_path_factory.mktemp("remote")
    run(project, DVC, "remote", "add", "-d", "storage", str(remote))
    pushed = run(project, DVC, "push")
    assert "pushed" in pushed, pushed
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "built")

    clone = tmp_path_factory.mktemp("clone") / "project"
    run(project, "git", "clone", "-q", str(project), str(clone))
    assert not any((clone / path).exists() for path in CACHED)  # git holds none of it
    run(clone, DVC, "pull", "data/raw.dvc", *DATA_STAGES)
    for path in CACHED:
        assert tree_digest(clone / path) == tree_digest(project / path), path
    verified = json.loads(run(clone, f"{BIN}/dlforge", "data", "verify", "--json"))
    assert verified["ok"] and verified["problems"] == [], verified
    assert verified["datasets"]["clinc150"]["commits"] == 2  # both sources' commits
    assert verified["datasets"]["clinc150"]["snapshots"] == 1
    # Nothing to build: DVC finds the stages' dependencies and outputs as dvc.lock has them.
    clean = "Data and pipelines are up to date"
    assert clean in run(clone, DVC, "status", "data/raw.dvc", *DATA_STAGES)
    assert "Running stage" not in run(clone, DVC, "repro", "snapshot-intent")
    # Snakemake judges by modification times, and the pulled files are newer than those
    # git wrote: once DVC has found them current, `--touch` adopts them without a run.
    snakemake(clone, "--touch", SNAPSHOT)
    assert "Nothing to be done" in snakemake(clone, "--dry-run", SNAPSHOT)
    assert clean in run(clone, DVC, "status", "data/raw.dvc", *DATA_STAGES)
    assert run(clone, "git", "status", "--porcelain") == ""  # dvc.lock as it was
