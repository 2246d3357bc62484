"""Training snapshots: a frozen, de-duplicated, split selection of a dataset's commits.

A snapshot's version id is a content hash of the selected commits' digests (in
commit order), the split rule and the snapshot schema version. A selection takes
the commits that were current as of its last one: a commit superseded by a later
commit of its source is left out (:mod:`dlforge.data.supersede`). The same
selection therefore always has the same id and is built once. An example's
split depends only on its own content and the split salt, so it stays in its
split when later commits are added.

Layout under ``paths.snapshot_dir``::

    <dataset>/<version>/train.parquet, val.parquet, test.parquet, manifest.json

A snapshot is built in bounded memory (:mod:`dlforge.data.build`) and read
lazily: :meth:`Snapshot.inputs` memory-maps a split and reads an image's bytes
from the store's objects, by digest, only when it is asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.io import LOCKS, file_lock, fsync_dir, read_json, staging_dir, write_json
from dlforge.data.build import SCHEMA_VERSION, SPLITS, check_file, write_snapshot
from dlforge.data.fetch import materialise
from dlforge.data.reader import Snapshot
from dlforge.data.seal import read_seal, seal_snapshot, store_mismatch
from dlforge.data.store import Commit, Store
from dlforge.data.supersede import current

__all__ = ["Snapshot", "SnapshotRef", "SnapshotStore", "SplitRule", "select_commits",
           "snapshot_damage", "snapshot_version"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitRule:
    """Fractions of examples per split, and the salt of the per-example hash."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    salt: str = "dlforge"

    def __post_init__(self):
        for key in SPLITS:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise DlforgeError(f"split.{key}={getattr(self, key)} is not in [0, 1]")
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise DlforgeError(f"split fractions sum to {self.train + self.val + self.test:g}, "
                               "not 1. Fix: adjust split.train, split.val and split.test")

    def assign(self, keys: list[str]) -> np.ndarray:
        """Split index (0 train, 1 val, 2 test) of each example key.

        Bucket = first 8 bytes of sha256(salt NUL key) as a fraction of 2**64.
        """
        base = hashlib.sha256(self.salt.encode() + b"\0")
        buckets = np.empty(len(keys), dtype=np.float64)
        for i, key in enumerate(keys):
            h = base.copy()
            h.update(key.encode())
            buckets[i] = int.from_bytes(h.digest()[:8], "big") / 2.0**64
        return np.searchsorted([self.train, self.train + self.val], buckets, side="right")


@dataclass(frozen=True)
class SnapshotRef:
    dataset: str
    version: str
    path: Path
    manifest: dict
    reused: bool


def select_commits(store: Store, name: str, upto: int | None = None,
                   tags: dict[str, str] | None = None) -> list[Commit]:
    """Commits of ``name`` current as of ``upto`` (id <= ``upto`` and superseded by none
    of those: :mod:`dlforge.data.supersede`) carrying all ``tags``; never empty.

    Supersession is read from the history up to ``upto`` before the tags filter: a tag
    selects among what the sources held then, never an old content of a source.

    Raises:
        NotFound: when ``upto`` is not a commit, or nothing matches.
    """
    commits = store.commits(name)
    if upto is not None:
        store.commit_record(name, upto)  # an unknown id is an error, not an empty selection
        commits = [c for c in commits if c.id <= upto]
    live = current(commits)
    chosen = [c for c in live if c.matches(tags or {})]
    if not chosen:
        ids = {c.id for c in live}
        have = "; ".join(f"{c.id}: {c.tags}" + ("" if c.id in ids else " (superseded)")
                         for c in commits)
        raise NotFound(f"no commit of dataset '{name}' matches upto={upto} tags={tags or {}} "
                       f"(commits up to it and their tags: {have}). Fix: change --upto/--tag")
    return chosen


