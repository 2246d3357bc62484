"""``dlforge predict MODEL_URI --input FILE --output FILE``: offline batch inference.

    dlforge predict models:/intent@champion --input texts.csv --output predictions.parquet
    dlforge predict models:/digits/3 --input images/ --output predictions.parquet
    dlforge predict outputs/intent/train/model --input texts.parquet --output out.parquet

The same model package serving uses, over a large input in batches: a CSV or
parquet file of texts (column ``--column``, default the first), or a folder of
images (searched recursively). Input is read and output written one batch at a
time, so memory stays flat however large the input. The output parquet has
one row per input: ``input`` (the text or image path), ``label``, ``score``,
``top_k`` (JSON), ``model`` and ``version``. It is written to a temporary file
and renamed at the end: an interrupted run leaves no partial output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dlforge.core.errors import DlforgeError


def predict_file(model, source: Path, output: Path, model_name: str, version: str,
                 column: str | None = None, batch_size: int = 512, top_k: int = 5,
                 progress=None) -> int:
    """Predict every input in ``source`` into the parquet file ``output``; return the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    encoder = model.encoder
    if not encoder.reads(source):
        raise DlforgeError(f"{source}: model {model_name} v{version} takes "
                           f"{encoder.batch_input}")
    schema = pa.schema([("input", pa.string()), ("label", pa.string()), ("score", pa.float32()),
                        ("top_k", pa.string()), ("model", pa.string()), ("version", pa.string())])
    batches = encoder.batches(source, batch_size, column)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
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
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
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
