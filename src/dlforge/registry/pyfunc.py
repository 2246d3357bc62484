"""The MLflow pyfunc flavour of a dlforge model package.

Registered models are logged with ``loader_module="dlforge.registry.pyfunc"``
and the package folder as their data: MLflow calls :func:`_load_pyfunc`, which
loads the package (safetensors weights, checked against SHA256SUMS; nothing is
unpickled). With dlforge installed, any MLflow client can then do::

    model = mlflow.pyfunc.load_model("models:/intent@champion")
    model.predict(["book a table for two", "what's my balance"], params={"top_k": 3})

Text models take strings; image models take base64-encoded image files (a
list, or a one-column DataFrame). The result is a DataFrame with ``label``,
``score`` and ``top_k`` (a JSON list of ``{label, score}``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

import pandas as pd

from dlforge.core.errors import DlforgeError


class PackageModel:
    """A loaded package behind MLflow's pyfunc ``predict`` contract."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.images = predictor.spec.get("type") == "image_class"

    def predict(self, model_input, params: dict | None = None) -> pd.DataFrame:
        inputs = self._inputs(model_input)
        top_k = int((params or {}).get("top_k", 5))
        rows = self.predictor.predict(inputs, top_k=top_k) if inputs else []
        return pd.DataFrame({
            "label": [r["label"] for r in rows],
            "score": [float(r["score"]) for r in rows],
            "top_k": [json.dumps(r["top_k"]) for r in rows],
        })

    def _inputs(self, model_input) -> list:
        if isinstance(model_input, pd.DataFrame):
            if len(model_input.columns) != 1:
                raise DlforgeError(f"expected one column of inputs, got "
                                   f"{list(model_input.columns)}")
            values = model_input.iloc[:, 0].tolist()
        elif isinstance(model_input, str | bytes):
            values = [model_input]
        else:
            values = list(model_input)
        if self.images:
            return [decode_image(v, i) for i, v in enumerate(values)]
        return [str(v) for v in values]


def decode_image(value, index: int) -> bytes:
    """A base64 string (or raw bytes) -> image file bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise DlforgeError(f"input {index}: not base64-encoded image data") from None


def _load_pyfunc(data_path: str) -> PackageModel:
    """MLflow's entry point for ``loader_module`` flavours."""
    from dlforge.models.package import load_package

    return PackageModel(load_package(data_path))


def signature_and_example(example: Sequence[str]):
    """The pyfunc signature (a list of strings in; label, score, top_k out; a top_k
    parameter) and an input example."""
    from mlflow.models import infer_signature

    output = pd.DataFrame({"label": ["x"], "score": [0.5], "top_k": ["[]"]})
    return infer_signature(list(example), output, params={"top_k": 5}), list(example)
