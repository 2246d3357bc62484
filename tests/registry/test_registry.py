"""Evaluate, register, gate, promote, roll back, lineage: the model registry as users rely on it."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from dlforge.cli import main
from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import connect
from dlforge.models.package import load_package
from dlforge.registry import models as registry
from tests.helpers import ROOT

TEXTS = ["guitar song album", "rain umbrella forecast", "pizza dinner salad", "loud playlist"]


def client(project) -> mlflow.MlflowClient:
    connect(project.tracking_uri)
    return mlflow.MlflowClient()


def predictions(project, ref: str) -> list:
    model = mlflow.pyfunc.load_model(f"models:/{project.model_name}{ref}")
    return model.predict(TEXTS)[["label", "score"]].values.tolist()


def test_evaluate_writes_metrics_plots_and_logs_them_to_the_training_run(two_versions):
    project = two_versions  # evaluated again here: the last training, version 2's
    result = project.run("evaluate")
    out = project.root / "outputs/intent/eval"
    # The accuracy is the package's, recomputed here from its predictions.
    from dlforge.data.build import read_split

    snapshot = json.loads((project.root / "outputs/intent/snapshot.json").read_text())["path"]
    test = read_split(Path(snapshot) / "test.parquet")
    model = load_package(project.root / "outputs/intent/train/model")
    predicted = [p["label"] for p in model.predict(test["utterance"].tolist())]
    truth = [model.labels[ids[0]] for ids in test["label_ids"]]
    expected = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(test)
    assert result["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert result["examples"] == len(test) and 0 <= result["macro_f1"] <= 1
    per_class = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["label"] for r in per_class] == model.labels
    assert sum(int(r["support"]) for r in per_class) == len(test)
    confusion = list(csv.DictReader((out / "confusion.csv").open()))
    assert [(r["actual"], r["predicted"]) for r in confusion] == list(zip(truth, predicted,
                                                                          strict=True))
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    run_id = json.loads((project.root / "outputs/intent/train/run.json").read_text())["run_id"]
    run = client(project).get_run(run_id)
    assert run.data.metrics["eval/accuracy"] == pytest.approx(expected, abs=1e-6)
    assert {a.path for a in client(project).list_artifacts(run_id, "eval")} >= {
        "eval/metrics.json", "eval/per_class.csv", "eval/confusion.png"}


def test_stages_out_of_order_name_the_command_to_run(project):
    with pytest.raises(DlforgeError, match="Fix: run `dlforge train experiment=intent`"):
        project.run("evaluate")
    project.run("train", "trainer.max_epochs=1")  # the order is under test, not the model
    with pytest.raises(DlforgeError, match="Fix: run `dlforge evaluate experiment=intent`"):
        project.run("register")
    project.run("evaluate")
    with pytest.raises(DlforgeError, match=r"registry.gate.metric='auc' is not in .*accuracy"):
        project.run("register", "registry.gate.metric=auc")


def test_gate_promotion_rollback_and_every_version_keeps_its_own_artifacts(two_versions):
    project = two_versions
    # The two standard releases (tests/conftest.py TWO_VERSIONS), as registered.
    first, second = project.records
    assert (first["version"], first["champion"], first["promote"]) == ("1", "1", True)
    assert first["reason"] == "no champion yet"
    before = predictions(project, "/1")

    # A worse model is registered as candidate; the champion stays.
    assert (second["version"], second["champion"], second["promote"]) == ("2", "1", False)
    assert "does not beat champion v1" in second["reason"]
    written = json.loads((project.root / "outputs/intent/register.json").read_text())
    assert written == second
    c = client(project)
    aliases = registry.list_models(c, project.model_name)[0]["aliases"]
    assert aliases == {"champion": "1", "candidate": "2"}
    assert predictions(project, "/1") == before  # v2 did not overwrite v1's files
    assert predictions(project, "/2") != before
    assert predictions(project, "@champion") == before

    # Registering the same package again adds no version.
    again = project.run("register")
    assert again["version"] == "2" and "already version 2" in again["reason"]

    # Blue-green by hand, then back.
    registry.promote(c, project.model_name, "2")
    assert predictions(project, "@champion") == predictions(project, "/2")
    assert registry.rollback(c, project.model_name)["version"] == "1"
    assert predictions(project, "@champion") == before
    with pytest.raises(DlforgeError, match="no earlier version"):
        registry.rollback(c, project.model_name)
    switches = [(e["version"], e["reason"]) for e in registry.history(c, project.model_name)
                if e["alias"] == "champion"]
    assert switches == [("1", "no champion yet"), ("2", "manual"), ("1", "rollback")]

    # A negative margin lets a worse model through the gate.
    third = project.release("optimizer.lr=0.000001", "seed=4",
                            gate=("registry.gate.margin=-1.0",))
    assert (third["version"], third["champion"], third["promote"]) == ("3", "3", True)
    version = c.get_model_version(project.model_name, "3")
    assert version.tags["dlforge.snapshot"] == third["snapshot"]
    assert float(version.tags["dlforge.metric.accuracy"]) == third["gate"]["value"]


def test_a_fresh_process_loads_the_champion_with_mlflow_alone(two_versions, tmp_path):
    project = two_versions  # v1 champion; the last training is v2's
    code = ("import json, sys, mlflow\n"
            f"mlflow.set_tracking_uri({project.tracking_uri!r})\n"
            f"model = mlflow.pyfunc.load_model('models:/{project.model_name}@champion')\n"
            f"out = model.predict({TEXTS!r}, params={{'top_k': 2}})\n"
            "print(json.dumps({'labels': out['label'].tolist(), 'top': out['top_k'][0],"
            " 'heavy': [m for m in ('lightning', 'optuna') if m in sys.modules]}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    from dlforge.registry.fetch import fetch_package

    folder, _, _ = fetch_package(client(project), f"models:/{project.model_name}/1",
                                 tmp_path / "fetched")
    package = load_package(folder)
    assert out["labels"] == [p["label"] for p in package.predict(TEXTS)]
    assert len(json.loads(out["top"])) == 2 and out["heavy"] == []


def test_a_tampered_registered_model_is_refused(two_versions):
    project = two_versions
    c = client(project)
    stored = c.get_model_version_download_uri(project.model_name, "1")  # the registry's copy
    (weights,) = Path(stored.removeprefix("file://")).rglob("weights.safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(DlforgeError, match="does not match SHA256SUMS"):
        mlflow.pyfunc.load_model(f"models:/{project.model_name}/1")


def test_lineage_goes_from_model_to_run_snapshot_commits_and_sources(two_versions, capsys):
    project = two_versions  # followed from v2 (candidate), the last training in outputs/
    uri = f"models:/{project.model_name}@candidate"
    capsys.readouterr()
    assert main(["lineage", uri, "--json", "--tracking-uri", project.tracking_uri]) == 0
    chain = json.loads(capsys.readouterr().out)
    state = json.loads((project.root / "outputs/intent/train/run.json").read_text())
    snapshot = json.loads((project.root / "outputs/intent/snapshot.json").read_text())
    assert chain["model"] | {"tags": None, "source": None, "created": None} == {
        "name": project.model_name, "version": "2", "aliases": ["candidate"],
        "tags": None, "source": None, "created": None}
    assert chain["run"]["run_id"] == state["run_id"]
    assert chain["run"]["config_hash"] == state["config_hash"]
    assert chain["run"]["git_commit"] and chain["run"]["params"]["optimizer.lr"] == "1e-06"
    assert chain["snapshot"]["version"] == snapshot["version"]
    (commit,) = chain["commits"]
    assert commit["id"] == 1 and commit["created_at"]
    (source,) = chain["sources"]
    raw = project.root / "sources" / "toy.csv"
    assert source["digest"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert Path(source["path"]).resolve() == raw.resolve()

    # What the training run cost, as its metrics.json has it, also in the text tree.
    cost = json.loads((project.root / "outputs/intent/train/metrics.json").read_text())["cost"]
    assert chain["run"]["cost"] == pytest.approx(cost) and cost["cpu_seconds"] > 0
    capsys.readouterr()
    assert main(["lineage", uri, "--tracking-uri", project.tracking_uri]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"cost: CPU {cost['cpu_seconds']:.1f} s, wall {cost['wall_seconds']:.1f} s, " \
        f"peak RSS {cost['peak_rss_bytes'] / 2**20:.1f} MiB" in text


def test_lineage_of_an_unknown_model_names_the_fix(project):
    connect(project.tracking_uri)
    from dlforge.registry.lineage import lineage

    with pytest.raises(DlforgeError, match="does not exist. Fix: see `dlforge models list"):
        lineage(mlflow.MlflowClient(), "models:/no-such-model@champion")
    with pytest.raises(DlforgeError, match="is not a model URI"):
        lineage(mlflow.MlflowClient(), "runs:/abc/model")
