"""The prediction log: append-only JSON lines, rotated by size, read back for monitoring.

    <folder>/predictions.jsonl                       the file being written
    <folder>/predictions-20261126T223501-0003.jsonl  rotated, never written again
    <folder>/feedback.jsonl                          the feedback log (``name="feedback"``)

Every record is one line written with a single ``write`` on a file opened
with O_APPEND, under an ``flock`` shared by every serving process, so lines
from several workers never interleave and rotation never loses a line. A
writer that finds a line cut short by a killed writer ends it first; a reader
skips such a line and says how many it skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


def input_digest(data: str | bytes) -> str:
    """sha256 of an input (its text or its image bytes), for joining without storing it."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class PredictionLog:
    """Appends records to ``folder/NAME.jsonl``; rotates at ``max_bytes``."""

    def __init__(self, folder: str | Path, max_bytes: int = 64 << 20,
                 name: str = "predictions"):
        if max_bytes < 1024:
            raise ValueError(f"log_max_bytes must be at least 1024 (got {max_bytes})")
        self.folder, self.max_bytes, self.name = Path(folder), max_bytes, name
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.folder / f".{name}.lock"

    def write(self, records: list[dict]) -> None:
        """Append ``records`` (one line each) atomically with respect to other writers."""
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n"
                       for r in records).encode()
        with open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.folder / f"{self.name}.jsonl"
            if current.exists() and current.stat().st_size + len(data) > self.max_bytes:
                self._rotate(current)
            fd = os.open(current, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # end the line a killed writer left unfinished
                os.write(fd, data)
            finally:
                os.close(fd)

    def _rotate(self, current: Path) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        sequence = len(list(self.folder.glob(f"{self.name}-*.jsonl")))
        os.replace(current, self.folder / f"{self.name}-{stamp}-{sequence:04d}.jsonl")


def read_log(folder: str | Path, name: str = "predictions") -> tuple[Iterator[dict], dict]:
    """(records oldest first, stats) — ``stats["skipped"]`` counts damaged lines."""
    folder = Path(folder)
    files = sorted(folder.glob(f"{name}-*.jsonl"), key=lambda p: p.name.split("-")[-1])
    current = folder / f"{name}.jsonl"
    files += [current] if current.is_file() else []
    stats = {"files": len(files), "skipped": 0}

    def records() -> Iterator[dict]:
        for path in files:
            with path.open("rb") as handle:
                for line in handle:
                    try:
                        yield json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        stats["skipped"] += 1

    return records(), stats
