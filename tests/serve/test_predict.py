"""Offline batch prediction: registry URIs and package folders, CSV, parquet, image folders."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlforge.cli import main
from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package
from dlforge.serve.batch import predict_file

TEXTS = ["guitar song album", "rain umbrella forecast", "pizza dinner salad"]


def champion_package(project, tmp_path):
    """Version 1's package as the registry holds it (the last training is version 2)."""
    import mlflow

    from dlforge.core.tracking import connect
    from dlforge.registry.fetch import fetch_package

    connect(project.tracking_uri)
    folder, _, _ = fetch_package(mlflow.MlflowClient(project.tracking_uri),
                                 f"models:/{project.model_name}/1", tmp_path / "fetched")
    return load_package(folder)


def test_predict_a_registered_model_over_a_csv_in_batches(two_versions, tmp_path,
                                                          monkeypatch, capsys):
    project = two_versions  # v1 champion, v2 candidate
    source = tmp_path / "texts.csv"
    source.write_text("text\n" + "".join(f"{TEXTS[i % 3]} {i}\n" for i in range(1000)))
    output = tmp_path / "out" / "predictions.parquet"
    monkeypatch.chdir(tmp_path)
    # `dlforge predict` in this process (a new one would import torch and MLflow again)
    code = main(["predict", f"models:/{project.model_name}@champion", "--input", str(source),
                 "--output", str(output), "--batch-size", "64",
                 "--tracking-uri", project.tracking_uri, "--top-k", "2"])
    assert code == 0, capsys.readouterr().err[-2000:]
    table = pq.read_table(output).to_pylist()
    assert len(table) == 1000
    assert {row["model"] for row in table} == {project.model_name}
    assert {row["version"] for row in table} == {"1"}
    package = champion_package(project, tmp_path)
    expected = [p["label"] for p in package.predict([r["input"] for r in table[:6]])]
    assert [r["label"] for r in table[:6]] == expected
    assert table[0]["input"] == f"{TEXTS[0]} 0"
    assert not list(output.parent.glob(".*.tmp"))


def test_predict_a_package_folder_over_parquet_with_a_named_column(two_versions, tmp_path):
    model = load_package(two_versions.root / "outputs/intent/train/model")
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
