"""The dataset type registry: looking types up, and plugging in a new one.

The ``sentiment`` type below is what a user would write: a CSV ``text,score``
(with header, score 1..5) read with pyarrow, checked with its own pandera schema,
and turned into a polarity label. It is registered for one test at a time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import dlforge.data.types as types
from dlforge.core.errors import InvalidInput, NotFound
from dlforge.core.hashing import sha256_file
from dlforge.data import DatasetType, SnapshotStore, Store, get_type, register
from dlforge.data.digest import table_digest
from dlforge.data.stats import Statistics
from dlforge.data.types.image_class import ImageClass
from dlforge.data.types.text_intent import TextIntent
from dlforge.data.validation import check_source_file, validate
from tests.helpers import tree_digest


class Sentiment(DatasetType):
    """CSV with header ``text,score``; score 1..5 becomes negative/neutral/positive."""

    name = "sentiment"
    description = "CSV with header: text,score (1..5)"
    content_columns = ("text", "score", "labels")

    def schema(self):
        import pandera.pandas as pda

        return pda.DataFrameSchema(
            {
                "text": pda.Column(str, pda.Check.str_length(min_value=1)),
                "score": pda.Column("int64", pda.Check.in_range(1, 5)),
                "labels": pda.Column(str, pda.Check.isin(["negative", "neutral", "positive"])),
            },
            strict=True, ordered=True, name=self.name,
        )

    def features(self):
        return {"chars": lambda t: pc.utf8_length(t.column("text"))}

    def example_keys(self, table: pa.Table) -> pa.Array:
        return table.column("text").combine_chunks()

    def stage(self, source: Path, staging: Path):
        check_source_file(source, expect="a CSV file text,score")
        raw = pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(
            column_types={"text": pa.string(), "score": pa.int64()}))
        scores = raw.column("score").to_pylist()
        polarity = ["negative" if s <= 2 else "neutral" if s == 3 else "positive" for s in scores]
        table = pa.table({"text": pc.utf8_trim_whitespace(raw.column("text")),
                          "score": raw.column("score"),
                          "labels": pa.array(polarity, pa.string())})
        validate(self.schema(), table, source, 2, {"score": "give a score from 1 to 5"})
        out = staging / "table.parquet"
        pq.write_table(table, out)
        stats = Statistics(self.features())
        stats.update(table.set_column(2, "labels", self.label_lists(table)))
        return types.Staged(table=out, digest=table_digest(table, self.content_columns),
                            rows=table.num_rows, stats=stats.result(),
                            source_digest=sha256_file(source))


@pytest.fixture
def sentiment(monkeypatch) -> type[Sentiment]:
    """``Sentiment`` registered with ``register``; the registry is restored afterwards."""
    monkeypatch.setattr(types, "_registered", dict(types._registered))
    register(Sentiment)
    return Sentiment


# -- lookup ------------------------------------------------------------------------


def test_builtin_types_are_found_by_name():
    assert isinstance(get_type("text_intent"), TextIntent)
    assert isinstance(get_type("image_class"), ImageClass)
    assert {"text_intent", "image_class"} <= set(types.type_names())


def test_unknown_type_is_not_found_and_the_error_lists_the_known_types():
    with pytest.raises(NotFound) as info:
        get_type("nosuchtype")
    message = str(info.value)
    assert "nosuchtype" in message
    assert "text_intent" in message and "image_class" in message
    assert "Fix:" in message


def test_create_with_unknown_type_leaves_the_store_unchanged(store, write_csv):
    store.create("intents", "text_intent", write_csv("a.csv", "hello there,greet\n"))
    before = tree_digest(store.root)
    with pytest.raises(NotFound, match="nosuchtype"):
        store.create("x", "nosuchtype", write_csv("b.csv", "bye now,farewell\n"))
    assert tree_digest(store.root) == before
    assert store.names() == ["intents"]


# -- a new type plugged in ---------------------------------------------------------------


def test_register_returns_the_class_so_it_works_as_a_decorator(monkeypatch):
    monkeypatch.setattr(types, "_registered", dict(types._registered))
    assert register(Sentiment) is Sentiment
    assert "sentiment" in types.type_names()
    assert isinstance(get_type("sentiment"), Sentiment)


def test_a_registered_type_works_end_to_end(sentiment, store, snapshots, write_csv):
    first = write_csv("a.csv", "text,score\ngreat product,5\nterrible,1\nit is fine,3\n"
                               "works as advertised,4\n")
    second = write_csv("b.csv", "text,score\nterrible,2\nwould buy again,5\n")

    created = store.create("reviews", "sentiment", first, "first batch")
    added = store.commit("reviews", second, "second batch")
    ref = snapshots.build("reviews")
    snap = snapshots.load("reviews", ref.version)

    assert (created.rows, added.rows) == (4, 2)
    assert created.stats["label_counts"] == {"negative": 1, "neutral": 1, "positive": 2}
    assert created.stats["chars"]["max"] == len("works as advertised")
    assert store.info("reviews")["type"] == "sentiment"
    assert ref.manifest["type"] == "sentiment"
    assert snap.labels == ["negative", "neutral", "positive"]
    assert snap.manifest["counts"]["duplicates_removed"] == 1
    rows = pd.concat([snap.train, snap.val, snap.test], ignore_index=True).set_index("text")
    assert sorted(rows.index) == sorted(["great product", "terrible", "it is fine",
                                         "works as advertised", "would buy again"])
    assert rows.loc["terrible", "score"] == 2  # the later commit wins
    assert rows.loc["terrible", "commit"] == 2
    for text, row in rows.iterrows():
        assert [snap.labels[i] for i in row["label_ids"]] == list(row["labels"]), text


def test_a_registered_type_rejects_bad_rows_with_its_own_schema(sentiment, store, write_csv):
    store.create("reviews", "sentiment", write_csv("a.csv", "text,score\ngood,5\n"))
    before = tree_digest(store.root)
    bad = write_csv("b.csv", "text,score\nfine,3\nout of range,9\n")

    with pytest.raises(InvalidInput) as info:
        store.commit("reviews", bad)

    assert (info.value.row, info.value.column) == (3, "score")
    assert str(bad) in str(info.value) and "score from 1 to 5" in str(info.value)
    assert tree_digest(store.root) == before


def test_registering_a_type_leaves_the_builtins_alone_and_is_undone(monkeypatch):
    builtin = dict(types._BUILTIN)
    with monkeypatch.context() as patch:
        patch.setattr(types, "_registered", dict(types._registered))
        register(Sentiment)
        assert isinstance(get_type("sentiment"), Sentiment)
        assert isinstance(get_type("text_intent"), TextIntent)
    assert builtin == types._BUILTIN
    assert "sentiment" not in types.type_names()
    with pytest.raises(NotFound):
        get_type("sentiment")


def test_a_dataset_of_an_unregistered_type_cannot_be_read(monkeypatch, tmp_path, write_csv):
    store = Store(tmp_path / "store")
    with monkeypatch.context() as patch:
        patch.setattr(types, "_registered", dict(types._registered))
        register(Sentiment)
        store.create("reviews", "sentiment", write_csv("a.csv", "text,score\ngood,5\n"))
    with pytest.raises(NotFound, match="sentiment"):
        SnapshotStore(tmp_path / "snapshots", store).build("reviews")


# -- CLI ---------------------------------------------------------------------------


def test_cli_create_with_unknown_type_fails_and_lists_the_valid_ones(cli, store, write_csv):
    store.create("intents", "text_intent", write_csv("a.csv", "hello there,greet\n"))
    before = tree_digest(store.root)

    result = cli("create", "x", "--type", "nosuchtype", "--source",
                 str(write_csv("f.csv", "bye now,farewell\n")))

    assert result.returncode != 0
    assert "nosuchtype" in result.stderr
    assert "text_intent" in result.stderr and "image_class" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(store.root) == before
