"""Input encoders: raw inputs -> tensors, fitted on the train split only.

An encoder is plain data (``to_dict``/``from_dict``, JSON) so that the model
package carries it and serving rebuilds it without the training code.

An encoder also owns its input's outer formats, so that no caller tests what
kind of model it holds: the wire format (how an input travels as a JSON string,
over HTTP or to the MLflow pyfunc: ``from_wire``/``to_wire``), the serving
limit that bounds one input (``size_limit``, the setting's name), and what
offline batch prediction reads (``reads``, ``batches``).

    text      TextEncoder (words and n-grams), TokenizerEncoder (a pretrained
              backbone's tokenizer)
    image     ImageEncoder, ProcessorImageEncoder (a pretrained backbone's processor)
    errors    UnreadableInput, InputTooLarge: an input its encoder refuses

Configs name them here (``_target_: dlforge.models.preprocessing.TextEncoder``).
"""

from __future__ import annotations

from pathlib import Path

from dlforge.models.preprocessing.errors import InputTooLarge, UnreadableInput
from dlforge.models.preprocessing.image import ImageEncoder, ProcessorImageEncoder
from dlforge.models.preprocessing.text import ENCODER_FILE, TextEncoder, TokenizerEncoder

__all__ = ["ENCODERS", "ENCODER_FILE", "ImageEncoder", "InputTooLarge", "ProcessorImageEncoder",
           "TextEncoder", "TokenizerEncoder", "UnreadableInput", "encoder_from_dict"]

# By the name ``to_dict`` records: its "encoder", else its input "kind".
ENCODERS = {"text": TextEncoder, "image": ImageEncoder, "tokenizer": TokenizerEncoder}


def encoder_from_dict(spec: dict, folder: Path | None = None):
    """The encoder ``to_dict`` described; ``folder``: the package, for an encoder that
    saved files there (``from_package``)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    encoder = ENCODERS[spec.pop("encoder", kind)]
    if hasattr(encoder, "from_package"):
        return encoder.from_package(folder, **spec)
    return encoder(**spec)
