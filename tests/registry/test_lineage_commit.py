"""Every result carries its run record, and `dlforge lineage` resolves the training's commit
from it: the commit whose tree holds the trained code and config, or "uncommitted"."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import yaml

from dlforge.cli import main
from dlforge.core.config import ENV_CONFIG_DIR
from dlforge.core.record import code_digest, text_digest
from dlforge.core.tracking import Tag, connect
from dlforge.registry.lineage import lineage
from dlforge.stages.sections import section_text, section_values
from tests.helpers import ROOT, commit, git

SECTION = Path("outputs/intent/config/train.json")


def digest(path: str) -> str:
    return text_digest(Path(path).read_bytes())


def test_results_carry_their_record_and_lineage_names_the_commit_that_holds_them(
        project, monkeypatch, capsys):
    monkeypatch.chdir(project.root)
    monkeypatch.setenv(ENV_CONFIG_DIR, str(ROOT / "conf"))
    git("init", "-q")
    Path(".gitignore").write_text("/data/\n/.snakemake/\n/outputs/*/train/model/\n"
                                  "/outputs/*/train/checkpoints/\n/outputs/*/logs/\n")
    nets = Path("src/toyproj/nets.py")
    nets.parent.mkdir(parents=True)
    nets.write_text("WIDTH = 8\n")
    parent = commit("the project")
    nets.write_text("WIDTH = 16\n")  # trained on an edit the parent does not hold
    # What the workflow writes before training: the training's config section.
    SECTION.parent.mkdir(parents=True)
    one_epoch = "trainer.max_epochs=1"  # the record is under test, not the model
    SECTION.write_text(section_text(section_values(project.config("train", one_epoch),
                                                   "train")))
    project.release(one_epoch)
    evaluated = Path("outputs/intent/eval/metrics.json").read_bytes()
    project.run("evaluate")  # an unchanged input: the same bytes, record included
    assert Path("outputs/intent/eval/metrics.json").read_bytes() == evaluated

    made = json.loads(Path("outputs/intent/train/metrics.json").read_text())["record"]
    snapshot = json.loads(Path("outputs/intent/snapshot.json").read_text())["version"]
    assert made == {"config": digest(SECTION), "snapshot": snapshot, "code": code_digest(),
                    "dlforge": made["dlforge"],
                    "upstream": {"snapshot": digest("outputs/intent/snapshot.json")}}
    assert yaml.safe_load(Path("outputs/intent/train/config.yaml").read_text())["record"] == made
    trained = digest("outputs/intent/train/config.yaml")
    evaluation = json.loads(evaluated)["record"]
    assert evaluation["upstream"] == {"train": trained} and evaluation["snapshot"] == snapshot
    registered = json.loads(Path("outputs/intent/register.json").read_text())["record"]
    assert registered["upstream"] == {"evaluate": digest("outputs/intent/eval/metrics.json"),
                                      "train": trained}

    results = commit("run it")
    nets.write_text("WIDTH = 32\n")
    commit("wider, not run")  # later commits hold other code: still the one that ran
    connect(project.tracking_uri)
    client = mlflow.MlflowClient()
    uri = f"models:/{project.model_name}@champion"
    run = lineage(client, uri)["run"]
    assert run["commit"] == {"id": results, "status": "committed", "searched": 3,
                             "truncated": False}
    assert (run["git_commit"], run["git_dirty"]) == (parent, "true")
    capsys.readouterr()
    assert main(["lineage", uri, "--tracking-uri", project.tracking_uri]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"commit {results[:12]}" in text and parent[:12] not in text

    # Code that no commit holds: uncommitted, never the commit it was trained on.
    nets.write_text("WIDTH = 64\n")
    client.set_tag(run["run_id"], Tag.RECORD_CODE, code_digest())
    assert lineage(client, uri)["run"]["commit"]["status"] == "uncommitted"
    assert main(["lineage", uri, "--tracking-uri", project.tracking_uri]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "uncommitted (no commit among the 3 commits of HEAD holds the trained code and " \
           "config)" in text and parent[:12] not in text
