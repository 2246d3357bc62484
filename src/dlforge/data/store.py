"""The dataset store: named datasets, their immutable commits, content-addressed objects.

Layout under ``paths.store_dir``::

    <name>/dataset.json               type and creation time
    <name>/commits/000001.json        one immutable record per commit
    <name>/objects/ab/cdef....parquet committed tables, named by their content digest
    <name>/objects/ab/cdef...         blobs a table refers to (image bytes), by sha256
    .locks/<name>.lock                writers of one dataset take turns here
    .tmp/<pid>-<uuid>/                private staging folders

A commit is validated completely in a staging folder before anything is
published; objects are published first (re-publishing identical content writes
nothing), then the commit record, atomically and under the dataset's lock, so
that ids are sequential and a reader never sees a commit whose data is missing.

A commit of a source in mode ``replace`` (the default) supersedes that source's
earlier commits, ``append`` adds to them (:mod:`dlforge.data.supersede`); the
record names what it supersedes and how many examples it added and removed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dlforge import __version__
from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.io import LOCKS, file_lock, fsync_dir, publish, read_json, staging_dir, write_json
from dlforge.core.names import NAME
from dlforge.data.supersede import check_mode, example_delta, holding, key_digests, replaced
from dlforge.data.types import DatasetType, Staged, get_type

log = logging.getLogger(__name__)

TABLE_SUFFIX = ".parquet"


@dataclass(frozen=True)
class Commit:
    """One immutable commit of a dataset (its record in ``commits/``)."""

    dataset: str
    id: int
    message: str
    tags: dict[str, str]
    created_at: str
    digest: str  # content digest of the committed table = its object name
    rows: int
    source: dict  # {"path": ..., "digest": ...} as given by the user
    stats: dict
    notes: list[str] = field(default_factory=list)
    dlforge_version: str = __version__
    # Ids of the commits of the same source this one replaces: a selection that takes it
    # leaves them out. Absent from records written before sources were replaced.
    supersedes: list[int] = field(default_factory=list)
    # Examples added and removed compared with what it supersedes ({"added", "removed"});
    # None in records written before deltas were recorded.
    delta: dict | None = None

    def matches(self, tags: dict[str, str]) -> bool:
        """True when the commit carries every one of ``tags``."""
        return all(self.tags.get(k) == v for k, v in tags.items())

    def as_dict(self) -> dict:
        return asdict(self)


def parse_tags(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; a malformed item is an error naming it."""
    tags = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DlforgeError(f"tag {item!r} is not key=value. Fix: write e.g. --tag source=crm")
        tags[key.strip()] = value.strip()
    return tags


