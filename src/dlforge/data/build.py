"""Writing snapshot files in bounded memory: de-duplication, split, label numbering.

A snapshot is built in two streaming passes over the selected commits' tables,
read in record batches (:meth:`~dlforge.data.store.Store.iter_table`):

1. every row's example key is reduced to a 128-bit digest and its label string
   to a small code; sorting those (about 20 bytes a row) finds the last row of
   each key (a later commit corrects an earlier one) and the keys whose labels
   differed, exactly as :func:`dedupe` does on a whole table;
2. the kept rows are split by their key's hash (:meth:`SplitRule.assign`) and
   appended to one parquet writer per split, in row groups.

Image bytes are never copied: an image snapshot holds each image's digest, and
readers fetch the bytes from the store's content-addressed objects
(:mod:`dlforge.data.objects`). The file holds the digest as 32 raw bytes and no
example id, which is derived from it (:func:`pack`, :func:`unpack`): about 37
bytes an image, under 1% of a 4 KB JPEG. Pure table functions (``dedupe``,
``number_labels``) are kept apart from the file I/O; :mod:`dlforge.data.fetch`
writes a self-contained copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file, sha256_file_once
from dlforge.core.io import read_json
from dlforge.data.digest import TableDigest
from dlforge.data.objects import FIX as OBJECTS_FIX
from dlforge.data.seal import seal_check
from dlforge.data.stats import Statistics
from dlforge.data.store import TABLE_SUFFIX, Commit, Store

SPLITS = ("train", "val", "test")
# Of the snapshot layout; part of every version id. 2: image snapshots refer to
# the store's objects by digest (1 copied the image bytes into the splits). Readers
# take the digest as hex with a stored example id too (:func:`stored_columns`), as
# the first layout-2 snapshots hold it, so those keep their version ids.
SCHEMA_VERSION = 2
DIGEST = pa.binary(32)  # a store object's sha256, as a split file holds it
ROW_GROUP_ROWS = 65_536  # rows per parquet row group of a split
READ_ROWS = 16_384  # rows of the store's tables read at a time


def dedupe(table: pa.Table, keys: pa.Array) -> tuple[pa.Table, dict]:
    """Keep the last row of each example key (a later commit corrects an earlier one).

    Returns the kept rows (in their original order) and counts of dropped rows
    and of keys whose label differed between copies.
    """
    rows = pa.table({"key": keys, "row": pa.array(np.arange(len(keys))),
                     "labels": table.column("labels")})
    groups = rows.group_by("key", use_threads=False).aggregate(
        [("row", "max"), ("labels", "count_distinct")])
    keep = np.sort(groups.column("row_max").to_numpy())
    conflicts = int(pc.sum(pc.greater(groups.column("labels_count_distinct"), 1)).as_py() or 0)
    counts = {"duplicates_removed": len(keys) - len(keep), "label_conflicts": conflicts}
    return table.take(keep), counts


def number_labels(labels: pa.ListArray) -> tuple[list[str], pa.ListArray]:
    """Merged vocabulary (sorted, so numbering is stable) and each row's label ids."""
    vocab = sorted(pc.unique(pc.list_flatten(labels)).to_pylist())
    return vocab, label_ids(labels, vocab)


def label_ids(labels: pa.ListArray, vocab: list[str]) -> pa.ListArray:
    """Each row's labels as indices into ``vocab`` (which holds every one of them)."""
    ids = pc.index_in(pc.list_flatten(labels), value_set=pa.array(vocab, pa.string()))
    offsets = pc.subtract(labels.offsets, labels.offsets[0])
    return pa.ListArray.from_arrays(offsets, ids.cast(pa.int32()))


def example_ids(keys: list[str]) -> pa.Array:
    """A short, stable id per example: the first 16 hex digits of sha256(key)."""
    return pa.array([hashlib.sha256(k.encode()).hexdigest()[:16] for k in keys], pa.string())


def pack(table: pa.Table, digest_column: str | None) -> pa.Table:
    """A split's rows as its file holds them.

    Where the inputs are store objects named by ``digest_column`` (and the example
    key is that digest), the digest is stored as 32 raw bytes and ``example_id``,
    derived from it, is not stored: a second snapshot of the same images then
    costs little more than one digest an image.
    """
    if not digest_column:
        return table
    hexes = table.column(digest_column).to_pylist()
    raw = pa.array([bytes.fromhex(d) for d in hexes], DIGEST)
    table = table.set_column(table.schema.get_field_index(digest_column), digest_column, raw)
    return table.drop_columns(["example_id"])


