"""Offline batch inference: the model package serving uses, over a large input.

Input is read and output written one batch at a time (the encoder says what it
reads: a table of texts, a folder of images), so memory stays flat however
large the input; the parquet output appears whole or not at all. ``dlforge
predict`` is its command.
"""

from __future__ import annotations

import json
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.io import atomic_output


def predict_file(model, source: Path, output: Path, model_name: str, version: str,
                 column: str | None = None, batch_size: int = 512, top_k: int = 5,
                 progress=None, header: bool | None = None) -> int:
    """Predict every input in ``source`` into the parquet file ``output``; return the rows
    written, one per input.

    Args:
        column: the table column of the inputs (default: the first).
        header: whether line 1 of a CSV or text file names its columns; None: decided
            from line 1 by the rule ingest uses (see :mod:`dlforge.models.batches`).
        progress: called with the number of inputs of each batch written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    encoder = model.encoder
    if not encoder.reads(source):
        raise DlforgeError(f"{source}: model {model_name} v{version} takes "
                           f"{encoder.batch_input}")
    schema = pa.schema([("input", pa.string()), ("label", pa.string()), ("score", pa.float32()),
                        ("top_k", pa.string()), ("model", pa.string()), ("version", pa.string())])
    batches = encoder.batches(source, batch_size, column, header)
    rows = 0
    with atomic_output(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for shown, inputs in batches:
            results = model.predict(inputs, top_k=top_k)
            writer.write_table(pa.table({
                "input": shown, "label": [r["label"] for r in results],
                "score": [r["score"] for r in results],
                "top_k": [json.dumps(r["top_k"]) for r in results],
                "model": [model_name] * len(results),
                "version": [version] * len(results)}, schema=schema))
            rows += len(results)
            if progress is not None:
                progress(len(results))
    return rows


def load(uri: str, tracking_uri: str | None, cache: Path):
    """A package folder or a registry URI -> (predictor, model name, version)."""
    from dlforge.models.package import load_package

    if not uri.startswith("models:/"):
        model = load_package(uri)
        return model, model.spec.get("experiment", Path(uri).name), "local"
    import mlflow

    from dlforge.core.tracking import connect
    from dlforge.registry.fetch import fetch_package

    connect(tracking_uri)
    folder, name, version = fetch_package(mlflow.MlflowClient(), uri, cache)
    return load_package(folder), name, version