class Store:
    """A dataset store rooted at a folder (``paths.store_dir``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- reading -------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "dataset.json").is_file())

    def path(self, name: str) -> Path:
        """The folder of dataset ``name``; rejects names that could leave the store."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise DlforgeError(
                f"invalid dataset name {name!r}: use letters, digits, '.', '_' and '-', starting "
                "with a letter or digit (no '/' or '..'). Fix: pick a name like 'clinc150'"
            )
        return self.root / name

    def info(self, name: str) -> dict:
        """``dataset.json`` of ``name``.

        Raises:
            NotFound: listing the datasets that exist.
        """
        meta = self.path(name) / "dataset.json"
        if not meta.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise NotFound(
                f"no dataset '{name}' in {self.root} (datasets: {known}). "
                f"Fix: create it with `dlforge data create {name} --type TYPE --source PATH`"
            )
        return read_json(meta)

    def dataset_type(self, name: str) -> DatasetType:
        return get_type(self.info(name)["type"])

    def commits(self, name: str) -> list[Commit]:
        """All commits of ``name``, oldest first."""
        self.info(name)
        folder = self.path(name) / "commits"
        return [Commit(**read_json(p)) for p in sorted(folder.glob("*.json"))]

    def commit_record(self, name: str, commit_id: int) -> Commit:
        for commit in self.commits(name):
            if commit.id == commit_id:
                return commit
        ids = [c.id for c in self.commits(name)]
        raise NotFound(f"dataset '{name}' has no commit {commit_id} (commits: {_span(ids)}). "
                       f"Fix: see `dlforge data show {name}`")

    def object_path(self, name: str, digest: str, suffix: str = "") -> Path:
        return self.path(name) / "objects" / digest[:2] / (digest[2:] + suffix)

    def read_table(self, commit: Commit):
        """The committed table, validated against its type's schema on the way in."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from dlforge.data.validation import validate

        path = self.object_path(commit.dataset, commit.digest, TABLE_SUFFIX)
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            raise DlforgeError(f"commit {commit.id} of {commit.dataset}: {path} is unreadable "
                               f"({err}). Fix: run `dlforge data verify` and restore the store "
                               "from its DVC remote (`dvc pull`)") from None
        validate(self.dataset_type(commit.dataset).schema(), table, path, 1, {})
        return table

    def iter_table(self, commit: Commit, batch_rows: int = 65_536, validate: bool = True):
        """The committed table in batches of up to ``batch_rows`` rows (``pa.Table``s),
        each validated against its type's schema unless ``validate`` is False; memory
        stays flat however large the commit is."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from dlforge.data.validation import validate as check

        path = self.object_path(commit.dataset, commit.digest, TABLE_SUFFIX)
        schema = self.dataset_type(commit.dataset).schema() if validate else None
        first_row = 1
        try:
            for batch in pq.ParquetFile(path, memory_map=True).iter_batches(batch_rows):
                table = pa.Table.from_batches([batch])
                if schema is not None:
                    check(schema, table, path, first_row, {})
                first_row += table.num_rows
                yield table
        except (pa.ArrowException, OSError) as err:
            raise DlforgeError(f"commit {commit.id} of {commit.dataset}: {path} is unreadable "
                               f"({err}). Fix: run `dlforge data verify` and restore the store "
                               "from its DVC remote (`dvc pull`)") from None

    # -- writing -------------------------------------------------------------

    def create(self, name: str, type_name: str, source: str | Path, message: str = "",
               tags: dict[str, str] | None = None) -> Commit:
        """Create dataset ``name`` of type ``type_name`` whose first commit is ``source``."""
        dtype = get_type(type_name)
        final = self.path(name)
        if final.exists():
            raise DlforgeError(f"dataset '{name}' already exists in {self.root}. "
                               f"Fix: add data with `dlforge data commit {name} --source PATH`")
        with staging_dir(self.root) as stage:
            staged = dtype.stage(Path(source), stage)
            delta = {"added": len(key_digests(dtype, _staged_tables(staged))), "removed": 0}
            new = stage / "dataset"
            (new / "commits").mkdir(parents=True)
            write_json(new / "dataset.json", {"name": name, "type": type_name,
                                              "created_at": _now(), "schema_version": 1})
            self._publish_objects(new, staged)
            with file_lock(self._lock(name)):
                if final.exists():
                    raise DlforgeError(f"dataset '{name}' was created meanwhile by another "
                                       f"process. Fix: use `dlforge data commit {name}`")
                commit = self._record(name, 1, staged, source, message, tags, [], delta)
                write_json(new / "commits" / _commit_file(1), commit.as_dict())
                os.rename(new, final)
                fsync_dir(self.root)
        log.info("created dataset %s (%s) with commit 1: %d rows", name, type_name, commit.rows)
        return commit

    def commit(self, name: str, source: str | Path, message: str = "",
               tags: dict[str, str] | None = None, mode: str = "replace") -> Commit:
        """Append a commit of ``source`` to dataset ``name``; returns its record.

        Args:
            mode: ``replace`` supersedes the current commits of the same source path,
                ``append`` adds to them (:mod:`dlforge.data.supersede`).
        """
        return self._append(name, source, message, tags, check_mode(mode), reuse=False)[0]

    def ingest(self, name: str, type_name: str, source: str | Path, message: str = "",
               tags: dict[str, str] | None = None, mode: str = "replace") -> tuple[Commit, bool]:
        """Commit ``source`` unless the dataset already holds it as it is now.

        Creates the dataset when it does not exist. Returns the commit holding
        the source and whether it was created now (False: it already existed).
        A changed source supersedes its earlier commits in mode ``replace``.
        """
        check_mode(mode)
        if not (self.path(name) / "dataset.json").is_file():
            return self.create(name, type_name, source, message, tags), True
        if self.info(name)["type"] != type_name:
            raise DlforgeError(f"dataset '{name}' has type {self.info(name)['type']}, not "
                               f"{type_name}. Fix: correct dataset.type or use another name")
        return self._append(name, source, message, tags, mode, reuse=True)

    def _append(self, name, source, message, tags, mode: str, reuse: bool
                ) -> tuple[Commit, bool]:
        dtype = self.dataset_type(name)
        folder = self.path(name)
        with staging_dir(self.root) as stage:
            staged = dtype.stage(Path(source), stage)
            new_keys = key_digests(dtype, _staged_tables(staged))
            # Objects first, outside the lock: they are content-addressed, so a
            # concurrent writer publishing the same content is harmless.
            self._publish_objects(folder, staged)
            with file_lock(self._lock(name)):
                existing = self.commits(name)
                held = holding(existing, source, staged.source_digest, mode) if reuse else None
                if held is not None:
                    log.info("%s is already commit %d of %s", source, held.id, name)
                    return held, False
                old = replaced(existing, source, mode)
                delta = example_delta(new_keys, key_digests(dtype, self._tables(old)))
                commit_id = max((c.id for c in existing), default=0) + 1
                commit = self._record(name, commit_id, staged, source, message, tags,
                                      [c.id for c in old], delta)
                record = stage / "commit.json"
                write_json(record, commit.as_dict())
                os.link(record, folder / "commits" / _commit_file(commit.id))  # fails if taken
                fsync_dir(folder / "commits")
        log.info("dataset %s: commit %d, %d rows", name, commit.id, commit.rows)
        return commit, True

    def _tables(self, commits: list[Commit]):
        """The tables of ``commits`` in batches, unvalidated (they were when committed)."""
        for commit in commits:
            yield from self.iter_table(commit, validate=False)

    def _publish_objects(self, folder: Path, staged: Staged) -> None:
        objects = folder / "objects"
        new = sum(publish(path, objects / d[:2] / d[2:]) for d, path in staged.blobs.items())
        d = staged.digest
        new += publish(staged.table, objects / d[:2] / (d[2:] + TABLE_SUFFIX))
        if not new:
            log.info("content already stored (object %s): no new data written", d[:12])

    def _record(self, name, commit_id, staged: Staged, source, message, tags,
                supersedes: list[int], delta: dict) -> Commit:
        return Commit(
            dataset=name, id=commit_id, message=message or "", tags=dict(tags or {}),
            created_at=_now(), digest=staged.digest, rows=staged.rows,
            source={"path": str(source), "digest": staged.source_digest},
            stats=staged.stats, notes=staged.notes, supersedes=supersedes, delta=delta,
        )

    def locked(self, name: str):
        """Hold dataset ``name``'s writer lock (commits, snapshot seals) in a ``with`` block."""
        return file_lock(self._lock(name))

    def _lock(self, name: str) -> Path:
        return self.root / LOCKS / f"{name}.lock"


def _staged_tables(staged: Staged):
    """A staged table in batches, before it is published."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(staged.table).iter_batches(65_536):
        yield pa.Table.from_batches([batch])


def _commit_file(commit_id: int) -> str:
    return f"{commit_id:06d}.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _span(ids: list[int]) -> str:
    return f"{ids[0]}..{ids[-1]}" if ids else "none"
