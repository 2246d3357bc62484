"""Input encoders: raw inputs -> tensors, fitted on the train split only.

An encoder is plain data (``to_dict``/``from_dict``, JSON) so that the model
package carries it and serving rebuilds it without the training code.

An encoder also owns its input's outer formats, so that no caller tests what
kind of model it holds: the wire format (how an input travels as a JSON string,
over HTTP or to the MLflow pyfunc: ``from_wire``/``to_wire``), the serving
limit that bounds one input (``size_limit``, the setting's name), and what
offline batch prediction reads (``reads``, ``batches``).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.batches import image_batches, text_batches

log = logging.getLogger(__name__)

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


class TextInputs:
    """The outer formats of text inputs, shared by the text encoders: a text travels
    over the wire as itself, is bounded in characters, and batch prediction reads a
    column of a table."""

    kind = "text"
    size_limit = "max_input_chars"  # the serving setting that bounds one input
    batch_input = "a text file"  # what batch prediction reads, for messages

    def from_wire(self, value) -> str:
        """An input as it arrives over the wire -> the text :meth:`encode` takes."""
        return str(value)

    def to_wire(self, text: str) -> str:
        """A text as it travels over the wire (as itself)."""
        return text

    def read_wire(self, value, limit: int) -> tuple[list[int], dict]:
        """One input as it arrives at the server -> (encoded, summary).

        Raises:
            InputTooLarge: over ``limit`` characters.
        """
        text = self.from_wire(value)
        if len(text) > limit:
            raise InputTooLarge(f"{len(text)} characters, at most {limit} (max_input_chars)")
        return self.encode(text), self.summarize(text)

    def reads(self, source: Path) -> bool:
        """Whether batch prediction can read ``source``: a CSV, parquet, JSON-lines or
        text file."""
        return not source.is_dir()

    def batches(self, source: Path, batch_size: int, column: str | None = None,
                header: bool | None = None) -> Iterator[tuple[list[str], list[str]]]:
        """(shown, inputs) per batch: the texts of ``column`` (default: the first), both
        shown in the output and predicted; ``header``: whether line 1 names the columns
        (None: decided from line 1, see :mod:`~dlforge.models.batches`)."""
        return ((texts, texts) for texts in text_batches(source, column, batch_size, header))


class TextEncoder(TextInputs):
    """Lower-cased word tokens (plus optional word n-grams) -> padded id tensors.

    Args:
        ngrams: 1 for words only, 2 to add word bigrams (fastText-style features).
        min_freq: tokens seen fewer times in the train split map to ``UNK``.
        max_vocab: keep the most frequent tokens up to this size.
        max_tokens: truncate longer inputs (after n-grams are added).
    """

    def __init__(self, ngrams: int = 1, min_freq: int = 1, max_vocab: int = 50_000,
                 max_tokens: int = 64, vocab: Sequence[str] | None = None):
        self.ngrams, self.min_freq, self.max_vocab = ngrams, min_freq, max_vocab
        self.max_tokens = max_tokens
        self.vocab = list(vocab) if vocab is not None else None
        self._index = {t: i for i, t in enumerate(self.vocab)} if self.vocab else {}

    def features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        grams = [" ".join(words[i:i + n]) for n in range(2, self.ngrams + 1)
                 for i in range(len(words) - n + 1)]
        return words + grams

    def fit(self, texts: Sequence[str]) -> TextEncoder:
        counts = Counter(f for text in texts for f in self.features(text))
        kept = [t for t, c in counts.most_common(self.max_vocab - 2) if c >= self.min_freq]
        self.vocab = ["<pad>", "<unk>", *kept]
        self._index = {t: i for i, t in enumerate(self.vocab)}
        return self

    @property
    def model_inputs(self) -> dict:
        """What the model needs to know about its input (``vocab_size``)."""
        return {"vocab_size": len(self.vocab)}

    def summarize(self, text: str) -> dict:
        """What monitoring compares with the train split: length and out-of-vocabulary rate."""
        words = _TOKEN.findall(text.lower())
        unknown = sum(w not in self._index for w in words)
        return {"chars": len(text), "tokens": len(words),
                "oov": round(unknown / len(words), 4) if words else 0.0}

    def encode(self, text: str) -> list[int]:
        # Unknown words map to UNK; unknown n-grams are dropped (they are mostly noise).
        ids = [self._index.get(f, UNK if " " not in f else None) for f in self.features(text)]
        ids = [i for i in ids if i is not None][: self.max_tokens]
        return ids or [UNK]

    def collate(self, encoded: Sequence[list[int]]) -> torch.Tensor:
        """Pad a batch of encoded inputs to ``(B, T)``."""
        width = max(len(e) for e in encoded)
        batch = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.as_tensor(ids)
        return batch

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ngrams": self.ngrams, "min_freq": self.min_freq,
                "max_vocab": self.max_vocab, "max_tokens": self.max_tokens, "vocab": self.vocab}


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


class TokenizerEncoder(TextInputs):
    """Texts -> token ids and attention masks from a Hugging Face tokenizer, collated
    to ``(B, 2, T)`` (for :class:`dlforge.models.pretrained.PretrainedTextClassifier`).

    Nothing is learned from the train split: the tokenizer is the backbone's. The
    model package carries the tokenizer's files in ``tokenizer/`` (:meth:`save`) and
    rebuilds it from there, offline (:meth:`from_package`).

    Args:
        tokenizer: a folder written by ``save_pretrained`` or a hub id.
        max_length: truncate longer inputs, in tokens (special tokens included).
        offline: read local files only (a package's own tokenizer).
    """

    files = "tokenizer"  # the package folder its files are saved in

    def __init__(self, tokenizer: str, max_length: int = 128, *, offline: bool = False):
        self.source, self.max_length, self.offline = str(tokenizer), max_length, offline
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The transformers tokenizer, loaded on first use (building the encoder reads
        nothing, so that a bad folder is reported by :meth:`fit`, naming the key)."""
        if self._tokenizer is None:
            from dlforge.models.pretrained import load_tokenizer

            self._tokenizer = load_tokenizer(self.source, "model.encoder.tokenizer",
                                             self.offline)
        return self._tokenizer

    def fit(self, texts: Sequence[str]) -> TokenizerEncoder:
        """Load (and so check) the tokenizer; the train split teaches it nothing."""
        self._tokenizer = self.tokenizer
        return self

    @property
    def model_inputs(self) -> dict:
        return {"vocab_size": len(self.tokenizer)}

    def summarize(self, text: str) -> dict:
        """What monitoring compares with the train split: length and unknown-token rate."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        unknown = sum(i == self.tokenizer.unk_token_id for i in ids)
        return {"chars": len(text), "tokens": len(ids),
                "oov": round(unknown / len(ids), 4) if ids else 0.0}

    def encode(self, text: str) -> list[int]:
        length = min(self.max_length, self.tokenizer.model_max_length)
        return self.tokenizer(text, truncation=True, max_length=length)["input_ids"]

    def collate(self, encoded: Sequence[list[int]]) -> torch.Tensor:
        """Pad a batch to ``(B, 2, T)``: token ids (padded with the tokenizer's pad id)
        and the attention mask (1 on tokens, 0 on padding)."""
        width = max(len(e) for e in encoded)
        batch = torch.zeros(len(encoded), 2, width, dtype=torch.long)
        batch[:, 0] = self.tokenizer.pad_token_id or 0
        for row, ids in enumerate(encoded):
            batch[row, 0, : len(ids)] = torch.as_tensor(ids)
            batch[row, 1, : len(ids)] = 1
        return batch

    def save(self, folder: Path) -> list[str]:
        """Write the tokenizer's files into ``folder/tokenizer/``; their names in ``folder``."""
        self.tokenizer.save_pretrained(str(folder / self.files))
        names = sorted(p.relative_to(folder).as_posix() for p in (folder / self.files).iterdir())
        odd = [n for n in names if not ENCODER_FILE.fullmatch(n)]
        if odd:  # a package lists flat file names only (see package.read_sums)
            raise DlforgeError(f"the tokenizer of {self.source} saves {odd}, which a model "
                               "package cannot list. Fix: use a tokenizer that saves plain files")
        return names

    @classmethod
    def from_package(cls, folder: Path, max_length: int) -> TokenizerEncoder:
        """The encoder a package saved: its tokenizer read from ``folder/tokenizer/``."""
        return cls(str(Path(folder) / cls.files), max_length, offline=True)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "encoder": "tokenizer", "max_length": self.max_length}


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


class UnreadableInput(DlforgeError):
    """An input its encoder cannot read; the message says why, the caller says which."""


class InputTooLarge(DlforgeError):
    """An input over the limit its encoder's ``size_limit`` names."""


# By the name ``to_dict`` records: its "encoder", else its input "kind".
ENCODERS = {"text": TextEncoder, "image": ImageEncoder, "tokenizer": TokenizerEncoder}
# The files an encoder may save into a model package (``save``): flat names in its folder.
ENCODER_FILE = re.compile(rf"{TokenizerEncoder.files}/[A-Za-z0-9_][A-Za-z0-9_.-]*")


def encoder_from_dict(spec: dict, folder: Path | None = None):
    """The encoder ``to_dict`` described; ``folder``: the package, for an encoder that
    saved files there (``from_package``)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    encoder = ENCODERS[spec.pop("encoder", kind)]
    if hasattr(encoder, "from_package"):
        return encoder.from_package(folder, **spec)
    return encoder(**spec)
