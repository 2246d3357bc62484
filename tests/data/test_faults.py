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
from tests.helpers import kill_after


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


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def kill_when(process: subprocess.Popen, seen, seconds: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``seen()`` is true (polled every millisecond, for
    at most ``seconds``), unless it ended first; and reap it."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if seen():
                break
        except FileNotFoundError:  # a folder moved while it was listed
            pass
        time.sleep(0.001)
    kill_after(process, 0)


def check_whole(store: Store, snapshots: SnapshotStore) -> None:
    """Every visible commit is whole, ids have no gap, and nothing is left staged."""
    commits = store.commits("d")
    assert [c.id for c in commits] == list(range(1, len(commits) + 1))
    for commit in commits:
        assert store.read_table(commit).num_rows == commit.rows
    report = verify(snapshots)
    assert report["ok"], report["problems"]
    staging = store.root / ".tmp"
    assert not (staging.exists() and any(staging.iterdir()))


class Stopped(BaseException):
    """A process stopped dead where it stood (what SIGKILL does), raised in-process."""


def test_a_commit_stopped_as_its_data_lands_leaves_no_commit_naming_it(store, tmp_path,
                                                                       monkeypatch):
    """The order of a commit's writes, where no timing can hide it: stopped at its first
    object, a commit has published no record naming data that is not stored; the same
    command then commits."""
    from dlforge.data import store as store_module

    store.create("d", "text_intent", big_csv(tmp_path / "seed.csv", 10, "seed"))
    source = big_csv(tmp_path / "new.csv", 100, "new")

    def stopped(*_):
        raise Stopped

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "publish", stopped)
        with pytest.raises(Stopped):
            store.commit("d", source)
    assert [c.id for c in store.commits("d")] == [1]
    check_whole(store, SnapshotStore(tmp_path / "snapshots", store))
    assert store.commit("d", source).id == 2


@pytest.mark.slow
def test_sigkill_mid_commit_leaves_no_partial_commit(store, tmp_path):
    store.create("d", "text_intent", big_csv(tmp_path / "seed.csv", 10, "seed"))
    source = big_csv(tmp_path / "big.csv", 200_000, "big")
    snapshots = SnapshotStore(tmp_path / "snapshots", store)
    objects, records = store.path("d") / "objects", store.path("d") / "commits"
    started = time.monotonic()
    assert start_commit(store, source).wait() == 0
    duration = time.monotonic() - started
    # Kill while importing, then while staging: at moments of a commit's time.
    for fraction in (0.1, 0.45):
        kill_after(start_commit(store, source), fraction * duration)
        check_whole(store, snapshots)
    # Kill while publishing: as an object lands, and as the commit record lands (the
    # objects it names must be there before it). New content, so that its objects are new.
    for folder in (objects, records):
        fresh = big_csv(tmp_path / f"{folder.name}.csv", 200_000, folder.name)
        before = files_under(folder)
        kill_when(start_commit(store, fresh), lambda f=folder, b=before: files_under(f) - b)
        check_whole(store, snapshots)
    # The next command works and sees a consistent store.
    after = store.commit("d", big_csv(tmp_path / "after.csv", 5, "after"))
    assert after.id == len(store.commits("d"))
    assert snapshots.build("d").manifest["counts"]["input_rows"] == sum(
        c.rows for c in current(store.commits("d")))  # a source's latest commit replaces its others