def unpack(table: pa.Table | pa.RecordBatch, digest_column: str | None,
           columns: list[str] | None = None) -> pa.Table:
    """The columns a reader asked for (``columns``; None: all, ``example_id`` first)
    from what :func:`pack` stored: hex digests, example ids derived from them."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    if digest_column and digest_column in table.column_names \
            and pa.types.is_fixed_size_binary(table.schema.field(digest_column).type):
        hexes = [d.hex() for d in table.column(digest_column).to_pylist()]
        table = table.set_column(table.schema.get_field_index(digest_column), digest_column,
                                 pa.array(hexes, pa.string()))
        if "example_id" not in table.column_names:
            table = table.add_column(0, "example_id", example_ids(hexes))
    return table if columns is None else table.select(columns)


def stored_columns(path: Path, columns: list[str] | None) -> tuple[list[str] | None, str | None]:
    """What to read of split file ``path`` for ``columns``, and its packed digest column
    (None: the file holds every column as readers see it)."""
    schema = pq.read_schema(path, memory_map=True)
    digest = next((f.name for f in schema if pa.types.is_fixed_size_binary(f.type)), None)
    if columns is None or digest is None:
        return columns, digest
    wanted = [c for c in columns if c != "example_id" or c in schema.names]
    if "example_id" in columns and "example_id" not in schema.names and digest not in wanted:
        wanted.append(digest)
    return wanted, digest


def read_split_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Columns of split file ``path`` (memory-mapped) as readers see them."""
    wanted, digest = stored_columns(path, columns)
    return unpack(pq.read_table(path, columns=wanted, memory_map=True), digest, columns)


