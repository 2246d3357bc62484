"""A network's shapes from the meta device: those of a real build, nothing allocated."""

from __future__ import annotations

import pytest
import torch

from dlforge.models.meta import meta_shapes
from dlforge.models.text import EmbeddingBagClassifier, TextCNN
from dlforge.models.vision import SmallCNN


@pytest.mark.parametrize(("build", "arguments"), [
    (EmbeddingBagClassifier, {"vocab_size": 50, "num_classes": 3, "embed_dim": 8}),
    (TextCNN, {"vocab_size": 50, "num_classes": 3, "embed_dim": 8}),
    (SmallCNN, {"num_classes": 4, "channels": 3, "width": 8}),
])
def test_the_shapes_are_those_of_a_real_build(build, arguments):
    real = {key: tuple(value.shape) for key, value in build(**arguments).state_dict().items()}
    assert meta_shapes(build, arguments) == real


def test_a_huge_argument_allocates_nothing():
    # 1e9 x 64 floats would be 256 GB
    shapes = meta_shapes(EmbeddingBagClassifier, {"vocab_size": 10**9, "num_classes": 3,
                                                  "embed_dim": 64})
    assert shapes["embedding.weight"] == (10**9, 64)


def test_tensors_off_the_meta_device_are_still_initialised():
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(3))
            torch.nn.init.constant_(self.weight, 1.0)
            self.kept = torch.nn.init.constant_(torch.empty(3, device="cpu"), 2.0)

    built = {}

    def build():
        built["net"] = Mixed()
        return built["net"]

    assert meta_shapes(build, {}) == {"weight": (3,)}
    assert built["net"].weight.is_meta
    assert built["net"].kept.tolist() == [2.0, 2.0, 2.0]
