"""Sources: the digits image folder that `dlforge ingest` builds from scikit-learn, and
what a source means when its file changes (replace, append)."""

from __future__ import annotations

import json

import pytest

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.data import SnapshotStore, SplitRule, Store
from dlforge.data.snapshot import snapshot_version
from dlforge.data.sources import sklearn_digits
from dlforge.stages.data import ingest, snapshot
from tests.helpers import tree_digest


def test_digits_halves_are_disjoint_complete_and_the_same_bytes_every_time(tmp_path):
    first = tree_digest(sklearn_digits(tmp_path / "a", part=0, parts=2))
    again = tree_digest(sklearn_digits(tmp_path / "again", part=0, parts=2))
    second = tree_digest(sklearn_digits(tmp_path / "b", part=1, parts=2))
    images = [name for name in {**first, **second} if name.endswith(".png")]
    assert first == again
    assert len(images) == 1797 and not set(first) & {n for n in second if n.endswith(".png")}
    assert sorted(n for n in first if "/" not in n) == [str(d) for d in range(10)]
    assert not (tmp_path / ".tmp").exists()  # the staging folder is gone
    with pytest.raises(ValueError, match="part 2 must be in"):
        sklearn_digits(tmp_path / "c", part=2, parts=2)


def test_ingest_builds_the_digits_sources_once_and_commits_each_once(tmp_path):
    cfg = compose("ingest", ["experiment=digits", f"paths.root={tmp_path}"])
    summary = ingest(cfg)
    assert [s["commit"] for s in summary["sources"]] == [1, 2]
    assert sum(s["rows"] for s in summary["sources"]) == 1797
    assert ingest(cfg)["commits"] == [1, 2]  # built and committed already: nothing new


# -- a source means its current content --------------------------------------------


def rows(start: int, stop: int, label: str = "alpha") -> str:
    return "".join(f"utterance number {i},{label}\n" for i in range(start, stop))


@pytest.fixture
def declare(tmp_path):
    """``declare(source, ...)``: the intent experiment's config with these sources only
    (each a dict, or a path), its store and snapshots under tmp_path."""

    def make(*sources):
        cfg = compose("snapshot", ["experiment=intent", f"paths.root={tmp_path}"])
        cfg.dataset.sources = [s if isinstance(s, dict) else {"path": str(s)} for s in sources]
        return cfg

    return make


def test_a_source_cut_to_200_rows_gives_a_snapshot_of_those_200(declare, write_csv, tmp_path):
    source = write_csv("x.csv", rows(0, 300))
    cfg = declare(source)
    ingest(cfg)
    before = snapshot(cfg)
    source.write_text(rows(0, 200))

    ingest(cfg)
    after = snapshot(cfg)

    assert before["counts"]["input_rows"] == 300 and after["counts"]["input_rows"] == 200
    assert after["commits"] == [2]
    kept = open_snapshot(tmp_path, after["version"])
    held_out = {f"utterance number {i}" for i in range(200, 300)}
    assert len(kept) == 200 and not held_out & set(kept)


def test_the_history_keeps_both_commits_and_upto_gives_the_old_snapshot_again(
        declare, write_csv, tmp_path, capsys):
    source = write_csv("x.csv", rows(0, 300))
    cfg = declare(source)
    ingest(cfg)
    first = snapshot(cfg)
    source.write_text(rows(0, 200))
    ingest(cfg)
    snapshot(cfg)

    store = Store(tmp_path / "data" / "store")
    assert [(c.id, c.rows, c.supersedes) for c in store.commits("clinc150")] == [
        (1, 300, []), (2, 200, [1])]
    cfg.dataset.select.upto = 1
    again = snapshot(cfg)
    assert (again["version"], again["counts"]) == (first["version"], first["counts"])
    data_cli(tmp_path / "data" / "store", "show", "clinc150", "--json")
    shown = json.loads(capsys.readouterr().out)
    assert [(c["id"], c["supersedes"]) for c in shown["commits"]] == [(1, []), (2, [1])]


def test_a_source_set_back_gives_its_first_snapshot_again(declare, write_csv):
    source = write_csv("x.csv", rows(0, 300))
    cfg = declare(source)
    ingest(cfg)
    first = snapshot(cfg)
    source.write_text(rows(0, 200))
    ingest(cfg)
    source.write_text(rows(0, 300))

    summary = ingest(cfg)

    assert summary["sources"][0] == {**summary["sources"][0], "commit": 3, "supersedes": [2],
                                     "added": 100, "removed": 0}
    assert snapshot(cfg)["version"] == first["version"]  # the same commit digests
    assert ingest(cfg) == summary  # held as it is now: nothing new


