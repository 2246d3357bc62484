"""The pyfunc flavour takes inputs in the wire format of the package's encoder."""

from __future__ import annotations

import base64
import io
import json

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package, save_package
from dlforge.models.preprocessing import ImageEncoder
from dlforge.models.vision import SmallCNN
from dlforge.registry.pyfunc import PackageModel, signature_and_example


def png(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (8, 8), color=shade).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def package(tmp_path):
    torch.manual_seed(0)
    encoder = ImageEncoder(channels=1).fit([png(0), png(255)])
    arguments = {"num_classes": 2, "channels": 1, "width": 4}
    return save_package(tmp_path / "model", SmallCNN(**arguments).state_dict(), SmallCNN,
                        arguments, encoder, ["dark", "light"], False, {})


def test_an_image_package_is_signed_with_a_base64_example(package):
    signature, example = signature_and_example(package, [png(0), png(255)])
    assert example == [base64.b64encode(png(0)).decode(), base64.b64encode(png(255)).decode()]
    assert json.loads(signature.inputs.to_json()) == [{"type": "string", "required": True}]


def test_an_image_model_takes_base64_and_names_the_input_it_cannot_read(package):
    model = PackageModel(load_package(package))
    wire = [base64.b64encode(png(0)).decode(), base64.b64encode(png(255)).decode()]
    out = model.predict(wire, params={"top_k": 1})
    assert list(out.columns) == ["label", "score", "top_k"] and len(out) == 2
    assert model.predict([png(0)])["label"].tolist() == out["label"].tolist()[:1]
    with pytest.raises(DlforgeError, match="input 1: not base64-encoded image data"):
        model.predict([wire[0], "not base64!"])
