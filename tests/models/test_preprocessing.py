"""Each encoder owns its input's wire format, its size limit and its batch source."""

from __future__ import annotations

import base64
import io

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.models.preprocessing import (
    ImageEncoder,
    InputTooLarge,
    TextEncoder,
    UnreadableInput,
    encoder_from_dict,
)
from tests.toy import png_header


def png(width: int = 8, height: int = 8) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (width, height), color=128).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def text():
    return TextEncoder().fit(["play a song", "book a table"])


@pytest.fixture
def image():
    return ImageEncoder(channels=1).fit([png(), png()])


def test_a_text_travels_as_itself_and_is_held_to_max_input_chars(text):
    assert text.from_wire(text.to_wire("play a song")) == "play a song"
    assert text.size_limit == "max_input_chars"
    encoded, summary = text.read_wire("play a song", limit=11)
    assert encoded == text.encode("play a song") and summary["tokens"] == 3
    with pytest.raises(InputTooLarge, match=r"12 characters, at most 11 \(max_input_chars\)"):
        text.read_wire("play a song!", limit=11)


def test_an_image_travels_as_base64_and_is_held_to_max_image_pixels(image):
    data = png()
    wire = image.to_wire(data)
    assert wire == base64.b64encode(data).decode() and image.from_wire(wire) == data
    assert image.from_wire(data) == data  # bytes from a Python caller pass as they are
    assert image.size_limit == "max_image_pixels"
    encoded, summary = image.read_wire(wire, limit=64)
    assert tuple(encoded.shape) == (1, 8, 8) and summary["width"] == 8


@pytest.mark.parametrize(("wire", "error", "words"), [
    ("not base64!", UnreadableInput, "not base64-encoded image data"),
    (base64.b64encode(b"GIF89a broken").decode(), UnreadableInput, "not a readable image"),
    (base64.b64encode(png(9, 8)).decode(), InputTooLarge, "72 pixels, more than "
                                                          "max_image_pixels=64"),
    (base64.b64encode(png_header(20000, 20000)).decode(), InputTooLarge, "more than "
                                                                         "max_image_pixels"),
    (base64.b64encode(png_header(8, 8)).decode(), UnreadableInput, "damaged"),
])
def test_an_image_that_cannot_be_read_says_why(image, wire, error, words):
    with pytest.raises(error, match=words) as raised:
        image.read_wire(wire, limit=64)
    assert isinstance(raised.value, DlforgeError)


def test_batch_prediction_reads_a_table_for_text_and_a_folder_for_images(text, image,
                                                                         tmp_path):
    table = tmp_path / "texts.csv"
    table.write_text("id,text\n1,play a song\n2,book a table\n3,play music\n")
    (tmp_path / "pictures" / "a").mkdir(parents=True)
    for name in ("b.png", "a/c.png"):
        (tmp_path / "pictures" / name).write_bytes(png())
    assert (text.reads(table), text.reads(tmp_path)) == (True, False)
    assert (image.reads(tmp_path), image.reads(table)) == (True, False)
    assert text.batch_input == "a text file" and image.batch_input == "a folder of images"
    assert list(text.batches(table, 2, column="text")) == [
        (["play a song", "book a table"], ["play a song", "book a table"]),
        (["play music"], ["play music"])]
    shown, inputs = zip(*image.batches(tmp_path / "pictures", 1), strict=True)
    assert [s[0].removeprefix(str(tmp_path)) for s in shown] == ["/pictures/a/c.png",
                                                                 "/pictures/b.png"]
    assert inputs == ([png()], [png()])


def test_the_wire_format_survives_the_package_round_trip(image):
    rebuilt = encoder_from_dict(image.to_dict())
    assert rebuilt.size_limit == "max_image_pixels"
    assert rebuilt.from_wire(image.to_wire(png())) == png()


def test_image_mean_and_std_are_measured_in_one_pass_without_stacking_the_images():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8) for _ in range(7)]
    files = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    encoder = ImageEncoder(channels=3).fit(files)
    stack = np.stack(arrays).astype(np.float64) / 255.0  # (N, H, W, C)
    assert encoder.mean == pytest.approx(stack.mean(axis=(0, 1, 2)).tolist(), abs=1e-6)
    assert encoder.std == pytest.approx((stack.std(axis=(0, 1, 2)) + 1e-6).tolist(), abs=1e-6)