def test_append_mode_keeps_the_earlier_rows(declare, write_csv):
    source = write_csv("x.csv", rows(0, 300))
    cfg = declare({"path": str(source), "mode": "append"})
    ingest(cfg)
    source.write_text(rows(300, 350))

    summary = ingest(cfg)

    assert summary["sources"][0]["supersedes"] == [] and summary["sources"][0]["added"] == 50
    assert snapshot(cfg)["counts"]["input_rows"] == 350


def test_two_sources_both_stay_when_one_changes(declare, write_csv):
    a, b = write_csv("a.csv", rows(0, 300)), write_csv("b.csv", rows(300, 400, "beta"))
    cfg = declare(a, b)
    ingest(cfg)
    a.write_text(rows(0, 200))

    summary = ingest(cfg)

    assert [(s["commit"], s["supersedes"]) for s in summary["sources"]] == [(3, [1]), (2, [])]
    after = snapshot(cfg)
    assert after["commits"] == [2, 3] and after["counts"]["input_rows"] == 300


@pytest.mark.parametrize("entry, words", [
    ({"mode": "merge"}, r"dataset.sources\[1\].mode='merge' is not a source mode"),
    ({"mdoe": "append"}, r"dataset.sources\[1\].mdoe is not a key .* rename it to mode"),
])
def test_an_invalid_source_entry_fails_naming_its_key_before_any_commit(
        declare, write_csv, tmp_path, entry, words):
    a, b = write_csv("a.csv", rows(0, 10)), write_csv("b.csv", rows(10, 20))
    cfg = declare(a, {"path": str(b), **entry})
    with pytest.raises(DlforgeError, match=words):
        ingest(cfg)
    assert not (tmp_path / "data" / "store").exists()


def test_a_store_written_before_supersession_selects_as_it_did(store, snapshots, write_csv):
    source = write_csv("x.csv", rows(0, 300))
    store.create("d", "text_intent", source)
    source.write_text(rows(0, 200))
    store.commit("d", source, mode="append")
    for record in (store.path("d") / "commits").glob("*.json"):  # as an older dlforge wrote
        fields = json.loads(record.read_text())
        del fields["supersedes"], fields["delta"]
        record.write_text(json.dumps(fields))
    commits = store.commits("d")
    version = snapshot_version("text_intent", commits, SplitRule())

    assert snapshots.build("d").version == version  # both commits, as before

    replaced, created = store.ingest("d", "text_intent", source)  # the file as it is now
    assert created and replaced.supersedes == [1, 2]
    assert snapshots.build("d").manifest["counts"]["input_rows"] == 200


def test_data_commit_replaces_a_source_path_unless_told_to_append(store, write_csv, capsys):
    source = write_csv("x.csv", rows(0, 300))
    store.create("d", "text_intent", source)
    source.write_text(rows(0, 250))
    data_cli(store.root, "commit", "d", "--source", str(source))
    replaced = json.loads(capsys.readouterr().out)
    source.write_text(rows(300, 310))
    data_cli(store.root, "commit", "d", "--source", str(source), "--mode", "append")
    appended = json.loads(capsys.readouterr().out)

    assert (replaced["supersedes"], replaced["delta"]) == ([1], {"added": 0, "removed": 50})
    assert (appended["supersedes"], appended["delta"]) == ([], {"added": 10, "removed": 0})
    with pytest.raises(DlforgeError, match="mode='merge' is not a source mode"):
        store.commit("d", source, mode="merge")


def data_cli(store_root, *args: str) -> None:
    """``dlforge data --store STORE_ROOT ... ARGS``, in this process."""
    from dlforge.cli.data import main

    assert main(["--store", str(store_root), "--snapshots",
                 str(store_root.parent / "snapshots"), *args]) == 0


def open_snapshot(tmp_path, version: str) -> list[str]:
    snapshots = SnapshotStore(tmp_path / "data" / "snapshots", Store(tmp_path / "data" / "store"))
    snap = snapshots.load("clinc150", version)
    return [u for split in ("train", "val", "test") for u in snap.split(split)["utterance"]]
