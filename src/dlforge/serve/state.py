"""What the server's processes share: who answered which request, feedback, workers.

The API process and the inference worker processes are separate; a bandit
that learns from ``POST /feedback`` and a ``GET /info`` that says what the
workers have loaded need one place they all read and write. That place is one
SQLite database (WAL, so readers never wait for the writer) under
``outputs/serve/``:

    answers    (request_id, input index) -> model, version, predicted label
    feedback   one row per (request_id, input index): the true label, the reward
    rewards    (model, version) -> wins, losses: the bandit's Beta counts
    workers    worker id -> loaded models, aliases, time of the last report

Feedback is matched to the answer, scored (1 when the label is the predicted
one, else 0) and added to the version's rewards in one transaction, so two
feedbacks never lose an update and a second feedback for the same input is
refused. Answers are kept for ``window_seconds`` (feedback can only come
within that window); rewards and workers are kept as long as the database.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT, idx INTEGER, model TEXT, version TEXT, label TEXT, time REAL,
    PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_time ON answers (time);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT, idx INTEGER, model TEXT, version TEXT, label TEXT, reward REAL,
    time REAL, PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rewards (
    model TEXT, version TEXT, wins REAL, losses REAL,
    PRIMARY KEY (model, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY, pid INTEGER, device TEXT, loaded TEXT, aliases TEXT,
    updated REAL);
"""


class FeedbackError(Exception):
    """Feedback that cannot be taken; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ServingState:
    """The shared serving database at ``path`` (created on first use).

    Open one per process: SQLite connections do not cross process boundaries.
    Threads of one process share it; a lock keeps their transactions apart.
    """

    def __init__(self, path: str | Path, window_seconds: float = 86400.0):
        self.path, self.window = Path(path), window_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode; transactions are explicit (BEGIN IMMEDIATE)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable up to the last checkpoint
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def record(self, answers: list[tuple[str, int, str, str, str]]) -> None:
        """Remember ``(request_id, index, model, version, label)`` answers for feedback."""
        now = time.time()
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                           [(*a, now) for a in answers])

    def forget_old(self) -> int:
        """Drop answers older than the feedback window; how many were dropped."""
        with self._transaction() as db:
            return db.execute("DELETE FROM answers WHERE time < ?",
                              (time.time() - self.window,)).rowcount

    def feedback(self, request_id: str, label: str, index: int = 0) -> dict:
        """Score the true ``label`` of input ``index`` of a request against its answer.

        Raises:
            FeedbackError: 404 for an unknown (or expired) request or input,
                409 when this input already has feedback.
        """
        with self._transaction() as db:
            row = db.execute("SELECT model, version, label FROM answers WHERE request_id = ? "
                             "AND idx = ?", (request_id, index)).fetchone()
            if row is None:
                count = db.execute("SELECT count(*) FROM answers WHERE request_id = ?",
                                   (request_id,)).fetchone()[0]
                if count:
                    raise FeedbackError(404, f"request {request_id} has no input {index} "
                                             f"(it had {count}; index counts from 0)")
                raise FeedbackError(404, f"no answer with request_id {request_id!r} in the "
                                         f"last {self.window:g} s (feedback_window_seconds)")
            model, version, predicted = row
            reward = float(label == predicted)
            try:
                db.execute("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (request_id, index, model, version, label, reward, time.time()))
            except sqlite3.IntegrityError:
                raise FeedbackError(409, f"request {request_id} input {index} already has "
                                         "feedback") from None
            db.execute("INSERT INTO rewards VALUES (?, ?, ?, ?) ON CONFLICT (model, version) "
                       "DO UPDATE SET wins = wins + excluded.wins, "
                       "losses = losses + excluded.losses",
                       (model, version, reward, 1.0 - reward))
        return {"request_id": request_id, "index": index, "model": model, "version": version,
                "predicted": predicted, "label": label, "reward": reward}

    def rewards(self, model: str) -> dict[str, tuple[float, float]]:
        """``{version: (wins, losses)}`` of ``model`` from all feedback so far."""
        with self._lock:
            rows = self._db.execute("SELECT version, wins, losses FROM rewards WHERE model = ?",
                                    (model,)).fetchall()
        return {version: (wins, losses) for version, wins, losses in rows}

    def report_worker(self, worker: str, pid: int, device: str,
                      loaded: list[tuple[str, str]], aliases: dict) -> None:
        """A worker's loaded models (least recently used first) and the aliases it follows."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?)",
                       (worker, pid, device, json.dumps(loaded), json.dumps(aliases),
                        time.time()))

    def workers(self) -> list[dict]:
        """Every worker's last report."""
        with self._lock:
            rows = self._db.execute("SELECT worker, pid, device, loaded, aliases, updated "
                                    "FROM workers ORDER BY worker").fetchall()
        return [{"worker": w, "pid": pid, "device": device,
                 "loaded": [{"model": m, "version": v} for m, v in json.loads(loaded)],
                 "aliases": json.loads(aliases), "updated": updated}
                for w, pid, device, loaded, aliases, updated in rows]

    def clear_workers(self) -> None:
        """Forget the workers of an earlier server run (called when a server starts)."""
        with self._transaction() as db:
            db.execute("DELETE FROM workers")

    def _transaction(self):
        return _Transaction(self._db, self._lock)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): one writer at a time."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, error, traceback) -> None:
        try:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.lock.release()
