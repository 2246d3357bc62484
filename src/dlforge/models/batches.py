"""Raw inputs read from files a batch at a time, for offline prediction.

Each encoder reads its own kind of source (see ``batches`` on the encoders): the
texts of a table, or a folder of image files. Texts come from

- a parquet file, or a JSON-lines file (``.jsonl``, one object a line): the column
  (key) named, by default the first;
- a text file (``.txt``): one text a line;
- any other file, a CSV: the column named, by default the first. Line 1 is a
  header when the caller says so, or, left to the file, when it names the columns
  as ingest's rule has it (``text,label``, see :mod:`dlforge.data.types.header`) or
  holds the column named. Every other line is a text: a file without header is
  read whole, as ingest reads it.

Blank lines hold no text. No reader holds more than one batch in memory.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlforge.core.errors import DlforgeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
log = logging.getLogger(__name__)
_REENCODE = "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)"


def text_batches(path: Path, column: str | None, batch_size: int,
                 header: bool | None = None) -> Iterator[list[str]]:
    """Texts from a table or text file, ``batch_size`` at a time, never all at once.

    Args:
        path: a parquet, JSON-lines, text or CSV file (by its suffix).
        column: the column (key) of the texts; None: the first.
        batch_size: texts per batch.
        header: whether line 1 of a CSV or text file names its columns; None: decide
            from line 1 (see the module docstring).
    """
    readers = {".parquet": _parquet_texts, ".jsonl": _jsonl_texts, ".txt": _line_texts}
    read = readers.get(path.suffix.lower(), _csv_texts)
    return _rebatch(read(path, column, header), batch_size)


def _rebatch(blocks: Iterable[list[str]], size: int) -> Iterator[list[str]]:
    """Blocks of any length -> lists of ``size`` (the last one shorter)."""
    pending: list[str] = []
    for block in blocks:
        pending += block
        whole = len(pending) - len(pending) % size
        yield from (pending[start:start + size] for start in range(0, whole, size))
        pending = pending[whole:]
    if pending:
        yield pending


def _parquet_texts(path: Path, column: str | None, header: bool | None) -> Iterator[list[str]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    name = column or names[0]
    if name not in names:
        raise DlforgeError(f"{path}: no column {name!r} (columns: {names}). Fix: pass --column")
    for batch in parquet.iter_batches(columns=[name]):
        yield [str(v) for v in batch.column(0).to_pylist()]


def _jsonl_texts(path: Path, column: str | None, header: bool | None) -> Iterator[list[str]]:
    name = column
    for number, line in enumerate(lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise DlforgeError(f"{path}, line {number}: not a JSON object. Fix: write one "
                               'object a line, e.g. {"text": "book a table"}')
        name = name or next(iter(record), None)
        if name not in record:
            raise DlforgeError(f"{path}, line {number}: no key {name!r} (keys: {list(record)})."
                               " Fix: give every line that key, or pass --column")
        yield [str(record[name])]


def _line_texts(path: Path, column: str | None, header: bool | None) -> Iterator[list[str]]:
    if column is not None:
        raise DlforgeError(f"{path}: a text file holds one text a line, it has no column "
                           f"{column!r}. Fix: drop --column, or pass a CSV file")
    texts = (_decode(path, line.rstrip(b"\r\n")) for line in lines(path))
    texts = (text for text in texts if text)
    first = next(texts, None)
    if first is None:
        return
    if not _is_header(path, [first], header, column):
        yield [first]
    for text in texts:
        yield [text]


def _csv_texts(path: Path, column: str | None, header: bool | None) -> Iterator[list[str]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    first = _first_row(path)
    if first is None:
        return
    header = _is_header(path, first, header, column)
    index = _column_index(path, first, column, header)
    # Columns by position, all read as strings: no cell becomes a column name or a number.
    names = [f"f{i}" for i in range(len(first))]
    options = {"read_options": pcsv.ReadOptions(column_names=names, block_size=1 << 22),
               "convert_options": pcsv.ConvertOptions(
                   include_columns=[names[index]], column_types=dict.fromkeys(names, pa.string()),
                   strings_can_be_null=False, quoted_strings_can_be_null=False)}
    skip = int(header)  # line 1 is the first record Arrow reads (blank lines are skipped)
    try:
        with pcsv.open_csv(path, **options) as reader:
            for block in reader:
                yield block.column(0).to_pylist()[skip:]
                skip = 0
    except pa.ArrowInvalid as err:
        if "UTF8" in str(err):
            raise DlforgeError(f"{path}: not UTF-8 text ({err}). Fix: {_REENCODE}") from None
        raise DlforgeError(f"{path}: cannot read the CSV ({err}). Fix: give every row the "
                           f"{len(first)} column(s) of line 1; quote a text that holds a "
                           "comma") from None


def lines(path: Path) -> Iterator[bytes]:
    """The file's lines, read as ingest reads them (any line ending, in bounded chunks).

    Imported when a file is read, so that loading a package to serve it never
    imports the dataset layer.
    """
    from dlforge.data.types.lines import lines as read_lines

    return read_lines(path)


def _first_row(path: Path) -> list[str] | None:
    """The cells of the first line that is not blank (None: there is none)."""
    for line in lines(path):
        if line.strip(b"\r\n"):
            return next(csv.reader([_decode(path, line.rstrip(b"\r\n"))]), [""])
    return None


def _is_header(path: Path, cells: list[str], header: bool | None, column: str | None) -> bool:
    """Whether line 1 (``cells``) is a header: as ``header`` says, else when ingest's rule
    says so or it holds the ``column`` named."""
    from dlforge.data.types.header import looks_like_header

    if header is not None:
        return header
    if looks_like_header(cells) or column in cells:
        log.info("%s: line 1 (%s) names the columns and is read as a header, not as a text "
                 "<--no-header predicts it>", path, ",".join(cells))
        return True
    return False


def _column_index(path: Path, first: list[str], column: str | None, header: bool) -> int:
    """The position of ``column`` among the CSV's columns (the first where None)."""
    if column is None:
        return 0
    if header and column in first:
        return first.index(column)
    where = f"header: {first}" if header else f"no header, line 1: {first}"
    raise DlforgeError(f"{path}: no column {column!r} ({where}). Fix: pass --column with a "
                       "name of the header's, or leave --column out to read the first column")


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte order mark is no part of the text
    except UnicodeDecodeError:
        raise DlforgeError(f"{path}: not UTF-8 text. Fix: {_REENCODE}") from None


def image_batches(folder: Path, batch_size: int) -> Iterator[tuple[list[str], list[bytes]]]:
    """(paths, bytes) of the image files under ``folder``, in sorted order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DlforgeError(f"{folder}: no image files ({sorted(IMAGE_SUFFIXES)})")
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        yield [str(p) for p in chunk], [p.read_bytes() for p in chunk]
