"""``text_intent``: the reference system's TEXT_INTENT format.

A CSV file without header and two columns by position, ``utterance,labels``;
``labels`` holds one or more labels separated by ``;``. The file is read in
chunks of whole lines (``chunk_size`` bytes), so memory stays flat however large
it is: each chunk is parsed by Arrow, normalised, validated with pandera, hashed
and appended to the staged parquet table. (Arrow's own streaming reader reads
32 blocks ahead, which holds most of a large file in memory.)
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
from dlforge.data.digest import TableDigest
from dlforge.data.stats import Feature, Statistics
from dlforge.data.types.base import LABEL_SEP, DatasetType, Staged, normalise_labels
from dlforge.data.validation import check_source_file, fullmatch, validate

COLUMNS = ("utterance", "labels")
STORED = pa.schema([("utterance", pa.string()), ("labels", pa.string())])
HEADER_WORDS = ({"utterance", "text", "sentence", "query", "input"},
                {"labels", "label", "intent", "intents", "class", "target"})
FIXES = {
    "utterance": "write the utterance in the first column (quote it if it contains a comma)",
    "labels": "give at least one label in the second column; separate several with ';' "
    "and leave no empty part (e.g. 'greet;smalltalk')",
}


class TextIntent(DatasetType):
    name = "text_intent"
    input_column = "utterance"
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
                table = _normalise(table)
                try:
                    validate(schema, table, source, first_row, FIXES)
                except InvalidInput as err:
                    err.row = _line_of_record(source, err.row)
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
        line = _line_of_record(chunk, row.number) + line_offset if not invalid else None
        invalid.append((line, row.actual_columns, row.text))
        return "skip"

    options = {
        # Single-threaded parsing keeps the number of a bad row known.
        "read_options": pcsv.ReadOptions(column_names=list(COLUMNS), use_threads=False),
        # Blank lines are skipped; record numbers are mapped back to file lines
        # when an error is reported (see _line_of_record).
        "parse_options": pcsv.ParseOptions(invalid_row_handler=on_invalid),
        "convert_options": pcsv.ConvertOptions(
            column_types={c: pa.string() for c in COLUMNS},
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    }
    for chunk in _line_chunks(source, chunk_size):
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
        line_offset += chunk.count(b"\n")


def _line_chunks(source: Path, size: int) -> Iterator[bytes]:
    """About ``size`` bytes at a time, always cut after a newline."""
    with source.open("rb") as handle:
        rest = b""
        while block := handle.read(size):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]
        if rest:
            yield rest


_REENCODE = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)"
_CSV_FIX = "each row must be 'utterance,labels'; quote an utterance that contains a comma"


def _raise_invalid_rows(source: Path, invalid: list) -> None:
    if not invalid:
        return
    line, columns, text = invalid[0]
    more = f" (and {len(invalid) - 1} more such rows)" if len(invalid) > 1 else ""
    raise InvalidInput(source, f"{columns} column(s) where 2 are expected: {text[:80]!r}{more}",
                       _CSV_FIX, row=line)


def _token_counts(utterances: pa.ChunkedArray) -> pa.Array:
    # The ASCII kernel is twice as fast and gives the same counts on ASCII text.
    ascii_only = pc.all(pc.string_is_ascii(utterances)).as_py() is not False
    split = pc.ascii_split_whitespace if ascii_only else pc.utf8_split_whitespace
    return pc.list_value_length(split(utterances))


def _looks_like_header(table: pa.Table) -> bool:
    first = [str(table[c][0]).strip().lower() for c in COLUMNS]
    return first[0] in HEADER_WORDS[0] and first[1] in HEADER_WORDS[1]


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
    head = source.open("rb").read(4096)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        raise InvalidInput(source, "the file is UTF-16 or binary, not UTF-8 text", _REENCODE, row=1)


def _line_of_record(text: Path | bytes, record: int) -> int:
    """Line number of the ``record``-th non-blank line of a file or buffer (error path only)."""
    lines = text.splitlines() if isinstance(text, bytes) else text.open("rb")
    seen = 0
    for line_number, line in enumerate(lines, start=1):
        seen += bool(line.strip(b"\r\n"))
        if seen == record:
            return line_number
    return record


def _find_bad_utf8(source: Path) -> tuple[int, str]:
    """Row and byte offset of the first invalid UTF-8 sequence (error path only)."""
    offset = 0
    with source.open("rb") as handle:
        for row, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = line[err.start]
                return row, f"not valid UTF-8 (byte 0x{bad:02x} at offset {offset + err.start})"
            offset += len(line)
    return 1, "not valid UTF-8"
