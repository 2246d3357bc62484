"""Offline batch prediction: registry URIs and package folders, CSV, parquet, image folders."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package
from dlforge.serve.batch import predict_file
from tests.conftest import ROOT

TEXTS = ["guitar song album", "rain umbrella forecast", "pizza dinner salad"]


def test_predict_a_registered_model_over_a_csv_in_batches(project, tmp_path):
    project.release()
    source = tmp_path / "texts.csv"
    source.write_text("text\n" + "".join(f"{TEXTS[i % 3]} {i}\n" for i in range(1000)))
    output = tmp_path / "out" / "predictions.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "dlforge", "predict", f"models:/{project.model_name}@champion",
         "--input", str(source), "--output", str(output), "--batch-size", "64",
         "--tracking-uri", project.tracking_uri, "--top-k", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pq.read_table(output).to_pylist()
    assert len(table) == 1000
    assert {row["model"] for row in table} == {project.model_name}
    assert {row["version"] for row in table} == {"1"}
    package = load_package(project.root / "outputs/intent/train/model")
    expected = [p["label"] for p in package.predict([r["input"] for r in table[:6]])]
    assert [r["label"] for r in table[:6]] == expected
    assert table[0]["input"] == f"{TEXTS[0]} 0"
    assert not list(output.parent.glob(".*.tmp"))


def test_predict_a_package_folder_over_parquet_with_a_named_column(project, tmp_path):
    project.run("train")
    model = load_package(project.root / "outputs/intent/train/model")
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "utterance": TEXTS}), source, row_group_size=2)
    output = tmp_path / "out.parquet"
    rows = predict_file(model, source, output, "intent", "local", column="utterance",
                        batch_size=2)
    assert rows == 3
    assert pq.read_table(output).column("label").to_pylist() == \
        [p["label"] for p in model.predict(TEXTS)]
    with pytest.raises(DlforgeError, match="no column 'text'"):
        predict_file(model, source, tmp_path / "x.parquet", "intent", "local", column="text")
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(DlforgeError, match="takes a text file"):
        predict_file(model, tmp_path, tmp_path / "y.parquet", "intent", "local")
