"""Where the serving state lives: a SQLite file on one machine, PostgreSQL for replicas.

    db = open_database("/srv/outputs/serve/state.db")                # SQLite (WAL)
    db = open_database("postgresql://dlforge@db.internal/dlforge")   # PostgreSQL (psycopg2)
    with db.transaction() as tx:                                     # COMMIT, or ROLLBACK
        tx.execute("SELECT wins FROM rewards WHERE model = ?", (name,)).fetchall()

:mod:`dlforge.serve.state` writes its SQL once, in what both engines accept
(``INSERT ... ON CONFLICT``, row values, ``?`` placeholders, ``DOUBLE PRECISION``);
what differs is here:

                  SQLite                           PostgreSQL
    placeholders  ?                                %s (translated)
    tables        WITHOUT ROWID                    heap tables
    transactions  BEGIN IMMEDIATE: one writer at   BEGIN (read committed): row locks,
                  a time, so what a transaction    and an advisory lock (lock_version)
                  counted holds until it commits   where a count must hold until commit
    schema        one writer: no race             an advisory lock around CREATE/ALTER
    columns       PRAGMA table_info                information_schema.columns
    connections   one per process (the pool's      up to POOL_SIZE per process, made when
                  single slot)                     needed; one that a server restart broke
                                                   is replaced

A database that cannot be reached when the server starts is a :class:`DlforgeError`
naming ``state_url``; later, while serving, it is :class:`StateUnavailable` (a
``ConnectionError``: the request answers 503 and the next one connects again).
"""

from __future__ import annotations

import contextlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.urls import redact

SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://")
POOL_SIZE = 4  # PostgreSQL connections per process at most (one per concurrent transaction)
CONNECT_TIMEOUT = 10  # seconds to reach the PostgreSQL server
LOCK_SPACE = 0x646C66  # advisory lock keys of the serving state: (LOCK_SPACE, hash)
FIX = ("Fix: start the server or correct state_url in conf/serve.yaml (host, port, user, "
       "database; the password from PGPASSWORD, ~/.pgpass or ${oc.env:...}), or "
       "state_url=null for the SQLite file at state_path")


class StateUnavailable(ConnectionError):
    """The state's database cannot be reached now (the request answers 503)."""


def is_url(location: str | Path) -> bool:
    return str(location).startswith(SCHEMES)


def open_database(location: str | Path) -> Database:
    """The database at ``location``: a ``postgresql://`` URL, else a SQLite file path."""
    return PostgreSQL(str(location)) if is_url(location) else SQLite(Path(location))


