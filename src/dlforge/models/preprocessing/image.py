"""Image encoders: image files read, resized and normalised with what the train split
measured (:class:`ImageEncoder`), or with a pretrained backbone's processor
(:class:`ProcessorImageEncoder`)."""

from __future__ import annotations

import base64
import binascii
import io
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.batches import image_batches
from dlforge.models.preprocessing.errors import InputTooLarge, UnreadableInput

log = logging.getLogger(__name__)


class ImageEncoder:
    """Image bytes -> normalised ``(C, H, W)`` float tensors.

    The size defaults to the most common size in the train split; mean and
    standard deviation per channel are measured on the train split.

    Args:
        channels: 1 reads every image as grayscale, 3 as RGB; None (the default): from
            the train images at fit time, 3 when any of them has colour (a grayscale
            image read as RGB loses nothing), else 1. The fitted value is recorded
            (``to_dict``), so serving reads images as training did.
        size: ``(height, width)`` every image is resized to; None: the most common size
            in the train split.
        mean: per channel, as measured by :meth:`fit`.
        std: per channel, as measured by :meth:`fit`.
    """

    kind = "image"
    size_limit = "max_image_pixels"  # the serving setting that bounds one input
    batch_input = "a folder of images"  # what batch prediction reads, for messages

    def __init__(self, channels: int | None = None, size: Sequence[int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.channels = channels
        self.size = tuple(size) if size else None  # (H, W)
        self.mean, self.std = mean, std

    def _pixels(self, data: bytes) -> np.ndarray:  # -> (C, H, W) in [0, 1]
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("L" if self.channels == 1 else "RGB")
            if self.size and image.size != (self.size[1], self.size[0]):
                image = image.resize((self.size[1], self.size[0]))
            array = np.asarray(image, dtype=np.float32) / 255.0
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def fit(self, images: Sequence[bytes]) -> ImageEncoder:
        """Settle the channels and the size from the images' headers, then measure the
        mean and standard deviation per channel.

        Raises:
            DlforgeError: when ``channels`` is neither 1, 3 nor None.
        """
        sizes, colour = _headers(images)
        if self.size is None:
            width, height = sizes.most_common(1)[0][0]
            self.size = (height, width)
        self.channels = _fitted_channels(self.channels, colour, sum(sizes.values()))
        # Running sums per channel: memory does not grow with the images measured.
        total = squares = np.zeros(self.channels)
        count = 0
        for data in images:
            pixels = self._pixels(data).astype(np.float64)  # (C, H, W)
            total = total + pixels.sum(axis=(1, 2))
            squares = squares + (pixels ** 2).sum(axis=(1, 2))
            count += pixels.shape[1] * pixels.shape[2]
        mean = total / count
        self.mean = mean.tolist()
        self.std = (np.sqrt(np.maximum(squares / count - mean ** 2, 0)) + 1e-6).tolist()
        return self

    @property
    def model_inputs(self) -> dict:
        return {"channels": self.channels}

    def summarize(self, data: bytes) -> dict:
        """What monitoring compares with the train split: size and intensity in [0, 1]."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return {"height": height, "width": width, "mean": round(float(pixels.mean()), 4),
                "std": round(float(pixels.std()), 4)}

    def encode(self, data: bytes) -> torch.Tensor:
        pixels = self._pixels(data)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return torch.from_numpy((pixels - mean) / std)

    def collate(self, encoded: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(encoded))  # (B, C, H, W)

    def from_wire(self, value) -> bytes:
        """An input as it arrives over the wire (the image file, base64-encoded; or its
        bytes, from a Python caller) -> the image file's bytes.

        Raises:
            UnreadableInput: for a string that is not base64.
        """
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise UnreadableInput("not base64-encoded image data") from None

    def to_wire(self, data: bytes) -> str:
        """An image file as it travels over the wire: base64."""
        return base64.b64encode(data).decode()

    def read_wire(self, value, limit: int) -> tuple[torch.Tensor, dict]:
        """One input as it arrives at the server -> (encoded, summary). Its size is read
        from the header first: an image over ``limit`` pixels is never decoded.

        Raises:
            InputTooLarge: over ``limit`` pixels.
            UnreadableInput: not base64, not an image, or damaged image data.
        """
        data = self.from_wire(value)
        self._check_pixels(data, limit)
        try:
            return self.encode(data), self.summarize(data)
        except Exception:  # a header that reads, over data that does not decode
            raise UnreadableInput("the image data is damaged and does not decode") from None

    @staticmethod
    def _check_pixels(data: bytes, limit: int) -> None:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError:  # PIL refuses to even open it
            width, height = limit + 1, 1
        except Exception:  # PIL: not an image it can read
            raise UnreadableInput("not a readable image (send a PNG, JPEG, ... file, "
                                  "base64-encoded)") from None
        if width * height > limit:
            raise InputTooLarge(f"{width * height} pixels, more than max_image_pixels={limit}")

    def reads(self, source: Path) -> bool:
        """Whether batch prediction can read ``source``: a folder of image files."""
        return source.is_dir()

    def batches(self, source: Path, batch_size: int, column: str | None = None,
                header: bool | None = None) -> Iterator[tuple[list[str], list[bytes]]]:
        """(shown, inputs) per batch: the image files' paths and bytes (``column`` and
        ``header`` are for tables and do not apply)."""
        return image_batches(source, batch_size)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "channels": self.channels, "size": list(self.size),
                "mean": self.mean, "std": self.std}


class ProcessorImageEncoder(ImageEncoder):
    """Images prepared as a pretrained backbone expects them: resized to its image
    processor's size and normalised with its mean and std (nothing is measured on
    the train split). It is packaged as the :class:`ImageEncoder` with those values.

    Args:
        processor: a folder with ``preprocessor_config.json`` (``save_pretrained``)
            or a hub id.
        channels: the backbone's input channels (3: images are read as RGB).
    """

    def __init__(self, processor: str, channels: int = 3):
        super().__init__(channels)
        self.processor = str(processor)

    def fit(self, images: Sequence[bytes]) -> ProcessorImageEncoder:
        """Read the processor's size, mean and std."""
        from dlforge.models.pretrained import processor_settings

        self.size, self.mean, self.std = processor_settings(self.processor,
                                                            "model.encoder.processor")
        if len(self.mean) != self.channels:
            raise DlforgeError(f"model.encoder.channels={self.channels}: the image processor "
                               f"of {self.processor} normalises {len(self.mean)} channels. "
                               f"Fix: set model.encoder.channels={len(self.mean)}")
        return self


