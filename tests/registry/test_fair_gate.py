"""The gate compares a candidate with the champion on the candidate's own test split."""

from __future__ import annotations

import json

import mlflow
import pytest

from dlforge.core.tracking import connect
from dlforge.data import SnapshotStore, Store
from dlforge.data.snapshot import Snapshot, SplitRule
from dlforge.models.package import load_package
from dlforge.registry import register as gate_module
from dlforge.registry.fetch import fetch_package


def test_the_champion_is_evaluated_again_on_the_candidates_test_split_once(
        project, monkeypatch, tmp_path):
    first = project.release("optimizer.lr=0.02")
    assert first["champion"] == "1"
    # New data arrives as another snapshot: another test split for the same labels.
    ref = SnapshotStore(project.root / "data/snapshots", Store(project.root / "data/store")
                        ).build("toy", split=SplitRule(salt="another split"))
    assert ref.version != first["snapshot"]
    (project.root / "outputs/intent/snapshot.json").write_text(json.dumps(
        {"dataset": "toy", "version": ref.version, "path": str(ref.path)}))

    held = ("registry.gate.margin=1.0",)  # v1 stays champion: each candidate meets it
    second = project.release("optimizer.lr=0.02", "seed=3", gate=held)
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
    third = project.release("optimizer.lr=0.02", "seed=4", gate=held)
    assert third["champion"] == "1"
    assert f"(re-evaluated on snapshot {ref.version})" in third["reason"], third["reason"]
