"""The model card of a registered version: its description and MODEL_CARD.md, from the record."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
from pathlib import Path

import mlflow
import pytest
import yaml

from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import connect
from dlforge.registry import card
from tests.toy import make_project

INTENDED = "Routing toy chat messages to three intents, a **demonstration**: not for production."
SECTIONS = ("## Intended use", "## Limitations", "## Data", "## Training", "## Evaluation",
            "## Gate")


@pytest.fixture(scope="module")
def released(tmp_path_factory, mlflow_dir):
    """One weak training (its classes differ in F1), evaluated, and registered twice: under
    the project's name with ``model_card.intended_use``, under ``<name>-plain`` without."""
    project = make_project(tmp_path_factory.mktemp("card"), mlflow_dir)
    project.run("train", "optimizer.lr=0.001")
    project.run("evaluate")
    project.run("register", f"model_card.intended_use='{INTENDED}'")
    project.run("register", f"registry.model_name={project.model_name}-plain")
    connect(project.tracking_uri)
    return project


def version(project, suffix: str = ""):
    return mlflow.MlflowClient().get_model_version(f"{project.model_name}{suffix}", "1")


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, text[:200]
    return yaml.safe_load(match[1])


def evaluation(project) -> tuple[dict, list[dict]]:
    folder = project.root / "outputs/intent/eval"
    rows = list(csv.DictReader((folder / "per_class.csv").open()))
    return json.loads((folder / "metrics.json").read_text()), rows


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table(text: str, after: str) -> list[list[str]]:
    """The cells of the Markdown table that follows the line holding ``after``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    while not lines[start].startswith("|"):
        start += 1
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_description_is_a_card_whose_model_index_holds_the_snapshot_and_metrics(released):
    text = version(released).description
    meta = front_matter(text)
    snapshot = json.loads((released.root / "outputs/intent/snapshot.json").read_text())
    metrics, _ = evaluation(released)
    assert meta["library_name"] == "dlforge" and "dlforge" in meta["tags"]
    (entry,) = meta["model-index"]
    (result,) = entry["results"]
    assert entry["name"] == released.model_name
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"]["revision"] == snapshot["version"] == metrics["snapshot"]
    assert {m["name"]: m["value"] for m in result["metrics"]} == {
        card.HUB_METRICS[k][1]: v for k, v in metrics.items() if isinstance(v, float)}
    for title in SECTIONS:
        assert f"\n{title}\n" in text


def test_the_weakest_classes_are_the_lowest_f1_ones_of_the_evaluation(released):
    _, rows = evaluation(released)
    f1 = {r["label"]: float(r["f1"]) for r in rows}
    assert len(set(f1.values())) > 1  # the weak model: the order means something
    shown = table(section(version(released).description, "Evaluation"), "weakest classes")
    assert [float(r[1]) for r in shown] == pytest.approx(sorted(f1.values())[:card.WEAKEST],
                                                         abs=1e-4)
    assert all(float(r[1]) == pytest.approx(f1[r[0]], abs=1e-4) for r in shown)


def test_metrics_have_95_percent_intervals_that_hold_the_value(released):
    metrics, _ = evaluation(released)
    shown = {r[0]: r for r in table(section(version(released).description, "Evaluation"),
                                    "95% interval")}
    for key, method in (("accuracy", "Wilson"), ("macro_f1", "bootstrap")):
        _, value, interval = shown[card.HUB_METRICS[key][1]]
        low, high = (float(x) for x in re.findall(r"\d\.\d+", interval))
        assert float(value) == pytest.approx(metrics[key], abs=1e-4)
        assert low <= metrics[key] <= high and method in interval


def test_the_experiment_text_appears_and_its_absence_is_said_plainly(released):
    given, plain = version(released).description, version(released, "-plain").description
    assert section(given, "Intended use").strip() == INTENDED
    assert "The experiment gives none" in section(given, "Limitations")
    for title, key in (("Intended use", "intended_use"), ("Limitations", "limitations")):
        assert "The experiment gives none" in section(plain, title)
        assert f"`model_card.{key}` in conf/experiment/intent.yaml" in section(plain, title)
    assert INTENDED not in plain


def test_the_data_training_and_gate_sections_come_from_the_record(released):
    text = version(released).description
    run_id = json.loads((released.root / "outputs/intent/train/run.json").read_text())["run_id"]
    path = json.loads((released.root / "outputs/intent/snapshot.json").read_text())["path"]
    stats = json.loads((Path(path) / "manifest.json").read_text())["stats"]
    data = section(text, "Data")
    assert str(released.root / "sources" / "toy.csv") in data
    assert table(data, "Label distribution") == [
        [label, *(str(stats[s]["label_counts"].get(label, 0)) for s in ("train", "val", "test"))]
        for label in sorted(stats["train"]["label_counts"],
                            key=lambda x: -stats["train"]["label_counts"][x])]
    training = section(text, "Training")
    assert run_id in training and "| learning rate | `0.001` |" in training
    cost = [k.removeprefix("cost.") for k in mlflow.MlflowClient().get_run(run_id).data.metrics
            if k.startswith("cost.")]
    line = training.split("Cost: ")[1].splitlines()[0].rstrip(".")
    assert cost and sorted(part.split(" ")[0] for part in line.split(", ")) == sorted(cost)
    gate = section(text, "Gate")
    assert "**champion**: no champion yet" in gate
    assert table(gate, "Champion history")[0][1:] == ["1", "—", "no champion yet"]
    assert "## Attestation" not in text  # no dlforge.verify.* tag yet


def test_model_card_md_is_a_version_artifact_outside_the_package_with_its_digest(released,
                                                                               tmp_path):
    from dlforge.registry.fetch import fetch_package

    client = mlflow.MlflowClient()
    uri = f"models:/{released.model_name}/1"
    names = [a.path for a in mlflow.artifacts.list_artifacts(artifact_uri=uri)]
    assert card.CARD_FILE in names
    text = mlflow.artifacts.load_text(f"{uri}/{card.CARD_FILE}")
    assert hashlib.sha256(text.encode()).hexdigest() == version(released).tags[card.CARD_TAG]
    assert text == version(released).description  # a short card is the description whole
    folder, _, _ = fetch_package(client, uri, tmp_path)  # the package still matches its digest
    assert not list(folder.rglob(card.CARD_FILE))


def test_registering_the_same_package_again_changes_nothing(released):
    client = mlflow.MlflowClient()
    uri = f"models:/{released.model_name}/1"

    def state():
        v = version(released)
        return (v.description, v.tags, mlflow.artifacts.load_text(f"{uri}/{card.CARD_FILE}"),
                len(client.search_model_versions(f"name = '{released.model_name}'")))

    before = state()
    again = released.run("register", "model_card.intended_use='other text'")
    assert again["version"] == "1" and state() == before


def test_render_shows_oos_recall_cost_attestation_and_a_refused_candidate(released):
    record = card.gather(mlflow.MlflowClient(), released.model_name, "1")
    record = copy.deepcopy(record)
    tags, metrics = record["model"]["tags"], record["evaluation"]["metrics"]
    support = {r["label"]: r["support"] for r in record["evaluation"]["per_class"]}
    metrics["oos_recall"] = 0.5
    tags |= {card.OOS_TAG: "weather", card.VERDICT_TAG: "candidate",
             card.REASON_TAG: "accuracy=0.3 does not beat champion v1's 0.9 by more than 0.0",
             "dlforge.verify.result": "identical"}
    record["run"]["cost"] = {"wall_seconds": 90.0, "gpu_peak_memory_bytes": 2.0**30}
    text = card.render(record)
    assert "Out-of-scope label `weather`: recall 0.5000" in text
    low, high = card.scores.wilson_interval(round(0.5 * support["weather"]), support["weather"])
    assert f"| Out-of-scope recall | 0.5000 | {low:.4f} – {high:.4f} (Wilson) |" in text
    assert "Cost: gpu_peak_memory_bytes 1024.0 MiB, wall_seconds 90.0 s." in text
    record["run"]["cost"] = {}  # a run that records no cost
    assert "Cost:" not in card.render(record)
    assert "**not promoted** (it stays `candidate`): accuracy=0.3 does not beat" in text
    assert table(section(text, "Attestation"), "check") == [["result", "identical"]]


def test_many_labels_show_the_largest_and_a_long_card_keeps_whole_sections(released):
    record = copy.deepcopy(card.gather(mlflow.MlflowClient(), released.model_name, "1"))
    labels = [f"intent_{i:03d}" for i in range(150)]
    record["snapshot"] |= {"labels": labels, "label_count": 150,
                           "label_counts": {"train": {x: i for i, x in enumerate(labels)}}}
    text = card.render(record)
    shown = table(section(text, "Data"), "Label distribution")
    assert "the 10 largest of 150" in text
    assert [r[0] for r in shown] == labels[::-1][:card.SHOWN_LABELS]
    cut = card.fit(text, 2500)
    assert len(cut) <= 2500 and cut.startswith(text.split("\n## ", 1)[0])
    left = re.search(r"Sections left out here for length: (.*); see MODEL_CARD.md", cut)[1]
    kept = re.findall(r"^## (.*)$", cut, re.M)
    assert set(kept) | set(left.split(", ")) == set(re.findall(r"^## (.*)$", text, re.M))
    assert all(f"## {title}\n{section(text, title)}" in cut for title in kept)
    assert card.fit(text, len(text)) == text


def test_an_unknown_model_card_key_names_the_nearest_one(released):
    with pytest.raises(DlforgeError, match=r"model_card.intended_usage in conf/experiment/"
                                           r"intent.yaml .*did you mean model_card.intended_use"):
        released.run("register", "+model_card.intended_usage=x")
