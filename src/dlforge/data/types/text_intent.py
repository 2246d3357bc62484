"""``text_intent``: the reference system's TEXT_INTENT format.

A CSV file without header and two columns by position, ``utterance,labels``;
``labels`` holds one or more labels separated by ``;``. The file is read as a
stream of Arrow record batches, so memory stays flat however large it is: each
batch is normalised, validated with pandera, hashed and appended to the staged
parquet table.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from dlforge.data.digest import TableDigest
from dlforge.data.fs import sha256_file
from dlforge.data.stats import Feature, Statistics
from dlforge.data.types.base import LABEL_SEP, DatasetType, Staged, normalise_labels
from dlforge.data.validation import check_source_file, validate
from dlforge.errors import InvalidInput

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
    description = "CSV, no header: utterance,labels (labels ';'-separated, multi-label allowed)"
    content_columns = COLUMNS
    block_size = 16 << 20  # bytes of CSV per record batch

    def schema(self):
        import pandera.pandas as pda

        return pda.DataFrameSchema(
            {
                "utterance": pda.Column(str, pda.Check.str_length(min_value=1), nullable=False),
                "labels": pda.Column(
                    str,
                    pda.Check.str_matches(r"^[^;]+(;[^;]+)*$", error="empty label"),
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
            "tokens": lambda t: pc.list_value_length(
                pc.utf8_split_whitespace(t.column("utterance"))),
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
        invalid: list[pcsv.InvalidRow] = []
        seen = 0  # CSV records read so far, header included
        with pq.ParquetWriter(out, STORED) as writer:
            for batch in _batches(source, self.block_size, invalid):
                _raise_invalid_rows(source, invalid)
                table = pa.Table.from_batches([batch])
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
            raise InvalidInput(source, "the file has no data rows", "add rows 'utterance,labels'")
        return Staged(
            table=out,
            digest=digest.hexdigest(),
            rows=stats.rows,
            stats=stats.result(),
            source_digest=sha256_file(source),
            notes=notes,
        )


def _batches(source: Path, block_size: int, invalid: list):
    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    try:
        reader = pcsv.open_csv(
            source,
            # Single-threaded parsing keeps row numbers known for bad rows.
            read_options=pcsv.ReadOptions(column_names=list(COLUMNS), block_size=block_size,
                                          use_threads=False),
            # Blank lines are skipped; record numbers are mapped back to file
            # lines when an error is reported (see _line_of_record).
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in COLUMNS},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        yield from reader
    except pa.ArrowInvalid as err:
        if "UTF8" in str(err) or "UTF-8" in str(err):
            row, problem = _find_bad_utf8(source)
            raise InvalidInput(source, problem, _REENCODE, row=row) from None
        if "Empty CSV file" in str(err):
            raise InvalidInput(source, "the file is empty", "add rows 'utterance,labels'") from None
        raise InvalidInput(source, f"cannot parse the CSV ({err})", _CSV_FIX) from None


_REENCODE = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)"
_CSV_FIX = "each row must be 'utterance,labels'; quote an utterance that contains a comma"


def _raise_invalid_rows(source: Path, invalid: list) -> None:
    if not invalid:
        return
    first = invalid[0]
    more = f" (and {len(invalid) - 1} more such rows)" if len(invalid) > 1 else ""
    raise InvalidInput(
        source,
        f"{first.actual_columns} column(s) where 2 are expected: {first.text[:80]!r}{more}",
        _CSV_FIX,
        row=first.number,
    )


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


def _line_of_record(source: Path, record: int) -> int:
    """File line of the ``record``-th non-blank line (error path only)."""
    seen = 0
    with source.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
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
