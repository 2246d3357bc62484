r"""``text_intent``: the reference system's TEXT_INTENT format.

A CSV file without header and two columns by position, ``utterance,labels``;
``labels`` holds one or more labels separated by ``;``. The file is read in
chunks of whole lines (``chunk_size`` bytes; lines may end in ``\n``, ``\r\n`` or
``\r``, see :mod:`~dlforge.data.types.lines`), so memory stays flat however
large it is: each chunk is checked for NUL bytes and over-long lines, parsed by
Arrow, checked for values spread over several lines and utterances longer than
serving takes, normalised, validated with pandera, hashed and appended to the
staged parquet table. (Arrow's own streaming reader reads 32 blocks ahead,
which holds most of a large file in memory.)
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from dlforge.core.errors import InvalidInput
from dlforge.core.hashing import sha256_file
from dlforge.core.limits import MAX_TEXT_CHARS
from dlforge.data.digest import TableDigest
from dlforge.data.stats import Feature, Statistics
from dlforge.data.types.base import LABEL_SEP, DatasetType, Staged, normalise_labels
from dlforge.data.types.header import looks_like_header
from dlforge.data.types.lines import check_bytes, line_chunks, line_of_record, lines
from dlforge.data.validation import check_source_file, fullmatch, validate

COLUMNS = ("utterance", "labels")
STORED = pa.schema([("utterance", pa.string()), ("labels", pa.string())])
FIXES = {
    "utterance": "write the utterance in the first column (quote it if it contains a comma)",
    "labels": "give at least one label in the second column; separate several with ';' "
    "and leave no empty part (e.g. 'greet;smalltalk')",
    "one_line": "write each row on one line: replace the line breaks inside its quotes "
    "with spaces, and close every quote on the line where it opens",
    "length": f"shorten the utterance to at most {MAX_TEXT_CHARS} characters (the longest "
    "text serving takes, max_input_chars), or split it into several rows",
}


class TextIntent(DatasetType):
    name = "text_intent"
    input_column = "utterance"
    hub_task = "text-classification"
    description = "CSV, no header: utterance,labels (labels ';'-separated, multi-label allowed)"
    content_columns = COLUMNS
    chunk_size = 4 << 20  # bytes of CSV parsed at a time

    def schema(self):
        import pandera.pandas as pda

        return pda.DataFrameSchema(
            {
                "utterance": pda.Column(str, pda.Check.str_length(min_value=1), nullable=False),
                "labels": pda.Column(
                    str,
                    fullmatch(r"[^;]+(;[^;]+)*", error="empty label"),
                    nullable=False,
                ),
            },
            strict=True,
            ordered=True,
            name=self.name,
        )

    def features(self) -> dict[str, Feature]:
        return {
            "chars": lambda t: pc.utf8_length(t.column("utterance")),
            "tokens": lambda t: _token_counts(t.column("utterance")),
        }

    def example_keys(self, table: pa.Table) -> pa.Array:
        return table.column("utterance").combine_chunks()

    def stage(self, source: Path, staging: Path) -> Staged:
        check_source_file(source, expect="a CSV file (utterance,labels)")
        _check_encoding_prefix(source)
        out = staging / "table.parquet"
        digest, stats = TableDigest(COLUMNS), Statistics(self.features())
        schema = self.schema()
        notes: list[str] = []
        invalid: list[tuple[int, int, str]] = []  # (line, columns, text) of malformed rows
        seen = 0  # CSV records read so far, header included
        with pq.ParquetWriter(out, STORED) as writer:
            for table in _tables(source, self.chunk_size, invalid):
                _raise_invalid_rows(source, invalid)
                first_row = seen + 1
                seen += table.num_rows
                if first_row == 1 and _looks_like_header(table):
                    notes.append(f"{source}: row 1 looks like a header "
                                 f"({table['utterance'][0]},{table['labels'][0]}); it was skipped")
                    table, first_row = table.slice(1), 2
                _check_rows(source, table, first_row)
                table = _normalise(table)
                try:
                    validate(schema, table, source, first_row, FIXES)
                except InvalidInput as err:
                    err.row = line_of_record(source, err.row)
                    raise
                writer.write_table(table)
                digest.update(table)
                stats.update(table.set_column(1, "labels", self.label_lists(table)))
            _raise_invalid_rows(source, invalid)
        if stats.rows == 0:
            problem = "the file is empty" if seen == 0 else "the file has no data rows"
            raise InvalidInput(source, problem, "add rows 'utterance,labels'")
        return Staged(
            table=out,
            digest=digest.hexdigest(),
            rows=stats.rows,
            stats=stats.result(),
            source_digest=sha256_file(source),
            notes=notes,
        )


def _tables(source: Path, chunk_size: int, invalid: list) -> Iterator[pa.Table]:
    """Parse ``source`` chunk by chunk; malformed rows are appended to ``invalid``."""
    chunk, line_offset = b"", 0  # the chunk being parsed, and the lines before it

    def on_invalid(row: pcsv.InvalidRow) -> str:
        # Arrow numbers records within the chunk, not counting blank lines.
        line = line_of_record(chunk, row.number) + line_offset if not invalid else None
        invalid.append((line, row.actual_columns, row.text))
        return "skip"

    options = {
        # Single-threaded parsing keeps the number of a bad row known.
        "read_options": pcsv.ReadOptions(column_names=list(COLUMNS), use_threads=False),
        # Blank lines are skipped; record numbers are mapped back to file lines
        # when an error is reported (see line_of_record).
        "parse_options": pcsv.ParseOptions(invalid_row_handler=on_invalid),
        "convert_options": pcsv.ConvertOptions(
            column_types={c: pa.string() for c in COLUMNS},
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    }
    for first_line, chunk in line_chunks(source, chunk_size):
        check_bytes(source, chunk, first_line)
        line_offset = first_line - 1
        try:
            yield pcsv.read_csv(pa.py_buffer(chunk), **options)
        except pa.ArrowInvalid as err:
            if "Empty CSV file" in str(err):  # only blank lines in this chunk
                pass
            elif "UTF8" in str(err) or "UTF-8" in str(err):
                row, problem = _find_bad_utf8(source)
                raise InvalidInput(source, problem, _REENCODE, row=row) from None
            else:
                raise InvalidInput(source, f"cannot parse the CSV ({err})", _CSV_FIX) from None


def _check_rows(source: Path, table: pa.Table, first_row: int) -> None:
    """Refuse a value spread over several lines (a line break inside quotes), then an
    utterance longer than serving takes; ``table`` holds records ``first_row``... ."""
    for column in COLUMNS:
        values = table.column(column)
        if not _any_line_break(values):
            continue
        index = _first(pc.match_substring_regex(values, r"[\r\n]"))
        if index is not None:
            value = values[index].as_py()
            raise InvalidInput(source, f"a line break inside the quoted value {value[:80]!r}; "
                               "utterances and labels are single-line", FIXES["one_line"],
                               row=line_of_record(source, first_row + index), column=column)
    utterances = table.column("utterance")
    if (pc.max(pc.binary_length(utterances)).as_py() or 0) <= MAX_TEXT_CHARS:
        return  # a value has at least as many bytes as characters
    length = pc.utf8_length(pc.utf8_trim_whitespace(utterances))
    index = _first(pc.greater(length, MAX_TEXT_CHARS))
    if index is not None:
        raise InvalidInput(source, f"the utterance holds {length[index]} characters, more "
                           f"than {MAX_TEXT_CHARS}", FIXES["length"],
                           row=line_of_record(source, first_row + index), column="utterance")


def _any_line_break(values: pa.ChunkedArray) -> bool:
    """Whether the bytes that hold ``values`` hold a line break. A scan at memory speed:
    values over several lines are rare, and finding their row takes a slower search."""
    for chunk in values.chunks:
        data = chunk.buffers()[2]  # the values' bytes, one after the other
        if data is not None and (b"\n" in (data := data.to_pybytes()) or b"\r" in data):
            return True
    return False


def _first(mask) -> int | None:
    """The index of the first true value of a boolean array (None: there is none)."""
    index = pc.index(mask, True).as_py()
    return None if index < 0 else index


_REENCODE = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)"
_CSV_FIX = "each row must be 'utterance,labels'; quote an utterance that contains a comma"


def _raise_invalid_rows(source: Path, invalid: list) -> None:
    if not invalid:
        return
    line, columns, text = invalid[0]
    if text.startswith('"') and text.count('"') % 2:  # its closing quote is on a later line
        raise InvalidInput(source, f"the quoted value {text[:80]!r} is not closed on its line; "
                           "utterances and labels are single-line", FIXES["one_line"], row=line)
    more = f" (and {len(invalid) - 1} more such rows)" if len(invalid) > 1 else ""
    raise InvalidInput(source, f"{columns} column(s) where 2 are expected: {text[:80]!r}{more}",
                       _CSV_FIX, row=line)


def _token_counts(utterances: pa.ChunkedArray) -> pa.Array:
    # The ASCII kernel is twice as fast and gives the same counts on ASCII text.
    ascii_only = pc.all(pc.string_is_ascii(utterances)).as_py() is not False
    split = pc.ascii_split_whitespace if ascii_only else pc.utf8_split_whitespace
    return pc.list_value_length(split(utterances))


def _looks_like_header(table: pa.Table) -> bool:
    return looks_like_header([str(table[c][0]) for c in COLUMNS])


def _normalise(table: pa.Table) -> pa.Table:
    """Strip whitespace; put multi-label strings in canonical order (``b;a`` -> ``a;b``)."""
    utterance = pc.utf8_trim_whitespace(table.column("utterance")).combine_chunks()
    labels = table.column("labels").combine_chunks()
    multi = pc.match_substring(labels, LABEL_SEP)
    trimmed = pc.utf8_trim_whitespace(labels)
    if pc.any(multi).as_py():
        rows = np.flatnonzero(multi.to_numpy(zero_copy_only=False))
        canonical = [normalise_labels(v) for v in labels.take(rows).to_pylist()]
        trimmed = pc.replace_with_mask(trimmed, multi, pa.array(canonical, pa.string()))
    return pa.table({"utterance": utterance, "labels": trimmed}, schema=STORED)


def _check_encoding_prefix(source: Path) -> None:
    with source.open("rb") as handle:
        head = handle.read(2)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput(source, "the file is UTF-16, not UTF-8 text", _REENCODE, row=1)


def _find_bad_utf8(source: Path) -> tuple[int, str]:
    """Row and byte offset of the first invalid UTF-8 sequence (error path only)."""
    offset = 0
    for row, line in enumerate(lines(source), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            bad = line[err.start]
            return row, f"not valid UTF-8 (byte 0x{bad:02x} at offset {offset + err.start})"
        offset += len(line)
    return 1, "not valid UTF-8"
