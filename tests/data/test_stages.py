"""The ingest and snapshot stages, called as plain functions of a composed config."""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from dlforge.core.config import compose
from dlforge.data import SnapshotStore, Store
from dlforge.stages.data import ingest, snapshot
from dlforge.stages.review import review, to_markdown
from tests.helpers import ROOT

SAMPLE_VERSION = "6e4595793d5e"


@pytest.fixture
def cfg(tmp_path):
    return compose("snapshot", ["experiment=intent", f"paths.root={tmp_path}",
                                f"paths.raw_dir={ROOT / 'data' / 'raw'}"])


def test_ingest_commits_each_source_once_and_is_idempotent(cfg, tmp_path):
    first = ingest(cfg)
    written = (tmp_path / "outputs" / "intent" / "ingest.json").read_bytes()
    second = ingest(cfg)
    assert first == second and [s["commit"] for s in first["sources"]] == [1, 2]
    assert (tmp_path / "outputs" / "intent" / "ingest.json").read_bytes() == written
    commits = Store(tmp_path / "data" / "store").commits("clinc150")
    assert [(c.id, c.tags["part"], c.rows) for c in commits] == [(1, "a", 7600), (2, "b", 3100)]


def test_snapshot_stage_matches_the_data_command(cfg, tmp_path):
    ingest(cfg)
    summary = snapshot(cfg)
    assert json.loads((tmp_path / "outputs" / "intent" / "snapshot.json").read_text()) == summary
    assert summary["commits"] == [1, 2] and summary["labels"] == 151
    assert summary["version"] == SAMPLE_VERSION  # each part is a source of its own: both stay
    store = Store(tmp_path / "data" / "store")
    # `dlforge data snapshot clinc150` with the default split gives the same version.
    assert SnapshotStore(tmp_path / "data" / "snapshots", store).build("clinc150").version == (
        summary["version"])


def test_snapshot_stage_honours_the_selection(cfg, tmp_path):
    ingest(cfg)
    cfg.dataset.select.tags = {"part": "a"}
    assert snapshot(cfg)["commits"] == [1]


def utterances(start: int, stop: int) -> str:
    return "".join(f"utterance number {i},alpha\n" for i in range(start, stop))


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   cwd=repo, check=True, capture_output=True)


def test_ingest_reports_the_examples_a_changed_source_adds_and_removes_and_review_shows_them(
        tmp_path, monkeypatch, caplog):
    repo = tmp_path / "proj"
    source = repo / "data" / "raw" / "x.csv"
    source.parent.mkdir(parents=True)
    source.write_text(utterances(0, 300))
    (repo / "workflow").mkdir()
    (repo / "workflow" / "config.yaml").write_text("experiments: [intent]\n")
    cfg = compose("snapshot", ["experiment=intent", f"paths.root={repo}"])
    cfg.dataset.sources = [{"path": str(source), "message": "x"}]
    ingest(cfg)
    snapshot(cfg)
    git(repo, "init", "-q")
    git(repo, "add", "outputs", "workflow")
    git(repo, "commit", "-qm", "base")
    source.write_text(utterances(100, 320))  # 100 rows deleted, 20 added

    with caplog.at_level(logging.INFO, logger="dlforge.stages.data"):
        summary = ingest(cfg)
    snapshot(cfg)

    assert summary["sources"] == [{"path": str(source), "commit": 2, "rows": 220,
                                   "digest": summary["sources"][0]["digest"],
                                   "supersedes": [1], "added": 20, "removed": 100}]
    assert json.loads((repo / "outputs" / "intent" / "ingest.json").read_text()) == summary
    assert (f"{source}: 220 rows, commit 2 supersedes commit 1 (300 rows): +20 -100 examples "
            "<dataset.sources[0]>") in caplog.messages
    monkeypatch.chdir(repo)
    report = review("HEAD")
    data = report["experiments"]["intent"]["data"]
    assert data["sources"] == [{"path": str(source), "commit": 2, "supersedes": [1],
                                "added": 20, "removed": 100}]
    assert f"- `{source}`: commit 2 supersedes 1: +20 -100 examples" in to_markdown(report)
