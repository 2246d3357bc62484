"""Text encoders: words and n-grams counted on the train split (:class:`TextEncoder`),
or a pretrained backbone's tokenizer (:class:`TokenizerEncoder`); both share the
outer formats of text (:class:`TextInputs`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.batches import text_batches
from dlforge.models.preprocessing.errors import InputTooLarge

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


# The files an encoder may save into a model package (``save``): flat names in its folder.
ENCODER_FILE = re.compile(rf"{TokenizerEncoder.files}/[A-Za-z0-9_][A-Za-z0-9_.-]*")