def _headers(images: Sequence[bytes]) -> tuple[Counter, int]:
    """(the images' sizes ``(width, height)`` counted, how many have colour), read from
    their headers only."""
    from PIL import Image, ImageMode

    sizes, colour = Counter(), 0
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            sizes[image.size] += 1
            colour += ImageMode.getmode(image.mode).basemode != "L"  # L, LA, 1, I, F: gray
    return sizes, colour


def _fitted_channels(channels: int | None, colour: int, total: int) -> int:
    """The channels to read ``total`` train images with, ``colour`` of them in colour:
    ``channels`` when set (with a warning when it disagrees with the images), else from
    the images (see :class:`ImageEncoder`).

    Raises:
        DlforgeError: when ``channels`` is neither 1, 3 nor None.
    """
    if channels not in (None, 1, 3):
        raise DlforgeError(f"model.encoder.channels={channels}: images are read as grayscale "
                           "(1) or RGB (3). Fix: set model.encoder.channels to 1, 3 or null "
                           "(from the train images)")
    found = 3 if colour else 1
    if channels is None:
        seen = ("all grayscale:" if not colour else "all in colour:" if colour == total else
                f"{colour} in colour, {total - colour} grayscale: each")
        log.info("%d train images measured, %s read as %s <model.encoder.channels=null>",
                 total, seen, "RGB, 3 channels" if colour else "grayscale, 1 channel")
    elif channels == 1 and colour:
        log.warning("model.encoder.channels=1 reads the train images as grayscale, but %d of "
                    "%d are in colour: their colour is lost. Fix: set model.encoder.channels="
                    "null (from the train images) or 3", colour, total)
    elif channels == 3 and not colour:
        log.warning("model.encoder.channels=3 reads the train images as RGB, but the %d "
                    "measured are all grayscale: the network gets 3 identical channels. Fix: set "
                    "model.encoder.channels=null (from the train images) or 1", total)
    return channels or found
