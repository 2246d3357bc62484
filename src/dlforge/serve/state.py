"""What the server's processes share: who answered which request, feedback, workers.

The API process and the inference worker processes are separate; a bandit
that learns from ``POST /feedback`` and a ``GET /info`` that says what the
workers have loaded need one place they all read and write. That place is one
database: by default a SQLite file (WAL, so readers never wait for the writer)
under ``outputs/serve/`` (``state_path``); with ``state_url`` a PostgreSQL
database that several ``dlforge serve`` replicas share, so that feedback given to
one moves the bandit of all (:mod:`dlforge.serve.statedb` holds what differs):

    answers    (request_id, input index) -> model, version, predicted label, time,
               routed (whether the bandit chose the version)
    feedback   one row per (request_id, input index): the true label, the reward,
               whether it was rewarded, time
    rewards    (model, version) -> wins, losses: the bandit's Beta counts
    workers    (server, worker id) -> loaded models, aliases, time of the last report;
               a server is a replica (host:port), and sees only its own workers

Feedback is matched to the answer, scored (1 when the label is the predicted
one, else 0) and added to the version's rewards in one transaction, so two
feedbacks never lose an update and a second feedback for the same input is
refused. Only some feedback is rewarded (added to ``rewards``), so the bandit
cannot be steered by whoever sends feedback:

    routed     an answer to a request that named its version or alias was not
               the bandit's choice: its feedback is kept and logged, not rewarded
    rate       at most ``max_rewards_per_minute`` (per model, from its release)
               rewarded feedbacks per version in the last 60 s; more are kept,
               not rewarded. Counted in the transaction, so it holds across
               every HTTP process and every replica.

Answers are kept for ``window_seconds`` (feedback can only come within that
window), feedback rows as long (at least the 60 s the rate needs);
:meth:`ServingState.forget_old` drops older ones in small batches, by an index
on time. Rewards and workers are kept as long as the database.

The state is bounded in bytes, ``max_bytes`` (``state_max_bytes``): past it the
oldest answers go (:mod:`dlforge.serve.bound`).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from dlforge.serve.bound import ANSWER_BYTES, MAX_BYTES, SizeBound
from dlforge.serve.release import Release
from dlforge.serve.statedb import StateUnavailable, open_database

if TYPE_CHECKING:
    from dlforge.serve.settings import ServeSettings

__all__ = ["FeedbackError", "ServingState", "StateUnavailable"]

log = logging.getLogger(__name__)

# DOUBLE PRECISION: REAL in SQLite, 8 bytes in PostgreSQL (its REAL would round times
# to minutes). {without_rowid}: SQLite's clustered primary keys.
TABLES = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT, idx INTEGER, model TEXT, version TEXT, label TEXT,
    time DOUBLE PRECISION, routed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (request_id, idx)){without_rowid};
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT, idx INTEGER, model TEXT, version TEXT, label TEXT,
    reward DOUBLE PRECISION, time DOUBLE PRECISION, rewarded INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (request_id, idx)){without_rowid};
CREATE TABLE IF NOT EXISTS rewards (
    model TEXT, version TEXT, wins DOUBLE PRECISION, losses DOUBLE PRECISION,
    PRIMARY KEY (model, version)){without_rowid};
CREATE TABLE IF NOT EXISTS workers (
    server TEXT, worker TEXT, pid INTEGER, device TEXT, loaded TEXT, aliases TEXT,
    updated DOUBLE PRECISION, PRIMARY KEY (server, worker))
"""
# Columns a database made by an earlier dlforge lacks. Its answers were not
# marked routed (0: they earn nothing); its feedback was all rewarded.
ADDED = (("answers", "routed", "INTEGER NOT NULL DEFAULT 0"),
         ("feedback", "rewarded", "INTEGER NOT NULL DEFAULT 1"))
INDEXES = """
CREATE INDEX IF NOT EXISTS answers_time ON answers (time);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (time);
CREATE INDEX IF NOT EXISTS feedback_rate ON feedback (model, version, rewarded, time)
"""
RATE_SECONDS = 60.0  # max_rewards_per_minute counts the feedback of this many seconds
PRUNE_BATCH = 5000  # rows deleted per transaction: other writers wait at most this long


