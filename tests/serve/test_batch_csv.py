"""Batch prediction reads a file of texts whole: a CSV as ingest reads it (line 1 is a
header only by ingest's rule, or as ``--header``/``--no-header`` say), and JSON-lines,
text and parquet files; one prediction per input, and the summary counts them."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dlforge.cli import main
from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package, save_package
from dlforge.models.preprocessing import TextEncoder
from dlforge.models.text import EmbeddingBagClassifier
from dlforge.serve.batch import predict_file

ROWS = ["play a song,music", "book a table,restaurant", "play music,music"]
TEXTS = [row.split(",")[0] for row in ROWS]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A text model package folder (untrained weights: only the rows matter here)."""
    torch.manual_seed(0)
    encoder = TextEncoder().fit(TEXTS)
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 8,
                 "hidden_dim": 8}
    net = EmbeddingBagClassifier(**arguments)
    return save_package(tmp_path_factory.mktemp("batch") / "model", net.state_dict(),
                        EmbeddingBagClassifier, arguments, encoder, ["music", "restaurant"],
                        False, {"run_id": "r1"})


@pytest.fixture
def predict(package, tmp_path, monkeypatch, capsys):
    """``predict(content, *options)`` runs ``dlforge predict`` over a CSV holding
    ``content``; returns the predicted inputs, after checking the summary counts them."""
    monkeypatch.chdir(tmp_path)

    def run(content: str, *options: str, name: str = "in.csv") -> list[str]:
        source, output = tmp_path / name, tmp_path / "out.parquet"
        source.write_text(content)
        assert main(["predict", str(package), "--input", str(source), "--output",
                     str(output), *options]) == 0
        summary = json.loads(capsys.readouterr().out)
        inputs = pq.read_table(output).column("input").to_pylist()
        assert summary["rows"] == len(inputs)
        return inputs

    return run


@pytest.mark.parametrize("rows", [ROWS, TEXTS], ids=["text-label", "text-only"])
def test_a_csv_without_header_gives_one_prediction_per_line(predict, rows):
    assert predict("\n".join(rows) + "\n") == TEXTS


@pytest.mark.parametrize(("header", "rows"), [("text,label", ROWS),
                                              ("Utterance , Intent", ROWS), ("text", TEXTS)])
def test_a_header_that_names_the_columns_is_not_predicted(predict, header, rows, caplog):
    with caplog.at_level(logging.INFO, logger="dlforge"):
        assert predict(f"{header}\n" + "\n".join(rows) + "\n") == TEXTS
    assert "line 1" in caplog.text and "--no-header" in caplog.text


def test_header_options_override_the_rule(predict):
    with_header = "text,label\n" + "\n".join(ROWS) + "\n"
    assert predict(with_header, "--no-header") == ["text", *TEXTS]
    assert predict("\n".join(ROWS) + "\n", "--header") == TEXTS[1:]


def test_a_column_named_in_line_1_makes_it_the_header(predict):
    content = "id,query\n" + "".join(f"{i},{text}\n" for i, text in enumerate(TEXTS))
    assert predict(content, "--column", "query") == TEXTS
    assert predict(content) == ["id", "0", "1", "2"]  # no names it knows: all data


def test_blank_lines_and_line_endings_lose_no_row(predict):
    assert predict("\r\n" + ROWS[0] + "\r\n\r\n" + ROWS[1] + "\r" + ROWS[2]) == TEXTS


def test_ingest_and_predict_read_line_1_alike(predict, store, write_csv):
    lines = [("text,label", True), ("QUERY,intents", True), ("play a song,label", False),
             ("text,music", False)]
    for number, (first, header) in enumerate(lines):
        content = f"{first}\n" + "\n".join(ROWS[1:]) + "\n"
        commit = store.create(f"d{number}", "text_intent", write_csv(f"d{number}.csv", content))
        assert commit.rows == 3 - header, first
        assert len(predict(content)) == 3 - header, first


@pytest.mark.parametrize(("name", "content", "column"), [
    ("in.jsonl", "".join(json.dumps({"id": i, "text": t}) + "\n\n" for i, t in enumerate(TEXTS)),
     "text"),
    ("in.txt", "\n".join(TEXTS) + "\n", None),
    ("in.txt", "".join(f"{t}, please\n" for t in TEXTS), None),  # commas are text
])
def test_json_lines_and_text_files_give_one_prediction_per_line(package, tmp_path, name,
                                                                 content, column):
    source = tmp_path / name
    source.write_text(content)
    rows = predict_file(load_package(package), source, tmp_path / "out.parquet", "m", "local",
                        column=column, batch_size=2)
    inputs = pq.read_table(tmp_path / "out.parquet").column("input").to_pylist()
    assert rows == len(inputs) == 3
    assert all(got.startswith(text) for got, text in zip(inputs, TEXTS, strict=True))


def test_parquet_is_read_whole_whatever_the_header_option(package, tmp_path):
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": TEXTS}), source)
    rows = predict_file(load_package(package), source, tmp_path / "out.parquet", "m", "local",
                        header=True)
    assert rows == 3


@pytest.mark.parametrize(("name", "content", "column", "message"), [
    ("in.csv", "id,text\n1,a\n", "label", "no column 'label'.*Fix: "),
    ("in.csv", "play a song,music\nbook a table\n", None, "Expected 2 columns.*Fix: .*quote"),
    ("in.jsonl", '{"text": "a"}\n["b"]\n', None, "line 2: not a JSON object.*Fix: "),
    ("in.jsonl", '{"text": "a"}\n{"query": "b"}\n', None, "line 2: no key 'text'.*Fix: "),
    ("in.txt", "a\n", "text", "no column 'text'.*Fix: drop --column"),
])
def test_an_unreadable_input_is_refused_naming_the_file_and_the_fix(package, tmp_path, name,
                                                                     content, column, message):
    source, output = tmp_path / name, tmp_path / "out.parquet"
    source.write_text(content)
    with pytest.raises(DlforgeError, match=message) as raised:
        predict_file(load_package(package), source, output, "m", "local", column=column)
    assert str(source) in str(raised.value)
    assert not output.exists()
