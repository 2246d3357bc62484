"""The prediction log: append-only JSON lines, rotated by size, read back for monitoring.

    <folder>/predictions.jsonl                                the file being written
    <folder>/predictions-20261126T223501.123456-00000042.jsonl  rotated: time, sequence
    <folder>/feedback.jsonl                                   the feedback log (``name="feedback"``)

Every record is one line written with a single ``write`` on a file opened
with O_APPEND, under an ``flock`` shared by every serving process, so lines
from several workers never interleave and rotation never loses a line. A
writer that finds a line cut short by a killed writer ends it first; a reader
skips such a line and says how many it skipped.

Disk use is bounded: a rotated file's sequence number is one more than the
highest on disk (taken under the lock, so a name is never reused, even within
one second), and only the newest ``keep_files`` rotated files are kept — the
oldest are deleted under the same lock. A log takes at most
``(keep_files + 1) * max_bytes`` bytes. A write that fails (a full disk:
``OSError`` with ``errno.ENOSPC``) raises and takes back what it wrote, so the
log holds each ``write`` whole or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dlforge.core.io import file_lock

if TYPE_CHECKING:
    from dlforge.serve.settings import ServeSettings


def input_digest(data: str | bytes) -> str:
    """sha256 of an input (its text or its image bytes), for joining without storing it."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class PredictionLog:
    """Appends records to ``folder/NAME.jsonl``; rotates at ``max_bytes``, keeps
    ``keep_files`` rotated files."""

    def __init__(self, folder: str | Path, max_bytes: int = 64 << 20,
                 name: str = "predictions", keep_files: int = 20):
        self.folder, self.max_bytes, self.name = Path(folder), max_bytes, name
        self.keep_files = keep_files
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.folder / f".{name}.lock"

    @classmethod
    def from_settings(cls, settings: ServeSettings, name: str = "predictions") -> PredictionLog:
        """The log ``name`` of a server's settings (``log_dir``, ``log_max_bytes``,
        ``log_keep_files``, checked there)."""
        return cls(settings.log_dir, settings.log_max_bytes, name=name,
                   keep_files=settings.log_keep_files)

    def write(self, records: list[dict]) -> None:
        """Append ``records`` (one line each) atomically with respect to other writers.

        Raises:
            OSError: the write failed (``errno.ENOSPC``: the disk is full); none
                of ``records`` is in the log.
        """
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n"
                       for r in records).encode()
        with file_lock(self._lock_path):
            current = self.folder / f"{self.name}.jsonl"
            if current.exists() and current.stat().st_size + len(data) > self.max_bytes:
                self._rotate(current)
            fd = os.open(current, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # end the line a killed writer left unfinished
                _write_all(fd, data, size)
            finally:
                os.close(fd)

    def _rotate(self, current: Path) -> None:
        """Rename the current file to the next sequence number; drop the oldest.
        Called under the lock."""
        rotated = _rotated(self.folder, self.name)
        sequence = max((n for n, _ in rotated if n is not None), default=-1) + 1
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        target = self.folder / f"{self.name}-{stamp}-{sequence:08d}.jsonl"
        os.replace(current, target)
        ours = [path for n, path in rotated if n is not None] + [target]  # oldest first
        for old in ours[:max(len(ours) - self.keep_files, 0)]:
            old.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes, size: int) -> None:
    """Write all of ``data``, or truncate back to ``size`` and raise (the caller
    holds the lock: nobody else appended meanwhile)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]  # a full disk may first write part of it
    except OSError:
        with contextlib.suppress(OSError):  # not a regular file (/dev/full): nothing to undo
            os.ftruncate(fd, size)
        raise


def _sequence(path: Path) -> int | None:
    """The sequence number of a rotated file (its name's last dash-part), if it has one."""
    last = path.stem.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else None


def _rotated(folder: Path, name: str) -> list[tuple[int | None, Path]]:
    """``(sequence, path)`` of the rotated files of log ``name``, oldest first (files
    without a number, not written by this module, first)."""
    found = [(_sequence(p), p) for p in folder.glob(f"{name}-*.jsonl")]
    return sorted(found, key=lambda x: (x[0] is not None, x[0] or 0, x[1].name))


def read_log(folder: str | Path, name: str = "predictions") -> tuple[Iterator[dict], dict]:
    """(records oldest first, stats) — ``stats["skipped"]`` counts damaged lines.

    The files are opened at once, under the writers' lock when there is one, so
    a rotation or deletion while the records are read changes nothing read.
    """
    folder = Path(folder)
    lock_path = folder / f".{name}.lock"
    held = file_lock(lock_path, shared=True) if lock_path.is_file() else contextlib.nullcontext()
    with held:
        files = [p for _, p in _rotated(folder, name)]
        current = folder / f"{name}.jsonl"
        files += [current] if current.is_file() else []
        handles = []
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # deleted by hand meanwhile
                handles.append(path.open("rb"))
    stats = {"files": len(handles), "skipped": 0}

    def records() -> Iterator[dict]:
        try:
            for handle in handles:
                for line in handle:
                    try:
                        yield json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        stats["skipped"] += 1
                handle.close()
        finally:
            for handle in handles:
                handle.close()

    return records(), stats