class Transaction:
    """The statements of one transaction; ``?`` placeholders in every dialect."""

    def __init__(self, cursor, placeholder: str, batch):
        self._cursor, self._placeholder, self._batch = cursor, placeholder, batch

    def execute(self, sql: str, params: Iterable = ()):
        """Run one statement; the cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return self._cursor

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self._batch(self._cursor, self._sql(sql), rows)

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)


class Database(ABC):
    """A small pool of connections to one database, and its dialect (see the module)."""

    placeholder = "?"
    without_rowid = ""
    begin = "BEGIN"
    pool_size = 1
    errors: tuple[type[BaseException], ...] = ()  # the driver's errors a broken link raises

    def __init__(self, location: str):
        self.location = location
        self._idle: list = []
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._lock, self._closed = threading.Lock(), False
        self._idle.append(self._first_connection())

    def __str__(self) -> str:
        return redact(self.location)

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        """A transaction on a connection of the pool: COMMIT at the end, ROLLBACK on an
        error; a connection found broken is dropped, and StateUnavailable raised.
        ``write=False``: one that only reads (it never waits for a writer)."""
        with self._slots:
            db, cursor = self._begin(self.begin if write else "BEGIN")
            try:
                yield Transaction(cursor, self.placeholder, self._executemany)
                cursor.execute("COMMIT")
            except BaseException as err:
                with contextlib.suppress(Exception):  # the error to report is err
                    cursor.execute("ROLLBACK")
                if self._broken(db):
                    self._drop(db)
                    raise self._unavailable(err) from err
                raise
            finally:
                self._give_back(db)

    def lock_schema(self, tx: Transaction) -> None:  # noqa: B027 - SQLite needs none
        """Keep other processes out of the schema until ``tx`` commits (nothing to do
        where a write transaction already excludes every other writer)."""

    def lock_version(self, tx: Transaction, model: str, version: str) -> None:  # noqa: B027
        """Keep other transactions from rewarding ``version`` until ``tx`` commits
        (nothing to do where a write transaction already excludes every other writer)."""

    @abstractmethod
    def columns(self, tx: Transaction, table: str) -> set[str]:
        """The columns ``table`` has (an older database may lack some)."""

    def close(self) -> None:
        """Close the idle connections; those in use close when their transaction ends."""
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for db in idle:
            db.close()

    def _begin(self, begin: str):
        """A connection with a transaction begun; a stale idle one (e.g. the server
        restarted since it was last used) is replaced once."""
        for attempt in (1, 2):
            db = self._take()
            try:
                cursor = db.cursor()
                cursor.execute(begin)
                return db, cursor
            except self.errors as err:
                self._drop(db)
                if attempt == 2:
                    raise self._unavailable(err) from err
            except BaseException:
                self._give_back(db)
                raise
        raise AssertionError("unreachable")

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return self._connect()
        except self.errors as err:
            raise self._unavailable(err) from err

    def _unavailable(self, err: BaseException) -> StateUnavailable:
        return StateUnavailable(f"the serving state {self} cannot be reached: "
                                f"{_first_line(err)}")

    def _give_back(self, db) -> None:
        with self._lock:
            keep = not self._closed and not self._broken(db)
            if keep:
                self._idle.append(db)
        if not keep:
            self._drop(db)

    def _drop(self, db) -> None:
        with contextlib.suppress(Exception):
            db.close()

    def _first_connection(self):
        return self._connect()

    @abstractmethod
    def _connect(self):
        """A new connection to the database."""

    def _broken(self, db) -> bool:
        return False

    @staticmethod
    def _executemany(cursor, sql: str, rows: list[tuple]) -> None:
        cursor.executemany(sql, rows)


class SQLite(Database):
    """A database file (WAL: readers never wait for the writer), one writer at a time."""

    without_rowid = " WITHOUT ROWID"
    begin = "BEGIN IMMEDIATE"  # take the write lock first: a count holds until COMMIT

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path))

    def _connect(self):
        import sqlite3

        # autocommit mode; transactions are explicit (BEGIN IMMEDIATE)
        db = sqlite3.connect(self.location, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable up to the last checkpoint
        return db

    def columns(self, tx: Transaction, table: str) -> set[str]:
        return {row[1] for row in tx.execute(f"PRAGMA table_info({table})").fetchall()}


class PostgreSQL(Database):
    """A PostgreSQL database shared by every replica (driver: psycopg2)."""

    placeholder = "%s"
    pool_size = POOL_SIZE

    def __init__(self, url: str):
        try:
            import psycopg2
        except ImportError:
            raise DlforgeError(
                f"state_url={redact(url)} needs the PostgreSQL driver psycopg2, which is "
                "not installed. Fix: pip install 'dlforge[postgres]', or state_url=null "
                "for the SQLite file at state_path") from None
        self._driver = psycopg2
        self.errors = (psycopg2.OperationalError, psycopg2.InterfaceError)
        super().__init__(url)

    def _first_connection(self):
        try:
            return self._connect()
        except self.errors as err:
            raise DlforgeError(f"state_url={self}: cannot connect to PostgreSQL "
                               f"({_first_line(err)}). {FIX}") from None

    def _connect(self):
        url = re.sub(r"^postgres(ql)?(\+psycopg2)?://", "postgresql://", self.location)
        db = self._driver.connect(url, connect_timeout=CONNECT_TIMEOUT,
                                  application_name="dlforge serve")
        db.autocommit = True  # transactions are explicit (BEGIN ... COMMIT)
        return db

    def _broken(self, db) -> bool:
        return db.closed != 0

    def lock_schema(self, tx: Transaction) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?, 0)", (LOCK_SPACE,))

    def lock_version(self, tx: Transaction, model: str, version: str) -> None:
        # a hash collision only makes two versions wait for each other
        tx.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))",
                   (LOCK_SPACE, f"{model}\t{version}"))

    def columns(self, tx: Transaction, table: str) -> set[str]:
        rows = tx.execute("SELECT column_name FROM information_schema.columns WHERE "
                          "table_schema = current_schema() AND table_name = ?",
                          (table,)).fetchall()
        return {name for (name,) in rows}

    def _executemany(self, cursor, sql: str, rows: list[tuple]) -> None:
        from psycopg2.extras import execute_batch

        execute_batch(cursor, sql, rows, page_size=200)  # 200 rows per round trip


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
