"""Snapshots: selection, content-hash versions, de-duplication, stable splits, loading."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.data import SplitRule
from dlforge.data.build import SPLITS
from tests.helpers import SAMPLE


def lines(n: int, label: str, start: int = 0) -> str:
    return "".join(f"utterance number {i},{label}\n" for i in range(start, start + n))


@pytest.fixture
def two_commits(store, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", lines(200, "alpha")), "a", {"part": "a"})
    store.commit("d", write_csv("b.csv", lines(200, "beta", start=200)), "b",
                 {"part": "b", "lang": "en"})
    return store


def splits_of(snapshot) -> dict[str, str]:
    return {row: name for name in ("train", "val", "test")
            for row in snapshot.split(name)["utterance"]}


def test_same_selection_gives_the_same_version_and_is_reused(two_commits, snapshots):
    first = snapshots.build("d")
    manifest_bytes = (first.path / "manifest.json").read_bytes()
    again = snapshots.build("d")
    assert (again.version, again.reused, first.reused) == (first.version, True, False)
    assert (again.path / "manifest.json").read_bytes() == manifest_bytes
    assert snapshots.build("d", upto=2).version == first.version


def test_selection_by_upto_and_tags(two_commits, snapshots):
    only_a = snapshots.build("d", upto=1)
    assert [c["id"] for c in only_a.manifest["commits"]] == [1]
    assert snapshots.build("d", tags={"part": "a"}).version == only_a.version
    both_tags = snapshots.build("d", tags={"part": "b", "lang": "en"})
    assert [c["id"] for c in both_tags.manifest["commits"]] == [2]
    assert only_a.manifest["labels"] == ["alpha"]


def test_empty_selection_is_an_error(two_commits, snapshots):
    with pytest.raises(NotFound, match="no commit of dataset 'd' matches"):
        snapshots.build("d", tags={"part": "a", "lang": "en"})  # all tags must match
    with pytest.raises(NotFound, match="no commit 9"):
        snapshots.build("d", upto=9)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        snapshots.build("nope")


def test_examples_keep_their_split_when_commits_are_added(two_commits, snapshots):
    small = snapshots.load("d", snapshots.build("d", upto=1).version)
    large = snapshots.load("d", snapshots.build("d").version)
    before, after = splits_of(small), splits_of(large)
    assert before and all(after[u] == split for u, split in before.items())


def test_split_fractions_follow_the_rule(snapshots, store):
    store.create("clinc", "text_intent", SAMPLE / "part-a.csv")
    counts = snapshots.build("clinc").manifest["counts"]
    total = counts["train"] + counts["val"] + counts["test"]
    assert total == 7600 - counts["duplicates_removed"]
    assert counts["train"] / total == pytest.approx(0.8, abs=0.02)
    assert counts["val"] / total == pytest.approx(0.1, abs=0.02)


def test_duplicates_are_removed_and_the_latest_label_wins(store, snapshots, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", "hello,greet\nbye,farewell\nhello,greet\n"))
    store.commit("d", write_csv("b.csv", "bye,goodbye\n"))
    snap = snapshots.load("d", snapshots.build("d").version)
    rows = {u: list(labels) for name in ("train", "val", "test")
            for u, labels in zip(snap.split(name)["utterance"], snap.split(name)["labels"],
                                 strict=True)}
    assert rows == {"hello": ["greet"], "bye": ["goodbye"]}
    counts = snap.manifest["counts"]
    assert (counts["duplicates_removed"], counts["label_conflicts"]) == (2, 1)


def test_label_vocabularies_merge_into_one_numbering(store, snapshots, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", lines(30, "zeta") + "x y,alpha;zeta\n"))
    store.commit("d", write_csv("b.csv", lines(30, "beta", start=30)))
    snap = snapshots.load("d", snapshots.build("d").version)
    assert snap.labels == ["alpha", "beta", "zeta"]
    assert snap.manifest["multi_label"] is True
    for name in ("train", "val", "test"):
        frame = snap.split(name)
        for labels, ids in zip(frame["labels"], frame["label_ids"], strict=True):
            assert [snap.labels[i] for i in ids] == list(labels)


def test_split_rule_is_part_of_the_version(two_commits, snapshots):
    default = snapshots.build("d").version
    other = snapshots.build("d", split=SplitRule(0.7, 0.2, 0.1, "dlforge")).version
    salted = snapshots.build("d", split=SplitRule(salt="other")).version
    assert len({default, other, salted}) == 3


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.2), (1.2, -0.1, -0.1)])
def test_invalid_split_rule_is_refused(fractions):
    with pytest.raises(DlforgeError, match="split"):
        SplitRule(*fractions)


def test_loaded_snapshot_has_typed_columns(two_commits, snapshots):
    snapshots.build("d", upto=1)
    latest = snapshots.build("d").version
    snap = snapshots.load("d")  # the latest built
    assert snap.version == latest
    assert list(snap.train.columns) == ["example_id", "utterance", "commit", "labels", "label_ids"]
    assert snap.train["example_id"].is_unique


def test_unknown_version_names_the_known_ones(two_commits, snapshots):
    version = snapshots.build("d").version
    with pytest.raises(NotFound, match=f"versions: {version}"):
        snapshots.load("d", "0000deadbeef")


def test_fetch_copies_files_and_detects_tampering(two_commits, snapshots, tmp_path):
    ref = snapshots.build("d")
    files = snapshots.fetch("d", ref.version, tmp_path / "out")
    assert sorted(p.name for p in files) == ["manifest.json", "test.parquet", "train.parquet",
                                             "val.parquet"]
    (ref.path / "val.parquet").write_bytes(b"tampered")
    with pytest.raises(DlforgeError, match="does not match its manifest"):
        snapshots.fetch("d", ref.version, tmp_path / "again")


# -- snapshot files are checked against their manifest hashes --------------------------


def relabel(path) -> None:
    """Rewrite a split as a valid parquet file whose rows all carry the first row's label."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for column in ("labels", "label_ids"):
        first = table.column(column)[0].as_py()
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pa.array([first] * table.num_rows,
                                                         table.schema.field(column).type))
    pq.write_table(table, path)