class FeedbackError(Exception):
    """Feedback that cannot be taken; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ServingState:
    """The shared serving database at ``location`` (its tables created on first use).

    Open one per process: connections do not cross process boundaries. Threads
    of one process share it; its connections (one for SQLite, a few for
    PostgreSQL) keep their transactions apart.

    Args:
        location: the SQLite file, or a ``postgresql://`` URL.
        window_seconds: how long answers (and feedback) are kept.
        max_rewards_per_minute: model -> rewarded feedbacks per version and
            minute; a model not named gets the release default.
        server: which replica this is (``host:port``): the workers it reports,
            lists and clears are its own.
        max_bytes: the bound on the state's size; past it the oldest answers go.

    Raises:
        DlforgeError: a PostgreSQL database that cannot be reached, or no driver,
            naming ``state_url`` and the fix.
    """

    def __init__(self, location: str | Path, window_seconds: float = 86400.0,
                 max_rewards_per_minute: Mapping[str, float] | None = None,
                 server: str = "", max_bytes: int = MAX_BYTES):
        self.window, self.server = window_seconds, server
        self.limits = dict(max_rewards_per_minute or {})
        self.default_limit = Release.max_rewards_per_minute
        self._db = open_database(location, max_bytes)
        self.location = str(self._db)  # the password redacted: fit for logs and /info
        self.max_bytes = max_bytes
        self._bound = SizeBound(self._db, max_bytes, partial(self._drop_up_to, "answers"),
                                window_seconds)
        # rows deleted per transaction: at most ANSWER_BYTES each, within write_bytes
        writes = self._db.write_bytes
        self._batch = PRUNE_BATCH if writes is None else max(1, min(
            PRUNE_BATCH, writes // ANSWER_BYTES))
        self._create()
        self._bound.fit()

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> ServingState:
        """The state of a server's settings (``state_url``, else ``state_path``;
        ``feedback_window_seconds``, each model's ``max_rewards_per_minute``, ``port``)."""
        limits = {name: spec.max_rewards_per_minute for name, spec in settings.models.items()}
        return cls(settings.state_url or settings.state_path, settings.feedback_window_seconds,
                   limits, server=f"{socket.gethostname()}:{settings.port}",
                   max_bytes=settings.state_max_bytes)

    def _create(self) -> None:
        """Tables, the columns an older database lacks, indexes: in one transaction,
        so processes opening the database together do not race."""
        with self._db.transaction() as db:
            self._db.lock_schema(db)
            workers = self._db.columns(db, "workers")
            if workers and "server" not in workers:  # keyed by worker alone: made again
                db.execute("DROP TABLE workers")  # (it only holds running servers' reports)
            tables = TABLES.format(without_rowid=self._db.without_rowid)
            for statement in tables.split(";"):
                db.execute(statement)
            for table, column, kind in ADDED:
                if column not in self._db.columns(db, table):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            for statement in INDEXES.split(";"):
                db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def record(self, answers: Iterable[tuple]) -> None:
        """Remember answers for feedback.

        Args:
            answers: ``(request_id, index, model, version, label, routed)`` tuples;
                ``routed`` is true only when the bandit strategy chose the version
                (only those answers earn rewards).
        """
        now = time.time()
        rows = [(*a[:5], now, int(bool(a[5]))) for a in answers]
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO answers (request_id, idx, model, version, label, time, routed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, idx) DO UPDATE SET "
                "model = excluded.model, version = excluded.version, label = excluded.label, "
                "time = excluded.time, routed = excluded.routed", rows)
        self._bound.recorded(len(rows))

    def forget_old(self) -> int:
        """Drop answers older than the feedback window, and feedback as old (but
        at least :data:`RATE_SECONDS`); how many rows were dropped."""
        now = time.time()
        return (self._drop_up_to("answers", now - self.window)
                + self._drop_up_to("feedback", now - max(self.window, RATE_SECONDS)))

    def _drop_up_to(self, table: str, cutoff: float) -> int:
        """Delete the rows of ``table`` with a time up to ``cutoff``, oldest first, at
        most :data:`PRUNE_BATCH` per transaction (fewer where the engine bounds what a
        transaction writes), so a long backlog never holds the database for long;
        how many were deleted."""
        dropped = 0
        while True:
            with self._db.transaction() as db:
                count = db.execute(
                    f"DELETE FROM {table} WHERE (request_id, idx) IN (SELECT request_id, "
                    f"idx FROM {table} WHERE time <= ? ORDER BY time LIMIT ?)",
                    (cutoff, self._batch)).rowcount
            dropped += count
            if count < self._batch:
                return dropped

    def feedback(self, request_id: str, label: str, index: int = 0,
                 then: Callable[[dict], None] | None = None) -> dict:
        """Score the true ``label`` of input ``index`` of a request against its answer.

        ``then`` (e.g. writing the feedback log) is called with the result inside
        the transaction: when it raises, the feedback is not taken, so the log
        and the database agree and the client may send it again.

        Returns:
            the answer and the feedback: ``request_id``, ``index``, ``model``,
            ``version``, ``predicted``, ``label``, ``reward`` (1.0 right, 0.0
            wrong) and ``rewarded`` (whether the reward counts for the bandit:
            false for an answer the bandit did not route, or past the version's
            ``max_rewards_per_minute``).

        Raises:
            FeedbackError: 404 for an unknown (expired, or dropped under
                ``max_bytes``) request or input,
                409 when this input already has feedback.
            StateUnavailable: the database cannot be reached (answer 503).
        """
        with self._db.transaction() as db:
            row = db.execute("SELECT model, version, label, routed FROM answers "
                             "WHERE request_id = ? AND idx = ?", (request_id, index)).fetchone()
            if row is None:
                count = db.execute("SELECT count(*) FROM answers WHERE request_id = ?",
                                   (request_id,)).fetchone()[0]
                if count:
                    raise FeedbackError(404, f"request {request_id} has no input {index} "
                                             f"(it had {count}; index counts from 0)")
                raise FeedbackError(404, f"no answer with request_id {request_id!r} in the "
                                         f"last {self.window:g} s (feedback_window_seconds; "
                                         "the oldest go sooner when the state reaches "
                                         "state_max_bytes)")
            model, version, predicted, routed = row
            reward, now = float(label == predicted), time.time()
            rewarded = bool(routed) and self._below_limit(db, model, version, now)
            # the primary key refuses a second feedback, also one given at this moment
            # by another process: it waits for this transaction, then inserts nothing
            if not db.execute("INSERT INTO feedback (request_id, idx, model, version, label, "
                              "reward, time, rewarded) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT (request_id, idx) DO NOTHING",
                              (request_id, index, model, version, label, reward, now,
                               int(rewarded))).rowcount:
                raise FeedbackError(409, f"request {request_id} input {index} already has "
                                         "feedback")
            if rewarded:  # the row is locked until COMMIT: no update is lost
                db.execute("INSERT INTO rewards VALUES (?, ?, ?, ?) ON CONFLICT (model, "
                           "version) DO UPDATE SET wins = rewards.wins + excluded.wins, "
                           "losses = rewards.losses + excluded.losses",
                           (model, version, reward, 1.0 - reward))
            scored = {"request_id": request_id, "index": index, "model": model,
                      "version": version, "predicted": predicted, "label": label,
                      "reward": reward, "rewarded": rewarded}
            if then is not None:
                then(scored)
        return scored

    def _below_limit(self, db, model: str, version: str, now: float) -> bool:
        """Whether ``version`` has had fewer rewarded feedbacks in the last minute than
        its model's ``max_rewards_per_minute`` (index ``feedback_rate``); the count
        holds until the transaction commits (:meth:`Database.lock_version`)."""
        limit = self.limits.get(model, self.default_limit)
        if math.isinf(limit):
            return True
        self._db.lock_version(db, model, version)
        count = db.execute("SELECT count(*) FROM feedback WHERE model = ? AND version = ? "
                           "AND rewarded = 1 AND time > ?",
                           (model, version, now - RATE_SECONDS)).fetchone()[0]
        return count < limit

    def rewards(self, model: str) -> dict[str, tuple[float, float]]:
        """``{version: (wins, losses)}`` of ``model`` from all feedback so far."""
        with self._db.transaction(write=False) as db:
            rows = db.execute("SELECT version, wins, losses FROM rewards WHERE model = ?",
                              (model,)).fetchall()
        return {version: (wins, losses) for version, wins, losses in rows}

    def report_worker(self, worker: str, pid: int, device: str,
                      loaded: list[tuple[str, str]], aliases: dict) -> None:
        """A worker's loaded models (least recently used first) and the aliases it follows."""
        with self._db.transaction() as db:
            db.execute("INSERT INTO workers (server, worker, pid, device, loaded, aliases, "
                       "updated) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server, worker) "
                       "DO UPDATE SET pid = excluded.pid, device = excluded.device, "
                       "loaded = excluded.loaded, aliases = excluded.aliases, "
                       "updated = excluded.updated",
                       (self.server, worker, pid, device, json.dumps(loaded),
                        json.dumps(aliases), time.time()))

    def workers(self) -> list[dict]:
        """The last report of each of this server's workers."""
        with self._db.transaction(write=False) as db:
            rows = db.execute("SELECT worker, pid, device, loaded, aliases, updated "
                              "FROM workers WHERE server = ? ORDER BY worker",
                              (self.server,)).fetchall()
        return [{"worker": w, "pid": pid, "device": device,
                 "loaded": [{"model": m, "version": v} for m, v in json.loads(loaded)],
                 "aliases": json.loads(aliases), "updated": updated}
                for w, pid, device, loaded, aliases, updated in rows]

    def clear_workers(self) -> None:
        """Forget this server's workers of an earlier run (called when it starts)."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM workers WHERE server = ?", (self.server,))