def snapshot_version(type_name: str, commits: list[Commit], split: SplitRule) -> str:
    key = {"schema_version": SCHEMA_VERSION, "type": type_name,
           "commits": [c.digest for c in commits], "split": asdict(split)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


class SnapshotStore:
    """Builds, finds and loads the snapshots of a :class:`Store`'s datasets."""

    def __init__(self, root: str | Path, store: Store):
        self.root = Path(root)
        self.store = store

    def versions(self, name: str) -> list[dict]:
        """Manifests of ``name``'s snapshots, oldest first."""
        folder = self.root / name
        manifests = [read_json(p / "manifest.json") for p in folder.iterdir()
                     if (p / "manifest.json").is_file()] if folder.is_dir() else []
        return sorted(manifests, key=lambda m: m["created_at"])

    def resolve(self, name: str, version: str | None = None) -> Path:
        """The folder of a snapshot version (``None``: the latest built)."""
        self.store.path(name)  # validates the name
        known = [m["version"] for m in self.versions(name)]
        if version is None and known:
            version = known[-1]
        if version not in known:
            raise NotFound(f"dataset '{name}' has no snapshot {version!r} in {self.root} "
                           f"(versions: {', '.join(known) or 'none yet'}). "
                           f"Fix: build one with `dlforge data snapshot {name}`")
        return self.root / name / version

    def build(self, name: str, upto: int | None = None, tags: dict[str, str] | None = None,
              split: SplitRule | None = None) -> SnapshotRef:
        """Build the snapshot of a selection, or reuse it when it exists, is intact and
        sealed (:mod:`dlforge.data.seal`).

        An existing snapshot whose files no longer match its manifest or the store's seal
        is rebuilt from the store (whose objects are checked first) and replaces the
        corrupt one; an unsealed one (built before seals) is rebuilt too, and sealed.
        """
        split = split or SplitRule()
        dtype_name = self.store.info(name)["type"]
        commits = select_commits(self.store, name, upto, tags)
        version = snapshot_version(dtype_name, commits, split)
        final = self.root / name / version
        if not final.exists():
            return self._write(name, version, commits, split, created_at=None)
        damage = snapshot_damage(final, self.store.root)
        if damage is None and read_seal(self.store.root, name, version) is not None:
            log.info("snapshot %s/%s exists: reused", name, version)
            return SnapshotRef(name, version, final, read_json(final / "manifest.json"), True)
        if damage is None:
            log.warning("snapshot %s/%s has no seal in the store %s: rebuilding it from the "
                        "store, which replaces it and seals it", name, version, self.store.root)
        else:
            log.warning("snapshot %s/%s is corrupt, rebuilding it from the store: %s", name,
                        version, damage)
        self._check_commits(name, version, commits)
        return self._write(name, version, commits, split, created_at=_created_at(final))

    def _write(self, name: str, version: str, commits: list[Commit], split: SplitRule,
               created_at: str | None) -> SnapshotRef:
        """Write the snapshot in a staging folder, seal its files in the store and publish
        it with a rename, in place of a corrupt or unsealed one if there is one
        (``created_at`` keeps its place among the versions)."""
        final = self.root / name / version
        with staging_dir(self.root) as stage:
            manifest = write_snapshot(self.store, name, commits, split, stage / "snap", final)
            manifest.update(version=version,
                            created_at=created_at or datetime.now(UTC).isoformat())
            write_json(stage / "snap" / "manifest.json", manifest)
            with file_lock(self.root / LOCKS / f"{name}.lock"):
                if (final.exists() and snapshot_damage(final, self.store.root) is None
                        and read_seal(self.store.root, name, version) is not None):
                    # built, or repaired, meanwhile by another process
                    manifest = read_json(final / "manifest.json")
                    return SnapshotRef(name, version, final, manifest, True)
                # Sealed before it is visible: a kill in between leaves a seal that the next
                # build gives again, never a published snapshot without one.
                seal_snapshot(self.store, manifest)
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # corrupt or unsealed: moved into the staging folder
                    os.rename(final, stage / "replaced")
                os.rename(stage / "snap", final)
                fsync_dir(final.parent)
        log.info("snapshot %s/%s built from the store and sealed: %s", name, version,
                 manifest["counts"])
        return SnapshotRef(name, version, final, manifest, False)

    def _check_commits(self, name: str, version: str, commits: list[Commit]) -> None:
        """Refuse to rebuild a snapshot from store objects that are damaged too."""
        from dlforge.data.verify import commit_problems  # verify imports this module

        problems = [p for c in commits for p in commit_problems(self.store, c)]
        if problems:
            raise DlforgeError(f"snapshot {self.root / name / version} is corrupt and cannot be "
                               f"rebuilt: the store is damaged too ({'; '.join(problems)}). "
                               "Fix: restore the store from its DVC remote (`dvc pull`), then "
                               "build the snapshot again; `dlforge data verify` lists every "
                               "problem")

    def load(self, name: str, version: str | None = None) -> Snapshot:
        """Open a snapshot version (``None``: the latest built); its splits are read
        when asked for, checked against the manifest's hashes and this store's seal, and
        validated."""
        return Snapshot.open(self.resolve(name, version), store=self.store.root)

    def fetch(self, name: str, version: str, out: Path) -> list[Path]:
        """Copy a snapshot's files to ``out``, checking each against the manifest and
        this store's seal."""
        folder = self.resolve(name, version)
        return materialise(folder, read_json(folder / "manifest.json"), Path(out),
                           self.store.root)


def snapshot_damage(folder: Path, store_root: Path | None = None) -> str | None:
    """What is wrong with the snapshot in ``folder`` (None: every split matches its manifest
    and, where ``store_root`` (default: the store its manifest names) sealed it, the seal).

    The problem is told without its fix: the caller is the one that rebuilds.
    """
    try:
        manifest = read_json(folder / "manifest.json")
        named = (manifest.get("dataset"), manifest.get("version"))
        if named != (folder.parent.name, folder.name):
            return f"{folder / 'manifest.json'} names snapshot {named[0]}/{named[1]}"
        for split_name in SPLITS:
            check_file(folder / f"{split_name}.parquet", manifest, store_root)
        if store_root is not None:
            return store_mismatch(folder, manifest, store_root)
    except (DlforgeError, OSError, ValueError) as err:
        return str(err).split(" Fix: ")[0]
    return None


def _created_at(folder: Path) -> str | None:
    """A snapshot's creation time, kept when it is rebuilt (None: its manifest is unreadable)."""
    try:
        return read_json(folder / "manifest.json")["created_at"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
