r"""A text source read in chunks of whole lines, whatever its line endings.

Lines end in ``\n``, ``\r\n`` or a classic Mac ``\r``; a chunk is cut after one,
so a file with no ``\n`` at all is read a chunk at a time like any other. A line
holds at most :data:`MAX_LINE_BYTES` bytes and no NUL byte. Line numbers count
from 1 and name the rows of error messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dlforge.core.errors import InvalidInput
from dlforge.core.limits import MAX_TEXT_CHARS

# Room for a text of MAX_TEXT_CHARS characters (up to 4 bytes each in UTF-8) and the
# rest of its row; a longer line is refused before a parser sees it.
MAX_LINE_BYTES = 1 << 16
CHUNK = 4 << 20  # bytes read at a time where the caller does not say
LONG_FIX = (f"keep each row within {MAX_LINE_BYTES} bytes (a text holds at most "
            f"{MAX_TEXT_CHARS} characters); check that every row ends with a line break")
NUL_FIX = ("remove the NUL bytes; if the file is UTF-16 or binary, save it as UTF-8 text "
           "(e.g. `iconv -f utf-16 -t utf-8 in.csv > out.csv`)")


def line_chunks(source: Path, size: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """``(number of its first line, bytes)``, about ``size`` bytes at a time, each cut
    after a line ending.

    Raises:
        InvalidInput: for a line longer than :data:`MAX_LINE_BYTES` that does not
            fit in a chunk (memory stays bounded whatever the file holds).
    """
    line, rest = 1, b""
    with source.open("rb") as handle:
        while block := handle.read(size):
            block = rest + block
            # A final \r may be the first half of a \r\n: it waits for the next block.
            cut = max(block.rfind(b"\n"), block.rfind(b"\r", 0, len(block) - 1)) + 1
            chunk, rest = block[:cut], block[cut:]
            if chunk:
                yield line, chunk
                line += count_lines(chunk)
            if len(rest) > MAX_LINE_BYTES + 1:  # + 1: a final \r
                raise InvalidInput(source, f"the row is longer than {MAX_LINE_BYTES} bytes",
                                   LONG_FIX, row=line)
    if rest:
        yield line, rest


def count_lines(data: bytes) -> int:
    r"""Line endings in ``data`` (``\r\n`` counts once)."""
    if b"\r" not in data:  # the common case, at a third of the cost
        return data.count(b"\n")
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def check_bytes(source: Path, chunk: bytes, first_line: int) -> None:
    """Refuse a NUL byte or a line longer than :data:`MAX_LINE_BYTES` in ``chunk``, whose
    first line is line ``first_line`` of ``source``."""
    nul = chunk.find(b"\0")
    if nul >= 0:
        raise InvalidInput(source, "a NUL byte (0x00), which text never holds", NUL_FIX,
                           row=first_line + count_lines(chunk[:nul]))
    if len(chunk) > MAX_LINE_BYTES:
        codes = np.frombuffer(chunk, np.uint8)
        ends = codes == ord("\n")
        if b"\r" in chunk:
            ends |= codes == ord("\r")
        ends = np.flatnonzero(ends)
        starts = np.concatenate(([0], ends + 1))
        over = np.flatnonzero(np.append(ends, len(chunk)) - starts > MAX_LINE_BYTES)
        if over.size:
            start = int(starts[over[0]])
            raise InvalidInput(source, f"the row is longer than {MAX_LINE_BYTES} bytes",
                               LONG_FIX, row=first_line + count_lines(chunk[:start]))


def lines(source: Path) -> Iterator[bytes]:
    """The lines of ``source`` with their endings, read a chunk at a time."""
    for _, chunk in line_chunks(source):
        yield from chunk.splitlines(keepends=True)


def line_of_record(text: Path | bytes, record: int) -> int:
    """Line number of the ``record``-th non-blank line of a file or buffer (error path only:
    the lines before it were checked)."""
    numbered = text.splitlines() if isinstance(text, bytes) else lines(text)
    seen = 0
    for line_number, line in enumerate(numbered, start=1):
        seen += bool(line.strip(b"\r\n"))
        if seen == record:
            return line_number
    return record
