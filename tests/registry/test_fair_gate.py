"""The gate compares a candidate with the champion on the candidate's own test split."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from dlforge.core.tracking import connect
from dlforge.data import SnapshotStore, Store
from dlforge.data.snapshot import Snapshot, SplitRule
from dlforge.models.package import load_package, package_digest
from dlforge.registry import register as gate_module
from dlforge.registry.fetch import fetch_package
from tests.user_models import as_format_1

# Candidates here are judged, never promoted (the gate's margin holds them): one epoch will do.
CANDIDATE = ("optimizer.lr=0.02", "trainer.max_epochs=1")


def test_the_champion_is_evaluated_again_on_the_candidates_test_split_once(
        two_versions, monkeypatch, tmp_path):
    project = two_versions
    first = project.records[0]  # v1, champion (v2 is the standard candidate)
    assert first["champion"] == "1"
    # New data arrives as another snapshot: another test split for the same labels.
    ref = SnapshotStore(project.root / "data/snapshots", Store(project.root / "data/store")
                        ).build("toy", split=SplitRule(salt="another split"))
    assert ref.version != first["snapshot"]
    (project.root / "outputs/intent/snapshot.json").write_text(json.dumps(
        {"dataset": "toy", "version": ref.version, "path": str(ref.path)}))

    held = ("registry.gate.margin=1.0",)  # v1 stays champion: each candidate meets it
    second = project.release(*CANDIDATE, "seed=3", gate=held)
    assert second["snapshot"] == ref.version
    assert second["champion"] == "1" and "champion v1's" in second["reason"]
    assert f"(re-evaluated on snapshot {ref.version})" in second["reason"], second["reason"]
    connect(project.tracking_uri)
    client = mlflow.MlflowClient()
    kept = float(client.get_model_version(project.model_name, "1").tags[
        f"dlforge.gate.{ref.version}.accuracy"])
    # What was kept is v1's accuracy on the new test split, as evaluation computes it.
    folder, _, _ = fetch_package(client, f"models:/{project.model_name}/1", tmp_path / "c")
    snapshot = Snapshot.open(ref.path)
    predicted = [p["label"] for p in load_package(folder).predict(snapshot.inputs("test"))]
    truth = [snapshot.labels[ids[0]] for ids in snapshot.split("test")["label_ids"]]
    assert kept == pytest.approx(sum(p == t for p, t in zip(predicted, truth, strict=True))
                                 / len(truth), abs=1e-6)

    # A later candidate on the same snapshot reuses the kept value.
    def again(*args):
        raise AssertionError("the champion was evaluated again")

    monkeypatch.setattr(gate_module, "_evaluate_champion", again)
    third = project.release(*CANDIDATE, "seed=4", gate=held)
    assert third["champion"] == "1"
    assert f"(re-evaluated on snapshot {ref.version})" in third["reason"], third["reason"]


def test_a_champion_that_no_longer_loads_is_judged_by_its_own_evaluation(two_versions):
    """A champion registered by an older dlforge (package format 1) does not block
    the next registration: the gate takes its own test score and says why."""
    project = two_versions
    first = project.records[0]  # v1, champion (v2 is the standard candidate)
    connect(project.tracking_uri)
    client = mlflow.MlflowClient()
    stored = client.get_model_version_download_uri(project.model_name, "1")
    (package,) = {p.parent for p in Path(stored.removeprefix("file://")).rglob("model.json")}
    as_format_1(package)  # and registered so: the registry holds the digest of those files
    client.set_model_version_tag(project.model_name, "1", gate_module.PACKAGE_TAG,
                                 package_digest(package))
    ref = SnapshotStore(project.root / "data/snapshots", Store(project.root / "data/store")
                        ).build("toy", split=SplitRule(salt="another split"))
    (project.root / "outputs/intent/snapshot.json").write_text(json.dumps(
        {"dataset": "toy", "version": ref.version, "path": str(ref.path)}))

    second = project.release(*CANDIDATE, "seed=3", gate=("registry.gate.margin=1.0",))
    assert second["version"] == "3" and second["champion"] == first["champion"] == "1"
    assert ("(on its own test split: its package does not load here: package format 1, and "
            "this dlforge reads format 2) by more than") in second["reason"], second["reason"]
