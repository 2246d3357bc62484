"""The image encoder's channels come from the train images unless set, and a set value
that disagrees with them is named in a warning."""

from __future__ import annotations

import io
import logging

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.models.preprocessing import ImageEncoder, encoder_from_dict

LOGGER = "dlforge.models.preprocessing"


def image(mode: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (6, 4), color=(200, 30, 30)).convert(mode).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(("modes", "channels", "said"), [
    (["RGB", "RGBA", "P"], 3, "3 train images measured, all in colour: read as RGB, 3 channels"),
    (["L", "LA", "1"], 1, "3 train images measured, all grayscale: read as grayscale, 1 channel"),
    (["L", "RGB", "L"], 3,
     "3 train images measured, 1 in colour, 2 grayscale: each read as RGB, 3 channels"),
])
def test_channels_null_are_read_from_the_train_images_and_recorded(modes, channels, said,
                                                                    caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        encoder = ImageEncoder(channels=None).fit([image(m) for m in modes])
    assert f"{said} <model.encoder.channels=null>" in caplog.text
    assert encoder.model_inputs == {"channels": channels} and len(encoder.mean) == channels
    recorded = encoder.to_dict()
    assert recorded["channels"] == channels
    # Serving rebuilds the encoder from the record: a colour image of a grayscale model is
    # read as grayscale, and the other way round.
    served = encoder_from_dict(recorded)
    other = image("L" if channels == 3 else "RGB")
    assert tuple(served.encode(other).shape) == (channels, 4, 6)


def test_the_encoder_reads_channels_from_the_data_by_default():
    assert ImageEncoder().fit([image("RGB")]).channels == 3


@pytest.mark.parametrize(("channels", "modes", "warned"), [
    (1, ["RGB", "L"], "model.encoder.channels=1 reads the train images as grayscale, but 1 of "
                      "2 are in colour: their colour is lost. Fix: set model.encoder.channels="
                      "null (from the train images) or 3"),
    (3, ["L", "L"], "model.encoder.channels=3 reads the train images as RGB, but the 2 measured "
                    "are all grayscale: the network gets 3 identical channels. Fix: set "
                    "model.encoder.channels=null (from the train images) or 1"),
])
def test_a_set_value_that_disagrees_with_the_images_is_kept_with_a_warning(channels, modes,
                                                                           warned, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        encoder = ImageEncoder(channels=channels).fit([image(m) for m in modes])
    assert encoder.channels == channels
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [warned]


@pytest.mark.parametrize(("channels", "modes"), [(1, ["L"]), (3, ["RGB", "L"])])
def test_a_set_value_that_agrees_with_the_images_says_nothing(channels, modes, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ImageEncoder(channels=channels).fit([image(m) for m in modes])
    assert caplog.records == []


def test_channels_other_than_1_3_or_null_are_refused_naming_the_key():
    with pytest.raises(DlforgeError, match=r"model.encoder.channels=4: images are read as "
                                           r"grayscale \(1\) or RGB \(3\). Fix: set"):
        ImageEncoder(channels=4).fit([image("RGBA")])
