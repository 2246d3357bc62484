"""The MLflow pyfunc flavour of a dlforge model package.

Registered models are logged with ``loader_module="dlforge.registry.pyfunc"``
and the package folder as their data: MLflow calls :func:`_load_pyfunc`, which
loads the package (safetensors weights, checked against SHA256SUMS; nothing is
unpickled) and rebuilds its network class, from the project code the package
carries in ``code/`` (imported under names of its own, so several versions of
one project load side by side) or from the installed distribution it records.
With dlforge installed, any MLflow client, in any folder, can then do::

    model = mlflow.pyfunc.load_model("models:/intent@champion")
    model.predict(["book a table for two", "what's my balance"], params={"top_k": 3})

Inputs (a list, or a one-column DataFrame) are in the wire format of the
package's encoder: strings for text models, base64-encoded image files for
image models. The result is a DataFrame with ``label``, ``score`` and
``top_k`` (a JSON list of ``{label, score}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dlforge.core.errors import DlforgeError


class PackageModel:
    """A loaded package behind MLflow's pyfunc ``predict`` contract."""

    def __init__(self, predictor):
        self.predictor = predictor

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
        return [self._from_wire(v, i) for i, v in enumerate(values)]

    def _from_wire(self, value, index: int):
        from dlforge.models.preprocessing import UnreadableInput

        try:
            return self.predictor.encoder.from_wire(value)
        except UnreadableInput as err:
            raise DlforgeError(f"input {index}: {err}") from None


def _load_pyfunc(data_path: str) -> PackageModel:
    """MLflow's entry point for ``loader_module`` flavours."""
    from dlforge.models.package import load_package

    return PackageModel(load_package(data_path))


def signature_and_example(package: Path, examples: Sequence):
    """The pyfunc signature (a list of strings in; label, score, top_k out; a top_k
    parameter) and an input example: ``examples`` (inputs as the package's encoder
    takes them, e.g. image bytes) in the encoder's wire format."""
    from mlflow.models import infer_signature

    from dlforge.models.package import read_encoder

    encoder = read_encoder(package)
    example = [encoder.to_wire(x) for x in examples]
    output = pd.DataFrame({"label": ["x"], "score": [0.5], "top_k": ["[]"]})
    return infer_signature(example, output, params={"top_k": 5}), example
