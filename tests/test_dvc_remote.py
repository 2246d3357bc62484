"""Data moves through a DVC remote: a fresh clone pulls what the workflow built and has
nothing left to build."""

from __future__ import annotations

import json

import pytest

from tests.helpers import tree_digest
from tests.workflow_fixtures import BIN, copy_of, pipeline, run, snakemake  # noqa: F401

pytestmark = pytest.mark.slow

DVC = f"{BIN}/dvc"
# What DVC caches of the data stages: the sources (data.dvc in a project), the dataset
# store and the snapshots (persist outputs of ingest and snapshot).
CACHED = ("data/raw", "data/store/clinc150", "data/snapshots/clinc150")
DATA_STAGES = ("ingest-intent", "snapshot-intent")
SNAPSHOT = "outputs/intent/snapshot.json"  # the data stages' last output


def test_a_fresh_clone_pulls_the_built_data_and_has_nothing_to_rebuild(
        pipeline, tmp_path_factory):  # noqa: F811
    # The project after a complete Snakemake run, committed: its sources tracked by DVC
    # (data/raw.dvc) and what each stage built recorded in dvc.lock (Snakemake's
    # onsuccess runs `dvc commit`).
    project = copy_of(pipeline, tmp_path_factory.mktemp("built") / "project")
    remote = tmp_path_factory.mktemp("remote")
    run(project, DVC, "remote", "add", "-d", "storage", str(remote))
    pushed = run(project, DVC, "push")
    assert "pushed" in pushed, pushed
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "a remote")

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
