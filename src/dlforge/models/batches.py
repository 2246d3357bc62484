"""Raw inputs read from files a batch at a time, for offline prediction.

Each encoder reads its own kind of source (see ``batches`` on the encoders):
a column of a CSV or parquet table of texts, or a folder of image files.
Neither reader holds more than one batch in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dlforge.core.errors import DlforgeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def text_batches(path: Path, column: str | None, batch_size: int) -> Iterator[list[str]]:
    """Texts from a CSV or parquet file, ``batch_size`` at a time, never all at once."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        name = column or parquet.schema_arrow.names[0]
        if name not in parquet.schema_arrow.names:
            raise DlforgeError(f"{path}: no column {name!r} (columns: "
                               f"{parquet.schema_arrow.names}). Fix: pass --column")
        for batch in parquet.iter_batches(batch_size=batch_size, columns=[name]):
            yield [str(v) for v in batch.column(0).to_pylist()]
        return
    options = pcsv.ReadOptions(block_size=1 << 22)
    with pcsv.open_csv(path, read_options=options) as reader:
        names = reader.schema.names
        name = column or names[0]
        if name not in names:
            raise DlforgeError(f"{path}: no column {name!r} (header: {names}). Fix: pass "
                               "--column, or add a header row")
        pending: list[str] = []
        for block in reader:
            pending += [str(v) for v in block.column(names.index(name)).to_pylist()]
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending


def image_batches(folder: Path, batch_size: int) -> Iterator[tuple[list[str], list[bytes]]]:
    """(paths, bytes) of the image files under ``folder``, in sorted order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DlforgeError(f"{folder}: no image files ({sorted(IMAGE_SUFFIXES)})")
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        yield [str(p) for p in chunk], [p.read_bytes() for p in chunk]
