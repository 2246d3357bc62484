"""Commits: validation, immutability, content addressing, tags, header detection."""

from __future__ import annotations

import json
import re

import pytest

from dlforge.core.errors import DlforgeError, InvalidInput, NotFound
from dlforge.data import Store
from dlforge.data.store import parse_tags
from tests.helpers import tree_digest

CSV = "book a table for two,restaurant_reservation\nwhat's the weather,weather\n"


def objects(store: Store, name: str) -> list:
    return sorted(p for p in (store.path(name) / "objects").rglob("*") if p.is_file())


def test_create_then_commit_gives_sequential_immutable_commits(store, write_csv):
    first = store.create("intents", "text_intent", write_csv("a.csv", CSV), "first", {"part": "a"})
    second = store.commit("intents", write_csv("b.csv", "hello,greet\n"), "second", {"part": "b"})
    assert (first.id, second.id) == (1, 2)
    assert [c.id for c in store.commits("intents")] == [1, 2]
    record = store.commit_record("intents", 1)
    assert record.message == "first" and record.tags == {"part": "a"} and record.rows == 2
    assert record.created_at.endswith("+00:00")
    assert record.stats["label_counts"] == {"restaurant_reservation": 1, "weather": 1}
    assert store.info("intents")["type"] == "text_intent"


def test_identical_content_is_stored_once(store, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", CSV))
    before = objects(store, "d")
    # Same rows with different whitespace and multi-label order: same content.
    again = store.commit("d", write_csv("b.csv", CSV.replace(",", " , ")))
    assert again.digest == store.commit_record("d", 1).digest
    assert objects(store, "d") == before
    assert [c.id for c in store.commits("d")] == [1, 2]


def test_multi_label_is_normalised_and_counted(store, write_csv):
    commit = store.create("m", "text_intent", write_csv("m.csv", "hi there, greet ; smalltalk\n"
                                                                  "bye,smalltalk;greet\n"))
    table = store.read_table(commit)
    assert table.column("labels").to_pylist() == ["greet;smalltalk", "greet;smalltalk"]
    assert commit.stats["multi_label_rows"] == 2
    assert commit.stats["label_counts"] == {"greet": 2, "smalltalk": 2}


def test_header_row_is_detected_reported_and_not_stored(store, write_csv):
    commit = store.create("h", "text_intent", write_csv("h.csv", "utterance,labels\n" + CSV))
    assert commit.rows == 2
    assert "header" in commit.notes[0]
    assert "utterance" not in store.read_table(commit).column("utterance").to_pylist()


def test_quoted_commas_and_utf8_bom_are_read(store, write_csv):
    content = '\ufeff"in french, how do i say hello",translate\n'
    commit = store.create("q", "text_intent", write_csv("q.csv", content))
    assert store.read_table(commit).column("utterance").to_pylist() == [
        "in french, how do i say hello"]


@pytest.mark.parametrize(
    ("content", "row", "words"),
    [
        ("ok,a\nonly one column\n", 2, "1 column(s) where 2 are expected"),
        ("ok,a\ntoo,many,columns\n", 2, "3 column(s)"),
        ("ok,a\n   ,b\n", 2, "empty utterance"),
        ("ok,a\nfine,\n", 2, "empty label"),
        ("ok,a\n\nfine,a;;b\n", 3, "empty label in 'a;;b'"),
        (b"ok,a\ncaf\xe9,b\n", 2, "not valid UTF-8"),
    ],
)
def test_bad_rows_are_rejected_with_file_row_and_fix(store, write_csv, content, row, words):
    store.create("d", "text_intent", write_csv("good.csv", CSV))
    before = tree_digest(store.root)
    source = write_csv("bad.csv", content)
    with pytest.raises(InvalidInput) as caught:
        store.commit("d", source)
    message = str(caught.value)
    assert str(source) in message and f"row {row}" in message and words in message
    assert "Fix:" in message
    assert tree_digest(store.root) == before


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "empty"), ("utterance,labels\n", "no data rows"),
     ("hi\x00\x00,a\n".encode("utf-16"), "UTF-16")],
)
def test_empty_or_binary_files_are_rejected(store, write_csv, content, words):
    with pytest.raises(InvalidInput, match=words):
        store.create("d", "text_intent", write_csv("x.csv", content))
    assert tree_digest(store.root) == {}


def test_missing_source_is_an_error_and_creates_nothing(store, tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        store.create("d", "text_intent", tmp_path / "nope.csv")
    assert not store.root.exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "x" * 101, "x\n",
                                  "clinc150\n"])
def test_names_that_escape_the_store_are_refused(store, write_csv, name):
    with pytest.raises(DlforgeError, match="invalid dataset name"):
        store.create(name, "text_intent", write_csv("a.csv", CSV))
    assert not store.root.exists()


def test_unknown_dataset_and_commit_name_what_exists(store, write_csv):
    store.create("known", "text_intent", write_csv("a.csv", CSV))
    with pytest.raises(NotFound, match="datasets: known"):
        store.commit("unknown", write_csv("b.csv", CSV))
    with pytest.raises(NotFound, match=r"no commit 7 \(commits: 1\.\.1\)"):
        store.commit_record("known", 7)


def test_creating_an_existing_dataset_is_refused(store, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", CSV))
    with pytest.raises(DlforgeError, match="already exists"):
        store.create("d", "text_intent", write_csv("a.csv", CSV))


def test_ingest_commits_a_source_only_once(store, write_csv):
    source = write_csv("a.csv", CSV)
    first, created = store.ingest("d", "text_intent", source, "m")
    again, created_again = store.ingest("d", "text_intent", source, "m")
    assert created and not created_again and again.id == first.id
    assert len(store.commits("d")) == 1


def test_commit_records_are_plain_json(store, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", CSV), "msg", {"k": "v"})
    record = json.loads((store.path("d") / "commits" / "000001.json").read_text())
    assert record["message"] == "msg" and record["tags"] == {"k": "v"}
    assert record["source"]["digest"] and record["digest"]


def test_parse_tags():
    assert parse_tags(["a=1", "b = two"]) == {"a": "1", "b": "two"}
    with pytest.raises(DlforgeError, match="not key=value"):
        parse_tags(["novalue"])


@pytest.mark.parametrize(("bad", "words"), [("x,y,z", "3 column(s)"), (" ,y", "empty utterance")])
def test_rows_are_numbered_across_read_chunks(store, write_csv, monkeypatch, bad, words):
    from dlforge.data.types.text_intent import TextIntent

    monkeypatch.setattr(TextIntent, "chunk_size", 64)  # many chunks for a small file
    body = "".join(f"utterance {i},label{i % 3}\n" for i in range(40))
    with pytest.raises(InvalidInput, match=f"row 42.*{re.escape(words)}"):  # line 41 is blank
        store.create("d", "text_intent", write_csv("a.csv", body + "\n" + bad + "\n"))
    chunked = store.create("d", "text_intent", write_csv("b.csv", body))
    monkeypatch.undo()
    whole = store.create("e", "text_intent", write_csv("c.csv", body))
    assert chunked.rows == 40 and chunked.digest == whole.digest
