"""``dlforge data verify``: check every stored object against its hash, and that
image snapshots still find the store objects they refer to."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from dlforge.core.hashing import sha256_file
from dlforge.core.io import clean_stale_staging
from dlforge.data.digest import table_digest
from dlforge.data.snapshot import SnapshotStore
from dlforge.data.store import TABLE_SUFFIX, Commit, Store


def verify(snapshots: SnapshotStore, names: list[str] | None = None) -> dict:
    """Re-hash commits, blobs and snapshot files; report problems (never modifies data).

    Staging folders left by killed writers are removed: they were never visible.
    """
    store = snapshots.store
    report = {
        "ok": True,
        "cleaned_staging": clean_stale_staging(store.root) + clean_stale_staging(snapshots.root),
        "datasets": {},
        "problems": [],
    }
    for name in names or store.names():
        report["datasets"][name] = _verify_dataset(store, snapshots, name, report["problems"])
    report["ok"] = not report["problems"]
    return report


def _verify_dataset(store: Store, snapshots: SnapshotStore, name: str, problems: list) -> dict:
    referenced, commits = set(), 0
    for record in sorted((store.path(name) / "commits").glob("*.json")):
        try:
            commit = Commit(**json.loads(record.read_text()))
        except (ValueError, TypeError) as err:
            problems.append(f"{record}: unreadable commit record ({err})")
            continue
        commits += 1
        problems += commit_problems(store, commit, referenced)
    snapshots_checked = 0
    for manifest in snapshots.versions(name):
        snapshots_checked += 1
        folder = snapshots.root / name / manifest["version"]
        for file_name, entry in manifest["files"].items():
            path = folder / file_name
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                problems.append(f"snapshot {name}/{manifest['version']}: {file_name} missing "
                                "or altered")
        # An image snapshot reads its images from the store (checked above, by commit).
        objects = manifest.get("objects")
        if objects and (folder / objects).resolve() != (store.path(name) / "objects").resolve():
            problems.append(f"snapshot {name}/{manifest['version']}: its images are expected "
                            f"at {folder / objects}, which is not the store's objects folder "
                            f"{store.path(name) / 'objects'} (the data folder was split up)")
    stored = {p for p in (store.path(name) / "objects").rglob("*") if p.is_file()}
    return {"commits": commits, "objects": len(stored), "snapshots": snapshots_checked,
            # Left by a commit killed after publishing its data, before its record:
            # harmless, never visible, reused if the same content is committed again.
            "unreferenced_objects": len(stored - referenced)}


def commit_problems(store: Store, commit: Commit, referenced: set | None = None) -> list[str]:
    """What is wrong with a commit's stored objects: its table and the blobs it refers to
    must exist and match their digests (empty: nothing). Adds their paths to ``referenced``."""
    referenced = set() if referenced is None else referenced
    name = commit.dataset
    dtype = store.dataset_type(name)
    path = store.object_path(name, commit.digest, TABLE_SUFFIX)
    referenced.add(path)
    if not path.is_file():
        return [f"{name} commit {commit.id}: object {path} is missing"]
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        return [f"{name} commit {commit.id}: {path} is unreadable ({err})"]
    problems = []
    if table_digest(table, dtype.content_columns) != commit.digest:
        problems.append(f"{name} commit {commit.id}: {path} does not match its digest")
    if dtype.blob_column:
        for digest in set(table.column(dtype.blob_column).to_pylist()):
            blob = store.object_path(name, digest)
            referenced.add(blob)
            if not blob.is_file() or sha256_file(blob) != digest:
                problems.append(f"{name} commit {commit.id}: blob {blob} missing or altered")
    return problems
