"""Crash-safe file operations: atomic writes, locks, staging folders.

Everything is written to a private staging folder first and published with an
atomic ``os.replace``/``os.rename``; readers therefore see a file either whole or
not at all, also after ``kill -9``. Writers of the same dataset serialise on an
``flock`` (released by the kernel when a process dies, so a killed writer never
leaves a stale lock behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from dlforge.core.process import pid_alive

STAGING = ".tmp"
LOCKS = ".locks"
CACHE_VARIABLE = "DLFORGE_CACHE_DIR"  # where dlforge keeps what it can learn again


def user_cache_dir() -> Path:
    """dlforge's cache of what it can always learn again (nothing a result depends on):
    ``$DLFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/dlforge`` (``~/.cache/dlforge``)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlforge"


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on ``path``: exclusive (the file is created if missing), or
    ``shared`` among readers (the file must exist; it is only opened for reading)."""
    path = Path(path)
    if not shared:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb" if shared else "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging_dir(root: Path) -> Iterator[Path]:
    """A private folder under ``root/.tmp`` on the same file system as ``root``.

    It is removed on exit, whether the block succeeded or not. Its name starts
    with the owner's pid so that :func:`clean_stale_staging` can tell a dead
    writer's leftovers from a live one's.
    """
    base = root / STAGING
    # Folders this call creates are removed again, so that a rejected write
    # leaves the store exactly as it was.
    created = [p for p in (base, *base.parents) if not p.exists()]
    path = base / f"{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: in use by another writer
                folder.rmdir()


def clean_stale_staging(root: Path) -> list[str]:
    """Remove staging folders whose writer is gone (killed mid-write); return their names."""
    base = root / STAGING
    removed = []
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, final: Path) -> bool:
    """Move a staged file into place unless ``final`` already exists.

    Used for content-addressed objects: an existing object has the same content,
    so nothing is written. Returns True when the file was published.
    """
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, final)
    fsync_dir(final.parent)
    return True


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as pretty JSON, fsynced (for files inside a staging folder)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed into place when the block
    succeeds, removed when it fails. A reader (or a process killed mid-write) sees the
    old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, obj: object) -> None:
    """Write ``obj`` as pretty JSON with :func:`write_text_atomic` (for stage outputs)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
