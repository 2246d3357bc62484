"""Networks and the inference package shared by training, the registry and serving.

Serving imports only this package (torch, safetensors), never dlforge.train.
Architectures are registered by name; a model package names its architecture,
so loading one never imports arbitrary code.
"""

from __future__ import annotations

from importlib import import_module

ARCHITECTURES = {
    "embedding_bag": "dlforge.models.text:EmbeddingBagClassifier",
    "text_cnn": "dlforge.models.text:TextCNN",
    "small_cnn": "dlforge.models.vision:SmallCNN",
}


def architecture(name: str):
    """The model class registered as ``name``."""
    from dlforge.core.errors import DlforgeError

    if name not in ARCHITECTURES:
        raise DlforgeError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    module, attr = ARCHITECTURES[name].split(":")
    return getattr(import_module(module), attr)


def architecture_name(target: str) -> str:
    """Registry name of a ``_target_`` path such as ``dlforge.models.text.TextCNN``."""
    from dlforge.core.errors import DlforgeError

    for name, path in ARCHITECTURES.items():
        if path.replace(":", ".") == target:
            return name
    raise DlforgeError(f"model._target_={target} is not a registered architecture "
                       f"({', '.join(ARCHITECTURES.values())}); add it to "
                       "dlforge.models.ARCHITECTURES so that packages can name it")
