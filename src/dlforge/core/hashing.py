"""File digests, shared by the dataset store, its snapshots and model packages.

Plain standard library, so that importing it pulls in neither pyarrow nor torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_DIGESTS: dict[tuple, str] = {}  # file identity -> its sha256, for this process


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_once(path: Path) -> str:
    """:func:`sha256_file`, computed once per file identity in this process.

    The identity is (path, device, inode, size, mtime_ns, ctime_ns): replacing or
    rewriting the file changes it (ctime even when mtime is set back), so a
    changed file is hashed again while re-opening an unchanged one costs a stat.
    ``dlforge data verify`` hashes with :func:`sha256_file`: it looks for damage
    that no write caused.
    """
    before = _identity(path)
    if before not in _DIGESTS:
        digest = sha256_file(path)
        if _identity(path) != before:  # written to while being hashed: do not remember
            return digest
        _DIGESTS[before] = digest
    return _DIGESTS[before]


def _identity(path: Path) -> tuple:
    info = os.stat(path)
    return (os.path.abspath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
            info.st_ctime_ns)
