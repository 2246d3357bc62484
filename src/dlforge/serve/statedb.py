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
    size          pages in use: (page_count -      answers x their measured size (each
                  freelist_count) x page_size,     row's pg_column_size + ROW_OVERHEAD):
                  two header reads, cheap on       a scan of the table, so taken only
                  every write                      now and then (size_is_cheap)
    WAL           emptied by the writer that       (the server's own)
                  takes it past 1/WAL_SHARE of
                  state_max_bytes (_committed)

The size is what ``state_max_bytes`` bounds (:mod:`dlforge.serve.state` drops the
oldest answers when it is reached). SQLite reuses the pages that deleted rows free
before it grows the file, so a file whose pages in use are kept under a limit
passes it by one transaction at most; ``reserved`` is the part of the bound kept
for that and for the WAL. A file already larger (a lower bound, an earlier
dlforge) is rewritten by :meth:`SQLite.compact`. PostgreSQL reuses the space of
deleted rows once autovacuum has passed; there the bound holds the answers' own
bytes, not the dead rows between two vacuums.

A database that cannot be reached when the server starts is a :class:`DlforgeError`
naming ``state_url``; later, while serving, it is :class:`StateUnavailable` (a
``ConnectionError``: the request answers 503 and the next one connects again).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.urls import redact

SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://")
WAL_SHARE = 16  # SQLite's WAL is emptied past 1/16 of state_max_bytes...
WAL_PAGES = 1000  # ...or SQLite's default of 1000 pages, whichever is smaller
CHECKPOINT_SECONDS = 5  # how long a writer tries again a checkpoint that reports busy
# PostgreSQL bytes per answer outside its row (pg_column_size): its line pointer, its
# entries in the primary key and time indexes, and B-tree page slack (measured on
# PostgreSQL 16: 241 bytes on disk per answer of 100 row bytes, 32-character ids)
ROW_OVERHEAD = 144
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


def open_database(location: str | Path, max_bytes: int | None = None) -> Database:
    """The database at ``location``: a ``postgresql://`` URL, else a SQLite file path
    (its WAL kept to its share of ``max_bytes``, see the module)."""
    if is_url(location):
        return PostgreSQL(str(location))
    return SQLite(Path(location), max_bytes)


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
    size_is_cheap = False  # whether size() may be read on every write
    reserved = 0  # bytes of the bound kept for what size() does not count (SQLite's WAL)
    write_bytes: int | None = None  # the most one transaction should write (None: no limit)
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
            else:
                if write:
                    self._committed(db)
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

    @abstractmethod
    def size(self, tx: Transaction) -> int:
        """The bytes that ``state_max_bytes`` bounds (see the module)."""

    def compact(self) -> int:
        """Give the space of deleted rows back to the disk where the engine leaves it
        to the database; the bytes given back (0: nothing to do)."""
        return 0

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

    def _committed(self, db) -> None:  # noqa: B027 - PostgreSQL keeps its own WAL
        """After a write transaction, on its connection: keep the WAL to its share."""

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
    size_is_cheap = True

    def __init__(self, path: Path, max_bytes: int | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        super().__init__(str(path))

    def _connect(self):
        # autocommit mode; transactions are explicit (BEGIN IMMEDIATE)
        db = sqlite3.connect(self.location, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable up to the last checkpoint
        self.page_size = db.execute("PRAGMA page_size").fetchone()[0]
        if self.max_bytes:
            pages = max(1, min(WAL_PAGES, self.max_bytes // WAL_SHARE // self.page_size))
            db.execute("PRAGMA wal_autocheckpoint=0")  # ours, after each write (_committed)
            # W: the WAL's checkpoint size, and the most a transaction should write. The
            # WAL reaches W, a transaction past it, one more that committed meanwhile;
            # the file passes its limit by one transaction: 4 W of the bound
            self.write_bytes = pages * self.page_size
            self.reserved = 4 * self.write_bytes
        return db

    def columns(self, tx: Transaction, table: str) -> set[str]:
        return {row[1] for row in tx.execute(f"PRAGMA table_info({table})").fetchall()}

    def size(self, tx: Transaction) -> int:
        pages = tx.execute("PRAGMA page_count").fetchone()[0]
        free = tx.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.page_size

    def compact(self) -> int:
        """VACUUM a file that leaves its WAL (up to 2 W) no room under the bound: one a
        lower bound or an earlier dlforge left larger. It is rewritten at the size of
        what it holds. Run it after pruning, before serving: VACUUM waits for writers."""
        path = Path(self.location)
        before = path.stat().st_size
        if not self.max_bytes or before <= self.max_bytes - self.reserved // 2:
            return 0
        # VACUUM writes the whole file to the WAL: emptied at once
        self._outside_transaction("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)")
        return before - path.stat().st_size

    def _committed(self, db) -> None:
        """Empty the WAL once it passes its checkpoint size. TRUNCATE, not SQLite's
        automatic (PASSIVE) checkpoints: those run on every commit once the WAL is
        past its size, but start it again only when no other connection is reading,
        which several writers at once (each taking a read lock as it begins) make
        rare: it grew without end. TRUNCATE waits for the readers of the moment and
        keeps writers out until the WAL is empty. A checkpoint that reports busy
        (another connection's checkpoint, or a lock held past the busy timeout) is
        tried again until the WAL is back within its size (another connection's
        checkpoint may empty it), for at most CHECKPOINT_SECONDS: the bound counts
        on the WAL staying within its reserve."""
        wal = Path(f"{self.location}-wal")
        deadline = time.monotonic() + CHECKPOINT_SECONDS
        with contextlib.suppress(FileNotFoundError, sqlite3.OperationalError):
            while self.write_bytes and wal.stat().st_size > self.write_bytes:
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy or time.monotonic() > deadline:
                    return
                time.sleep(0.005)

    def _outside_transaction(self, *statements: str) -> None:
        with self._slots:
            db = self._take()
            try:
                for statement in statements:
                    db.execute(statement)
            except sqlite3.OperationalError as err:  # e.g. locked past the timeout
                raise self._unavailable(err) from err
            finally:
                self._give_back(db)


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

    def size(self, tx: Transaction) -> int:
        count, row_bytes = tx.execute("SELECT count(*), coalesce(sum(pg_column_size(a.*)), "
                                      "0) FROM answers a").fetchone()
        return int(row_bytes) + count * ROW_OVERHEAD

    def _executemany(self, cursor, sql: str, rows: list[tuple]) -> None:
        from psycopg2.extras import execute_batch

        execute_batch(cursor, sql, rows, page_size=200)  # 200 rows per round trip


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
