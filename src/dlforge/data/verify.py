"""``dlforge data verify``: check every stored object against its hash, every snapshot
file against its manifest and the store's seal (:mod:`dlforge.data.seal`), and that
image snapshots still find the store objects they refer to."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file
from dlforge.core.io import clean_stale_staging
from dlforge.data.digest import table_digest
from dlforge.data.seal import (
    claims_seal,
    file_problem,
    meaning_problem,
    missing_seal,
    read_seal,
    seal_path,
    store_mismatch,
)
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
    snapshots_checked = unsealed = 0
    for manifest in snapshots.versions(name):
        snapshots_checked += 1
        sealed = _snapshot_problems(store, snapshots.root / name / manifest["version"],
                                    manifest, problems)
        unsealed += not sealed
    stored = {p for p in (store.path(name) / "objects").rglob("*") if p.is_file()}
    return {"commits": commits, "objects": len(stored), "snapshots": snapshots_checked,
            # Built before seals (or the store came without them): checked against their
            # manifests only; `dlforge data snapshot` rebuilds and seals them.
            "unsealed_snapshots": unsealed,
            # Left by a commit killed after publishing its data, before its record:
            # harmless, never visible, reused if the same content is committed again.
            "unreferenced_objects": len(stored - referenced)}


def _snapshot_problems(store: Store, folder: Path, manifest: dict, problems: list) -> bool:
    """Add what is wrong with the snapshot in ``folder`` to ``problems``: its files must
    match its manifest and the store's seal; return whether the store sealed it."""
    name, version = manifest["dataset"], manifest["version"]
    where = f"snapshot {name}/{version}"
    try:
        record = read_seal(store.root, name, version)
    except DlforgeError as err:
        problems.append(f"{where}: {str(err).split(' Fix: ')[0]}")
        record = None
    if record is None and claims_seal(manifest):
        problems.append(f"{where}: {missing_seal(manifest, store.root)}")
    if record is not None and (problem := meaning_problem(record, manifest)):
        problems.append(f"{where}: {problem} ({seal_path(store.root, name, version)})")
    for file_name, entry in manifest["files"].items():
        path = folder / file_name
        digest = sha256_file(path) if path.is_file() else None
        if digest != entry["sha256"]:
            problems.append(f"{where}: {file_name} missing or altered")
        elif record is not None and (problem := file_problem(record, manifest, file_name,
                                                             digest)):
            problems.append(f"{where}: {file_name} {problem} "
                            f"({seal_path(store.root, name, version)}): replaced since it was "
                            "built from the store")
    # An image snapshot reads its images from the store (checked above, by commit).
    objects = manifest.get("objects")
    if objects and (folder / objects).resolve() != (store.path(name) / "objects").resolve():
        problems.append(f"{where}: its images are expected at {folder / objects}, which is not "
                        f"the store's objects folder {store.path(name) / 'objects'} (the data "
                        "folder was split up)")
    if record is not None and (problem := store_mismatch(folder, manifest, store.root)):
        problems.append(f"{where}: {problem}")
    return record is not None


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
