"""Reading the store's content-addressed objects (image bytes) by digest.

Snapshots of image datasets hold each image's sha256, never its bytes; training,
evaluation and ``dlforge data fetch`` read the bytes here, and every read is
checked against the digest, so a damaged store is reported, naming the example,
instead of being trained on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dlforge.core.errors import DlforgeError

FIX = ("Fix: run `dlforge data verify` to list the damaged objects, and restore the store "
       "from its DVC remote (`dvc pull`)")


class ObjectReader:
    """The objects folder of one dataset (``<store>/<name>/objects``), read by digest."""

    def __init__(self, root: str | Path, dataset: str = ""):
        self.root, self.dataset = Path(root), dataset
        self._prefix = os.path.join(str(root), "")  # plain strings: read once per example

    def path(self, digest: str) -> Path:
        return Path(f"{self._prefix}{digest[:2]}/{digest[2:]}")

    def read(self, digest: str, example_id: str | None = None) -> bytes:
        """The bytes of object ``digest``, checked against it.

        Raises:
            DlforgeError: when the object is missing or its bytes do not match its
                digest, naming the example and the fix.
        """
        path = f"{self._prefix}{digest[:2]}/{digest[2:]}"
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise DlforgeError(f"{self._example(example_id)}: its image {path} cannot be read "
                               f"({err.strerror or err}). {FIX}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise DlforgeError(f"{self._example(example_id)}: its image {path} does not match "
                               f"its digest (the store is damaged). {FIX}")
        return data

    def _example(self, example_id: str | None) -> str:
        where = f" of dataset {self.dataset}" if self.dataset else ""
        return f"example {example_id}{where}" if example_id else f"an object{where}"
