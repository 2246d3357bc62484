"""Content digests of Arrow tables that do not depend on how rows were batched.

Each column feeds two running hashes, one over the concatenated values and one
over the value lengths; both are plain concatenations, so hashing a table in one
piece or in any number of batches gives the same digest. Parquet bytes are not
used: they change with the writer's version and row-group layout.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_OFFSET_TYPES = {
    pa.string(): np.int32,
    pa.binary(): np.int32,
    pa.large_string(): np.int64,
    pa.large_binary(): np.int64,
}


class TableDigest:
    """Running SHA-256 over the given columns of a stream of tables."""

    def __init__(self, columns: tuple[str, ...]):
        self.columns = columns
        self._data = {c: hashlib.sha256() for c in columns}
        self._lengths = {c: hashlib.sha256() for c in columns}

    def update(self, table: pa.Table | pa.RecordBatch) -> None:
        for name in self.columns:
            column = table.column(name)
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            for chunk in chunks:
                self._update_array(name, chunk)

    def _update_array(self, name: str, array: pa.Array) -> None:
        if array.null_count:
            raise ValueError(f"column '{name}' has nulls; validate before hashing")
        if array.type in _OFFSET_TYPES:
            offsets = np.frombuffer(array.buffers()[1], dtype=_OFFSET_TYPES[array.type])
            offsets = offsets[array.offset : array.offset + len(array) + 1]
            data = array.buffers()[2]
            start, end = int(offsets[0]), int(offsets[-1])
            self._data[name].update(memoryview(data)[start:end] if data is not None else b"")
            self._lengths[name].update(np.diff(offsets).astype("<i8").tobytes())
        else:
            values = array.to_numpy(zero_copy_only=False).astype("<i8")
            self._data[name].update(values.tobytes())

    def hexdigest(self) -> str:
        final = hashlib.sha256()
        for name in self.columns:
            final.update(name.encode())
            final.update(self._data[name].digest())
            final.update(self._lengths[name].digest())
        return final.hexdigest()


def table_digest(table: pa.Table, columns: tuple[str, ...]) -> str:
    """Digest of a whole table (see :class:`TableDigest`)."""
    digest = TableDigest(columns)
    digest.update(table)
    return digest.hexdigest()