def iter_split(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Split file ``path`` in tables of up to ``rows`` rows, as readers see them."""
    wanted, digest = stored_columns(path, columns)
    for batch in pq.ParquetFile(path, memory_map=True).iter_batches(rows, columns=wanted):
        yield unpack(batch, digest, columns)


def _batches(store: Store, commits: list[Commit], check: bool) -> Iterator[pa.Table]:
    """The rows of ``commits`` in order, in batches, with a ``commit`` column.

    With ``check``, each commit's table is hashed on the way and must match its
    digest: the very content that was validated when it was committed.
    """
    for commit in commits:
        dtype = store.dataset_type(commit.dataset)
        digest = TableDigest(dtype.content_columns) if check else None
        for batch in store.iter_table(commit, READ_ROWS, validate=False):
            if digest is not None:
                digest.update(batch)
            yield batch.append_column(
                "commit", pa.array(np.full(batch.num_rows, commit.id, dtype=np.int32)))
        if digest is not None and digest.hexdigest() != commit.digest:
            path = store.object_path(commit.dataset, commit.digest, TABLE_SUFFIX)
            raise DlforgeError(f"commit {commit.id} of {commit.dataset}: {path} does not match "
                               f"its digest (the store is damaged). {OBJECTS_FIX}")


@contextmanager
def lean_arrow_memory() -> Iterator[None]:
    """Use jemalloc (or the system allocator) for Arrow while building: the default,
    mimalloc, keeps what a long stream of batches frees, and memory would grow."""
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def select_rows(batches, dtype) -> tuple[np.ndarray, dict, list[str]]:
    """First pass: which rows to keep (a mask over all rows, in order), the
    de-duplication counts (as :func:`dedupe` gives them) and the label vocabulary.

    Per row, only a 128-bit digest of its key and a code of its label string are
    held (~20 bytes), never the rows themselves.
    """
    digests, codes, label_codes = [], [], {}
    for batch in batches:
        keys = dtype.example_keys(batch).to_pylist()
        raw = b"".join(hashlib.sha256(k.encode()).digest()[:16] for k in keys)
        digests.append(np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2))
        encoded = pc.dictionary_encode(batch.column("labels").combine_chunks())
        mapping = np.array([label_codes.setdefault(s, len(label_codes))
                            for s in encoded.dictionary.to_pylist()], dtype=np.int32)
        codes.append(mapping[encoded.indices.to_numpy(zero_copy_only=False)])
    if not digests:
        return np.zeros(0, bool), {"duplicates_removed": 0, "label_conflicts": 0}, []
    key = np.concatenate(digests)
    code = np.concatenate(codes)
    del digests, codes
    order = np.lexsort((np.arange(len(key)), key[:, 1], key[:, 0]))  # by key, then row
    ordered = key[order]
    first = np.ones(len(key), dtype=bool)  # first row of each key group, in sorted order
    first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    del ordered, key
    last = np.append(first[1:], True)  # the last row of each group: the latest copy
    keep = np.zeros(len(order), dtype=bool)
    keep[order[last]] = True
    group = np.cumsum(first) - 1
    sorted_codes = code[order]
    differs = sorted_codes != sorted_codes[first][group]
    counts = {"duplicates_removed": int(len(order) - last.sum()),
              "label_conflicts": int(np.unique(group[differs]).size)}
    strings = np.array(list(label_codes), dtype=object)[np.unique(code[keep])]
    kept = dtype.label_lists(pa.table({"labels": pa.array(strings.tolist(), pa.string())}))
    return keep, counts, sorted(pc.unique(pc.list_flatten(kept)).to_pylist())


class SplitWriter:
    """One split's parquet file, written in row groups of :data:`ROW_GROUP_ROWS` rows,
    each validated, and its statistics.

    Columns of unique values (``unique``: example ids, texts, digests) are stored
    without a dictionary, and every column is zstd-compressed: an image snapshot
    then costs about 45 bytes an image, well under 1% of a small JPEG.
    """

    def __init__(self, path: Path, statistics: Statistics, unique: tuple[str, ...] = (),
                 digest_column: str | None = None):
        self.path, self.stats, self.unique = path, statistics, unique
        self.digest_column = digest_column
        self.rows, self._pending, self._writer = 0, [], None

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        if sum(t.num_rows for t in self._pending) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self, schema: pa.Schema | None = None) -> None:
        if self._writer is None and (self._pending or schema is not None):
            schema = schema or self._pending[0].schema
            schema = pack(schema.empty_table(), self.digest_column).schema
            dictionary = [f.name for f in schema if f.name not in self.unique]
            self._writer = pq.ParquetWriter(self.path, schema, compression="zstd",
                                            use_dictionary=dictionary)
        if not self._pending:
            return
        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending = []
        validate_split(table, self.path)
        self._writer.write_table(pack(table, self.digest_column), row_group_size=ROW_GROUP_ROWS)
        self.stats.update(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema) -> dict:
        self.flush(schema)
        self._writer.close()
        return {"sha256": sha256_file(self.path), "rows": self.rows}


def write_snapshot(store: Store, name: str, commits: list[Commit], split, out: Path,
                   final: Path | None = None) -> dict:
    """Write ``train/val/test.parquet`` for ``commits`` to ``out``; return the manifest body.

    ``final``: where the folder will be published (``out`` itself by default); an
    image snapshot records the store's objects relative to it.
    """
    with lean_arrow_memory():
        return _write_snapshot(store, name, commits, split, out, final)


def _write_snapshot(store: Store, name: str, commits: list[Commit], split, out: Path,
                    final: Path | None) -> dict:
    dtype = store.dataset_type(name)
    keep, counts, vocab = select_rows(_batches(store, commits, check=True), dtype)
    out.mkdir(parents=True)
    unique = ("example_id", getattr(dtype, "input_column", ""), dtype.input_digest_column or "")
    writers = [SplitWriter(out / f"{s}.parquet", Statistics(dtype.features()), unique,
                           dtype.input_digest_column) for s in SPLITS]
    objects = store.path(name) / "objects"
    schema, offset = None, 0
    for batch in _batches(store, commits, check=False):
        mask = keep[offset:offset + batch.num_rows]
        offset += batch.num_rows
        part = batch.filter(pa.array(mask)) if not mask.all() else batch
        if not part.num_rows:
            continue
        keys = dtype.example_keys(part).to_pylist()
        assignment = split.assign(keys)
        labels = dtype.label_lists(part)
        full = (dtype.snapshot_columns(part, objects)
                .add_column(0, "example_id", example_ids(keys))
                .append_column("labels", labels)
                .append_column("label_ids", label_ids(labels, vocab)))
        schema = full.schema
        for index, writer in enumerate(writers):
            writer.add(full.filter(pa.array(assignment == index)))
    files = {w.path.name: w.close(schema) for w in writers}
    stats = {s: w.stats.result() for s, w in zip(SPLITS, writers, strict=True)}
    manifest = {
        "dataset": name, "type": dtype.name, "schema_version": SCHEMA_VERSION,
        "commits": [{k: v for k, v in c.as_dict().items() if k not in ("stats", "notes")}
                    for c in commits],
        "split": {"train": split.train, "val": split.val, "test": split.test, "salt": split.salt},
        "labels": vocab, "multi_label": any(s["multi_label_rows"] for s in stats.values()),
        "counts": {"input_rows": sum(c.rows for c in commits), **counts,
                   **{s: w.rows for s, w in zip(SPLITS, writers, strict=True)}},
        "stats": stats, "files": files,
    }
    # Relative, so that a copy of the whole data folder (DVC pull, a move) finds them: the
    # store that seals the files (dlforge.data.seal) and the objects an image split names.
    manifest["store"] = os.path.relpath(os.path.abspath(store.root), os.path.abspath(final or out))
    manifest["sealed"] = True  # the store seals it before it is published; readers rely on that
    if dtype.blob_column:
        manifest["objects"] = os.path.relpath(os.path.abspath(objects),
                                              os.path.abspath(final or out))
    return manifest


def _split_schema():
    import pandera.pandas as pda

    from dlforge.data.validation import fullmatch

    return pda.DataFrameSchema(
        {
            "example_id": pda.Column(str, fullmatch(r"[0-9a-f]{16}"), unique=True),
            "labels": pda.Column(object, nullable=False),
            "label_ids": pda.Column(object, nullable=False),
            "commit": pda.Column("int32", pda.Check.gt(0)),
        },
        name="snapshot split",
    )


def validate_split(table: pa.Table, path: Path) -> None:
    """Pandera check of the columns every snapshot split has (on write and on read)."""
    from dlforge.data.validation import validate

    validate(_split_schema(), table.select(["example_id", "labels", "label_ids", "commit"]),
             path, 1, {})


def read_split(path: Path):
    """One split as a pandas DataFrame, checked against its manifest hash and validated."""
    check_file(path)
    table = read_split_table(path)
    validate_split(table, path)
    return table.to_pandas()


def check_file(path: Path, manifest: dict | None = None,
               store_root: Path | None = None) -> None:
    """Raise unless snapshot file ``path`` has the sha256 that its folder's
    ``manifest.json`` (or ``manifest``) records for it, and that the store sealed for
    it (:mod:`dlforge.data.seal`; ``store_root``: the store to ask, the reader's own from
    ``paths.store_dir``; by default the one the manifest names). A manifest that says it
    was sealed is refused where that store holds no seal for it.

    Hashed once per file identity in a process (:func:`~dlforge.core.io.sha256_file_once`),
    so every open checks the bytes that are read, and a repeated open costs a stat.
    """
    listing = path.parent / "manifest.json"
    manifest = read_json(listing) if manifest is None else manifest
    entry = manifest.get("files", {}).get(path.name)
    rebuild = (f"Fix: build it again with `dlforge data snapshot {manifest.get('dataset')}` "
               "and the same --upto/--tag (or `dlforge snapshot experiment=...`): a corrupt "
               "snapshot is rebuilt from the store; `dlforge data verify` lists what is damaged")
    if entry is None:
        raise DlforgeError(f"{path} is not listed in {listing}, so it cannot be checked and is "
                           f"refused. {rebuild}")
    if not path.is_file() or sha256_file_once(path) != entry["sha256"]:
        raise DlforgeError(f"{path} is missing or does not match its manifest hash in {listing}: "
                           f"the snapshot is corrupt and is not used. {rebuild}")
    problem = seal_check(path, manifest, entry["sha256"], store_root)
    if problem:
        raise DlforgeError(f"{path} {problem}: it was changed after it was built from the "
                           f"store and is not used. Fix: delete {path.parent} and build it "
                           f"again from the store with `dlforge data snapshot "
                           f"{manifest.get('dataset')}` and the same --upto/--tag (or "
                           "`dlforge snapshot experiment=...`, which also replaces it)")
