"""The serving state's bound in bytes, ``max_bytes`` (``state_max_bytes``).

However fast answers come, the state stays under its bound. After a write,
:meth:`SizeBound.recorded` reads the size (:meth:`Database.size`; SQLite on every
write, two header reads; PostgreSQL, a scan, after each 1/CHECK_SHARE of the bound's
worth of answers a process records) with what every process has committed. Past the
limit (the bound less the WAL's share) it takes the time of the oldest answers whose
share of the size brings it 1/HEADROOM of the bound below the limit, and deletes the
answers up to that time. A time, not a count: processes that find the state over at
once delete the same answers, not twice as many. Only answers go; feedback given and
rewards stay, and feedback for a dropped answer is refused as for an expired one
(404). A database already over the bound when it is opened is pruned then, and a
SQLite file compacted (:meth:`SizeBound.fit`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dlforge.serve.statedb import StateUnavailable

if TYPE_CHECKING:
    from dlforge.serve.statedb import Database

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 2**20  # state_max_bytes of conf/serve.yaml
HEADROOM = 16  # a prune takes the size 1/16 of max_bytes below its limit
CHECK_SHARE = 32  # a size that is slow to read is read after 1/32 of max_bytes of answers...
ANSWER_BYTES = 256  # ...counted at about this many bytes each (PostgreSQL: 241)


class SizeBound:
    """Keeps the state in ``database`` under ``max_bytes`` (see the module).

    Args:
        database: the state's database.
        max_bytes: the bound.
        drop: deletes the answers up to a time, in small batches.
        window: ``feedback_window_seconds``, named when answers are dropped sooner.
    """

    def __init__(self, database: Database, max_bytes: int, drop: Callable[[float], int],
                 window: float):
        self._db, self._drop, self._window = database, drop, window
        self.max_bytes, self._limit = max_bytes, max_bytes - database.reserved
        self._every = 0 if database.size_is_cheap else max(
            1, max_bytes // CHECK_SHARE // ANSWER_BYTES)
        self._unchecked, self._counting, self._told = 0, threading.Lock(), False

    def fit(self) -> None:
        """Bring a database that is already over the bound (a lower ``max_bytes``, or
        one an earlier dlforge let grow) under it: prune, then compact a SQLite file."""
        self.enforce()
        try:
            given = self._db.compact()
        except StateUnavailable as err:  # its free pages are still reused: it grows no more
            log.warning("cannot compact the serving state: %s", err)
            return
        if given:
            log.warning("compacted the serving state %s by %d bytes to stay under "
                        "state_max_bytes=%d", self._db, given, self.max_bytes)

    def recorded(self, added: int) -> None:
        """After ``added`` answers were recorded: hold the bound, when it is time to
        read the size."""
        if self._due(added):
            self.enforce()

    def _due(self, added: int) -> bool:
        """Whether to read the size after ``added`` more answers (see the module)."""
        if not self._every:
            return True
        with self._counting:
            self._unchecked += added
            if self._unchecked < self._every:
                return False
            self._unchecked = 0
        return True

    def enforce(self) -> None:
        """Read the size (with what every process has committed) and, over the limit,
        drop the oldest answers."""
        with self._db.transaction(write=False) as db:
            cutoff = self._cutoff(db)
        if cutoff is not None:
            self._prune(cutoff)

    def _cutoff(self, db) -> float | None:
        """The time up to which the oldest answers go to bring the state 1/HEADROOM of
        ``max_bytes`` below its limit; None while it is within the limit (or holds
        no answers to drop)."""
        used = self._db.size(db)
        if used <= self._limit:
            return None
        count = db.execute("SELECT count(*) FROM answers").fetchone()[0]
        target = self._limit - self.max_bytes // HEADROOM
        drop = min(count, math.ceil(count * (used - target) / used))
        if not drop:
            return None
        return db.execute("SELECT time FROM answers ORDER BY time LIMIT 1 OFFSET ?",
                          (drop - 1,)).fetchone()[0]

    def _prune(self, cutoff: float) -> None:
        """Drop the answers up to ``cutoff``; say so once (per process)."""
        if not self._told:
            self._told = True
            log.warning("the serving state %s reached state_max_bytes=%d (conf/serve.yaml): "
                        "the oldest answers are dropped (the first were %.0f s old, "
                        "feedback_window_seconds=%g); feedback for them answers 404",
                        self._db, self.max_bytes, time.time() - cutoff, self._window)
        self._drop(cutoff)
