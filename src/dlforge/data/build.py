"""Writing and reading snapshot files: de-duplication, split, label numbering.

Pure table functions (``dedupe``, ``number_labels``) are kept apart from the
file I/O (``write_snapshot``, ``read_split``, ``materialise``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file, sha256_file_once
from dlforge.core.io import read_json
from dlforge.data.store import Commit, Store

SPLITS = ("train", "val", "test")
SCHEMA_VERSION = 1  # of the snapshot layout; part of every version id


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
    flat = pc.list_flatten(labels)
    vocab = sorted(pc.unique(flat).to_pylist())
    ids = pc.index_in(flat, value_set=pa.array(vocab, pa.string())).cast(pa.int32())
    offsets = pc.subtract(labels.offsets, labels.offsets[0])
    return vocab, pa.ListArray.from_arrays(offsets, ids)


def example_ids(keys: list[str]) -> pa.Array:
    """A short, stable id per example: the first 16 hex digits of sha256(key)."""
    return pa.array([hashlib.sha256(k.encode()).hexdigest()[:16] for k in keys], pa.string())


def write_snapshot(store: Store, name: str, commits: list[Commit], split, out: Path) -> dict:
    """Write ``train/val/test.parquet`` for ``commits`` to ``out``; return the manifest body."""
    dtype = store.dataset_type(name)
    tables = [store.read_table(c).append_column(
        "commit", pa.array(np.full(c.rows, c.id, dtype=np.int32))) for c in commits]
    table = pa.concat_tables(tables).combine_chunks()
    table, counts = dedupe(table, dtype.example_keys(table))
    keys = dtype.example_keys(table).to_pylist()
    assignment = split.assign(keys)
    labels = dtype.label_lists(table)
    vocab, label_ids = number_labels(labels)
    columns = dtype.snapshot_columns(table, store.path(name) / "objects")
    full = (columns.add_column(0, "example_id", example_ids(keys))
            .append_column("labels", labels).append_column("label_ids", label_ids))
    del keys
    out.mkdir(parents=True)
    files, stats = {}, {}
    for index, split_name in enumerate(SPLITS):
        part = full.filter(pa.array(assignment == index))
        path = out / f"{split_name}.parquet"
        validate_split(part, path)
        pq.write_table(part, path)
        files[path.name] = {"sha256": sha256_file(path), "rows": part.num_rows}
        stats[split_name] = dtype.statistics(part, labels=part.column("labels")).result()
        counts[split_name] = part.num_rows
    multi = any(s["multi_label_rows"] for s in stats.values())
    return {
        "dataset": name, "type": dtype.name, "schema_version": SCHEMA_VERSION,
        "commits": [{k: v for k, v in c.as_dict().items() if k not in ("stats", "notes")}
                    for c in commits],
        "split": {"train": split.train, "val": split.val, "test": split.test, "salt": split.salt},
        "labels": vocab, "multi_label": multi,
        "counts": {"input_rows": sum(c.rows for c in commits), **counts},
        "stats": stats, "files": files,
    }


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
    table = pq.read_table(path)
    validate_split(table, path)
    return table.to_pandas()


def check_file(path: Path, manifest: dict | None = None) -> None:
    """Raise unless snapshot file ``path`` has the sha256 that its folder's
    ``manifest.json`` (or ``manifest``) records for it.

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


def materialise(folder: Path, manifest: dict, out: Path) -> list[Path]:
    """Copy a snapshot's files into ``out`` after checking their hashes.

    For image datasets the images are also written as ``images/<split>/<label>/``
    files, for tools that want files rather than parquet.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name in manifest["files"]:
        check_file(folder / file_name, manifest)
        written.append(Path(shutil.copy2(folder / file_name, out / file_name)))
    written.append(Path(shutil.copy2(folder / "manifest.json", out / "manifest.json")))
    if manifest["type"] == "image_class":
        written += _write_images(out, manifest)
    return written


def _write_images(out: Path, manifest: dict) -> list[Path]:
    written = []
    for split_name in SPLITS:
        table = pq.read_table(out / f"{split_name}.parquet",
                              columns=["image", "image_digest", "format", "labels"])
        for row in table.to_pylist():
            suffix = "." + (row["format"] or "bin").lower().replace("jpeg", "jpg")
            name = row["image_digest"][:16] + suffix
            path = out / "images" / split_name / row["labels"][0] / name
            if not path.resolve().is_relative_to(out.resolve()):  # labels are validated already
                raise DlforgeError(f"label {row['labels'][0]!r} would write outside {out}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(row["image"])
            written.append(path)
    return written