def test_a_split_with_replaced_labels_is_refused_when_opened(two_commits, snapshots):
    from dlforge.data.build import read_split

    ref = snapshots.build("d")
    relabel(ref.path / "train.parquet")
    for load in (lambda: snapshots.load("d", ref.version).split("train"),
                 lambda: read_split(ref.path / "train.parquet")):  # what training/evaluation read
        with pytest.raises(DlforgeError) as info:
            load()
        message = str(info.value)
        assert str(ref.path / "train.parquet") in message
        assert "does not match its manifest hash" in message
        assert "Fix: build it again with `dlforge data snapshot d`" in message


def test_an_unchanged_split_is_hashed_once_per_process(two_commits, snapshots, monkeypatch):
    import dlforge.core.hashing as hashing

    ref = snapshots.build("d")
    hashed = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    read_all = lambda: [snapshots.load("d", ref.version).split(s) for s in SPLITS]  # noqa: E731
    read_all()
    assert sorted(hashed) == ["test.parquet", "train.parquet", "val.parquet"]
    read_all()
    read_all()
    assert len(hashed) == 3  # the second and third opens only stat the files
    relabel(ref.path / "val.parquet")  # a changed file is hashed again, and refused
    with pytest.raises(DlforgeError, match="val.parquet is missing or does not match"):
        read_all()
    assert hashed[3:] == ["val.parquet"]


@pytest.mark.parametrize("damage", ["relabel", "truncate", "delete"])
def test_snapshot_rebuilds_a_corrupt_snapshot_in_place(two_commits, snapshots, damage):
    ref = snapshots.build("d")
    original = {p.name: p.read_bytes() for p in ref.path.iterdir()}
    target = ref.path / "val.parquet"
    {"relabel": relabel, "truncate": lambda p: p.write_bytes(p.read_bytes()[:100]),
     "delete": lambda p: p.unlink()}[damage](target)

    again = snapshots.build("d")

    assert (again.version, again.path, again.reused) == (ref.version, ref.path, False)
    assert again.manifest["created_at"] == ref.manifest["created_at"]  # still the same version
    assert snapshots.load("d").version == ref.version
    assert sorted(p.name for p in ref.path.iterdir()) == sorted(original)
    assert target.read_bytes() == original["val.parquet"]
    assert snapshots.build("d").reused
    assert not (snapshots.root / ".tmp").exists()  # the corrupt copy is gone


def test_a_corrupt_snapshot_over_a_damaged_store_is_refused(two_commits, snapshots):
    ref = snapshots.build("d")
    relabel(ref.path / "test.parquet")
    commit = two_commits.commits("d")[0]
    table = two_commits.object_path("d", commit.digest, ".parquet")
    table.write_bytes(table.read_bytes()[:-50])
    with pytest.raises(DlforgeError) as info:
        snapshots.build("d")
    message = str(info.value)
    assert str(ref.path) in message and "cannot be rebuilt" in message
    assert str(table) in message and "Fix: restore the store" in message


def test_cli_snapshot_does_not_reuse_a_corrupt_snapshot(cli, two_commits, snapshots):
    ref = snapshots.build("d")
    relabel(ref.path / "train.parquet")

    result = cli("snapshot", "d", check=True)

    assert result.stdout.strip() == ref.version
    assert "corrupt, rebuilding it" in result.stderr and "reused" not in result.stderr
    assert snapshots.load("d").version == ref.version
