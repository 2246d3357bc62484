"""The ingest and snapshot stages, called as plain functions of a composed config."""

from __future__ import annotations

import json

import pytest

from dlforge.core.config import compose
from dlforge.data import SnapshotStore, Store
from dlforge.stages.data import ingest, snapshot
from tests.conftest import ROOT


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
    store = Store(tmp_path / "data" / "store")
    # `dlforge data snapshot clinc150` with the default split gives the same version.
    assert SnapshotStore(tmp_path / "data" / "snapshots", store).build("clinc150").version == (
        summary["version"])


def test_snapshot_stage_honours_the_selection(cfg, tmp_path):
    ingest(cfg)
    cfg.dataset.select.tags = {"part": "a"}
    assert snapshot(cfg)["commits"] == [1]
