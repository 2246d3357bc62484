"""Lazy access to a snapshot split's model inputs.

A split's parquet file is memory-mapped and only two compact columns are held:
the inputs themselves for text (or, for images, the 64-character digests of the
store objects that hold the bytes) and the example ids. An image's bytes are read
when it is asked for, and checked against its digest. A reader pickles without
its columns, so a DataLoader worker started by ``spawn`` opens the file again
instead of receiving a copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq

from dlforge.data.objects import ObjectReader

CHUNK = 4096  # inputs converted to Python objects at a time when iterating


class SplitInputs(Sequence):
    """The model inputs of one split, in order: ``len``, indexing, slices (lists) and
    iteration, reading as little as each needs.

    Args:
        path: the split's parquet file, already checked against its manifest.
        column: the column that holds the inputs (or their digests, with ``objects``).
        rows: the split's number of rows (from the manifest).
        objects: where the inputs' bytes are, when ``column`` holds digests.
    """

    def __init__(self, path: Path, column: str, rows: int, objects: ObjectReader | None = None):
        self.path, self.column, self.rows, self.objects = Path(path), column, rows, objects
        self._values = self._ids = None

    def _load(self) -> None:
        if self._values is None:
            table = pq.read_table(self.path, columns=[self.column, "example_id"],
                                  memory_map=True)
            self._values = table.column(self.column).combine_chunks()
            self._ids = table.column("example_id").combine_chunks()

    def __len__(self) -> int:
        return self.rows

    def example_id(self, index: int) -> str:
        """The example id (see :func:`dlforge.data.build.example_ids`) of row ``index``."""
        self._load()
        return self._ids[index].as_py()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of a split of {len(self)} rows")
        self._load()
        value = self._values[index].as_py()
        return self.objects.read(value, self._ids[index].as_py()) if self.objects else value

    def __iter__(self) -> Iterator:
        self._load()
        for start in range(0, len(self), CHUNK):
            values = self._values.slice(start, CHUNK).to_pylist()
            if self.objects is None:
                yield from values
            else:
                ids = self._ids.slice(start, CHUNK).to_pylist()
                for digest, example in zip(values, ids, strict=True):
                    yield self.objects.read(digest, example)

    def sample(self, size: int | None) -> Sequence:
        """Up to ``size`` inputs evenly spaced over the split (all when ``size`` is None
        or not smaller), as a lazy sequence that may be iterated more than once."""
        if size is None or size >= len(self):
            return self
        import numpy as np

        return _Subset(self, np.linspace(0, len(self) - 1, size).round().astype(int).tolist())

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_values": None, "_ids": None}


class _Subset(Sequence):
    def __init__(self, inputs: SplitInputs, rows: list[int]):
        self.inputs, self.rows = inputs, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.inputs[r] for r in self.rows[index]]
        return self.inputs[self.rows[index]]
