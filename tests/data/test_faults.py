"""Faults: concurrent writers, and writers killed with SIGKILL mid-commit."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlforge.data import SnapshotStore, Store
from dlforge.data.supersede import current
from dlforge.data.verify import verify
from tests.conftest import kill_after


def big_csv(path: Path, rows: int, label: str) -> Path:
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(f"{label} utterance {i} with some more words,{label}\n")
    return path


def _commit(args: tuple[str, str]) -> int:
    root, source = args
    return Store(root).commit("d", source, message=Path(source).name).id


@pytest.mark.slow
def test_concurrent_commits_all_land_with_sequential_ids(store, tmp_path):
    store.create("d", "text_intent", big_csv(tmp_path / "seed.csv", 10, "seed"))
    sources = [str(big_csv(tmp_path / f"s{i}.csv", 20_000, f"label{i}")) for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_commit, [(str(store.root), s) for s in sources])
    assert sorted(ids) == [2, 3, 4, 5]
    commits = store.commits("d")
    assert [c.id for c in commits] == [1, 2, 3, 4, 5]
    assert sorted(c.source["path"] for c in commits[1:]) == sorted(sources)
    assert sum(c.rows for c in commits) == 10 + 4 * 20_000
    assert verify(SnapshotStore(tmp_path / "snapshots", store))["ok"]


def start_commit(store: Store, source: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dlforge", "data", "--store", str(store.root),
         "--snapshots", str(store.root.parent / "snapshots"),
         "commit", "d", "--source", str(source)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_sigkill_mid_commit_leaves_no_partial_commit(store, tmp_path):
    store.create("d", "text_intent", big_csv(tmp_path / "seed.csv", 10, "seed"))
    source = big_csv(tmp_path / "big.csv", 300_000, "big")
    snapshots = SnapshotStore(tmp_path / "snapshots", store)
    staging = store.root / ".tmp"
    started = time.monotonic()
    assert start_commit(store, source).wait() == 0
    duration = time.monotonic() - started
    # Kill at several moments of a commit: importing, staging, publishing.
    for fraction in (0.2, 0.4, 0.6, 0.75, 0.85, 0.95):
        kill_after(start_commit(store, source), fraction * duration)
        commits = store.commits("d")
        assert [c.id for c in commits] == list(range(1, len(commits) + 1))
        for commit in commits:  # every visible commit is whole
            assert store.read_table(commit).num_rows == commit.rows
        report = verify(snapshots)
        assert report["ok"], report["problems"]
        assert not (staging.exists() and any(staging.iterdir()))
    # The next command works and sees a consistent store.
    after = store.commit("d", big_csv(tmp_path / "after.csv", 5, "after"))
    assert after.id == len(store.commits("d"))
    assert snapshots.build("d").manifest["counts"]["input_rows"] == sum(
        c.rows for c in current(store.commits("d")))  # big.csv's latest commit replaces the rest
