"""A source means its current content: which commits a new commit of a source replaces.

A dataset's commits come from sources, each known by its path as written
(normalised: ``./data/raw/a.csv`` and ``data/raw/a.csv`` are one source). A
source is committed in one of two modes:

    replace   (the default) the new commit *supersedes* the source's commits that
              are still current: a snapshot of it, or of any later commit, leaves
              them out. The rows deleted from the file leave training.
    append    the new commit adds to what the source gave before (data that
              arrives in parts, one file path re-used for each part).

The commit records the ids it supersedes (``supersedes``), so selection reads
the history, never the paths: ``--upto`` an earlier commit selects what was
current then, with the version id it had, and a store written before this
record existed (no ``supersedes``) selects exactly as it always did.

A commit also records what it changed (``delta``): the examples added and
removed compared with the commits it supersedes, by example identity (the key
the dataset type defines: an utterance, an image's digest), not by row, so a
re-sorted file or a repeated row adds nothing. Keys are held as 64-bit digests
(8 bytes an example); two keys collide with a probability under 1e-7 at a
million examples, which could only shift a count.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dlforge.core.errors import DlforgeError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from dlforge.data.store import Commit
    from dlforge.data.types import DatasetType

MODES = ("replace", "append")


def check_mode(mode: str, key: str = "mode") -> str:
    """``mode`` when it is one of :data:`MODES`; else an error naming ``key``."""
    if mode not in MODES:
        raise DlforgeError(f"{key}={mode!r} is not a source mode. Fix: set {key} to replace "
                           "(a changed source supersedes its earlier commits; the default) "
                           "or append (each new content adds to the earlier ones)")
    return mode


def source_key(path) -> str:
    """The identity of a source: its path as written, normalised."""
    return os.path.normpath(str(path))


def current(commits: list[Commit]) -> list[Commit]:
    """The commits none of ``commits`` supersedes (oldest first): the dataset's content as
    of the last of them."""
    gone = {i for c in commits for i in c.supersedes}
    return [c for c in commits if c.id not in gone]


def replaced(commits: list[Commit], source, mode: str) -> list[Commit]:
    """The current commits that a new commit of ``source`` in ``mode`` supersedes."""
    if check_mode(mode) == "append":
        return []
    key = source_key(source)
    return [c for c in current(commits) if source_key(c.source["path"]) == key]


def holding(commits: list[Commit], source, source_digest: str, mode: str) -> Commit | None:
    """The current commit that already holds ``source`` as it is now (None: commit it).

    In replace mode, that is the source's one current commit when it has this content.
    A source with no commit of its own path (a moved project, a path written another
    way) is held by any current commit of the same content, as in append mode.
    """
    own = replaced(commits, source, mode)
    if own:
        return own[0] if len(own) == 1 and own[0].source["digest"] == source_digest else None
    return next((c for c in current(commits) if c.source["digest"] == source_digest), None)


def key_digests(dtype: DatasetType, tables: Iterable[pa.Table]) -> np.ndarray:
    """The distinct example keys of ``tables`` as sorted 64-bit digests."""
    import numpy as np

    parts = [np.zeros(0, dtype=np.uint64)]
    for table in tables:
        keys = dtype.example_keys(table).to_pylist()
        raw = b"".join(hashlib.sha256(k.encode()).digest()[:8] for k in keys)
        parts.append(np.frombuffer(raw, dtype=np.uint64))
    return np.unique(np.concatenate(parts))


def example_delta(new: np.ndarray, old: np.ndarray) -> dict[str, int]:
    """Examples of ``new`` that ``old`` lacks (added), and the reverse (removed)."""
    import numpy as np

    return {"added": int(np.setdiff1d(new, old, assume_unique=True).size),
            "removed": int(np.setdiff1d(old, new, assume_unique=True).size)}
