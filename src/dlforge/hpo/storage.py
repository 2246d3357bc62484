"""Where a study lives, and how its workers take turns: storage, claim lock, heartbeat.

    open_storage(spec, ...)   a journal file for a path; Optuna RDB storage for a URL
                              (postgresql://, sqlite:///, ...), with heartbeats
    claim_lock(spec, study)   serialises "count the budget, ask a trial" between workers:
                              a file lock for a journal file or SQLite, a PostgreSQL
                              advisory lock (workers on any host) for PostgreSQL
    heartbeat(storage, id)    beats for a running trial, so that any host can tell
                              when its worker is gone (hpo.heartbeat_interval)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.io import file_lock
from dlforge.core.urls import hide_passwords, redact

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10  # seconds to reach the database server before giving up
# A server drops the claim lock of a host that vanished (power, network) after
# about idle + interval * count seconds of unanswered TCP keepalives (a killed
# process closes its connection, which releases the lock at once).
LOCK_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
DRIVERS = {"postgresql": "pip install 'dlforge[postgres]' (the psycopg2 driver)"}

_storages: dict[tuple, object] = {}  # one RDB storage (engine, pool) per process and URL
_lock_engines: dict[str, object] = {}


def open_storage(spec: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, on_stale: Callable | None = None):
    """A journal file for a path; RDB storage (or a Redis journal) for a URL.

    Args:
        spec: ``hpo.storage``.
        heartbeat_interval: seconds between a running trial's heartbeats (RDB only;
            None: no heartbeats).
        grace_period: seconds without a heartbeat after which a running trial is failed.
        on_stale: Optuna's callback for a trial failed that way (it queues a retry).
            RDB storages are kept per process by URL and heartbeat settings; the
            callback given first stays.

    Raises:
        DlforgeError: naming ``hpo.storage`` (password hidden) when the database
            driver is missing or the server cannot be reached.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if spec.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(spec))
    if "://" in spec:
        key = (spec, heartbeat_interval, grace_period)
        if key not in _storages:
            _storages[key] = _rdb_storage(spec, heartbeat_interval, grace_period, on_stale)
        return _storages[key]
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), journal_lock(path)))


def journal_lock(journal: Path):
    """The write lock of the journal file ``journal``: an advisory lock on
    ``<journal>.flock``, which the kernel releases when its holder dies.

    Optuna's default (a symlink beside the file, for NFS) is forced free only after
    30 s without change: a sweep killed while writing its journal held up the next
    one that long. A journal file serves one machine (:func:`claim_lock`).
    """
    from optuna.storages.journal import JournalFileOpenLock

    class JournalFlock(JournalFileOpenLock):  # Optuna's public lock type, its two methods ours
        def __init__(self, path: Path):
            super().__init__(str(path), grace_period=None)
            self.path, self._held, self._threads = path, None, threading.Lock()

        def acquire(self) -> bool:
            with contextlib.ExitStack() as stack:  # on an error, both are let go again
                stack.enter_context(self._threads)  # the process's threads, then processes
                stack.enter_context(file_lock(self.path))
                self._held = stack.pop_all()
            return True

        def release(self) -> None:
            held, self._held = self._held, None
            held.close()

    return JournalFlock(Path(f"{journal}.flock"))


def _rdb_storage(url: str, heartbeat_interval: int | None, grace_period: int | None,
                 on_stale: Callable | None, attempts: int = 5):
    """RDB storage; retried, since processes starting together on a new database
    race to create its schema (one wins, the others find it on the next try)."""
    import inspect

    import optuna
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    options: dict = {"engine_kwargs": _engine_kwargs(url)}
    if heartbeat_interval is not None:
        # Optuna 4.9 renamed the callback argument; 4.0-4.8 know only the old name.
        name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
                in inspect.signature(optuna.storages.RDBStorage).parameters
                else "failed_trial_callback")
        options.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                       **{name: on_stale})
    for attempt in range(attempts):
        try:
            with quiet_optuna():
                return optuna.storages.RDBStorage(url, **options)
        except ImportError as err:
            raise _no_driver(url, err) from None
        except SQLAlchemyError as err:
            # A refused connection is retried once (a server restarting), a schema
            # race until it settles.
            if attempt == attempts - 1 or (isinstance(err, OperationalError) and attempt):
                raise _unreachable(url, err) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna marks its heartbeat API experimental and warns at every use; and
    ``ask`` warns that heartbeats are meant for ``optimize`` (our workers beat
    themselves, :func:`heartbeat`)."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed")
        yield


def _engine_kwargs(url: str) -> dict:
    """Fail within CONNECT_TIMEOUT on an unreachable PostgreSQL server (libpq waits
    for the OS's TCP timeout otherwise), unless the URL sets its own."""
    if _dialect(url) == "postgresql" and "connect_timeout=" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {}


def _no_driver(url: str, err: ImportError) -> DlforgeError:
    fix = DRIVERS.get(_dialect(url), "install the database driver SQLAlchemy names for it")
    cause = getattr(err.__cause__, "msg", None) or str(err.__cause__ or err)
    return DlforgeError(f"hpo.storage={redact(url)}: the database driver is not installed "
                        f"({cause}). Fix: {fix}, or set hpo.storage to a file path for a "
                        "journal file on this machine")


def _unreachable(url: str, err: Exception) -> DlforgeError:
    detail = str(getattr(err, "orig", None) or err).strip().splitlines()
    detail = hide_passwords(detail[0] if detail else type(err).__name__, url)
    return DlforgeError(f"hpo.storage={redact(url)}: cannot open the study's database "
                        f"({detail}). Fix: check that the database server is running and "
                        "reachable from this machine, and the URL's host, port, user, "
                        "password and database name")


def _dialect(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0]


def shared_lock(spec: str) -> bool:
    """Whether :func:`claim_lock` serialises every worker of the study (on a journal
    file, SQLite and PostgreSQL it does; on other databases it is a no-op)."""
    return "://" not in spec or _dialect(spec) in ("postgresql", "sqlite")


@contextlib.contextmanager
def claim_lock(spec: str, study: str = "") -> Iterator[None]:
    """Serialise ``count, ask`` between the study's workers so it stops at n_trials.

    A journal file or SQLite database: a file lock next to it (one machine).
    PostgreSQL: a transaction-scoped advisory lock keyed by the study name, which
    every worker on every host takes from the server; a worker killed while
    holding it drops its connection, and with it the lock. Other databases have
    no common lock: a study may overshoot by at most one trial per extra worker.
    """
    if "://" not in spec:
        with file_lock(Path(f"{spec}.claim")):
            yield
        return
    if _dialect(spec) == "postgresql":
        from sqlalchemy import text

        with _lock_engine(spec).begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _lock_key(study)})
            yield
        return
    database = _sqlite_file(spec)
    if database is None:
        yield
        return
    with file_lock(Path(f"{database}.claim")):
        yield


def _lock_key(study: str) -> int:
    """A signed 64-bit advisory lock key for the study."""
    digest = hashlib.sha256(f"dlforge.claim:{study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_engine(url: str):
    if url not in _lock_engines:
        from sqlalchemy import create_engine

        connect_args = {"options": LOCK_KEEPALIVES, "application_name": "dlforge sweep claim"}
        if "connect_timeout=" not in url:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
        _lock_engines[url] = create_engine(url, pool_size=1, pool_pre_ping=True,
                                           connect_args=connect_args)
    return _lock_engines[url]


def _sqlite_file(url: str) -> str | None:
    """The database file of a ``sqlite:///`` URL (None for other databases, in memory)."""
    if _dialect(url) != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return database if database and database != ":memory:" else None


def close_storages() -> None:
    """Close this process's database connections (the studies' and the claim lock's)."""
    for storage in _storages.values():
        storage.engine.dispose()
    for engine in _lock_engines.values():
        engine.dispose()
    _storages.clear()
    _lock_engines.clear()


def first_beat(storage, trial_id: int) -> None:
    """Record a just-claimed trial's first heartbeat, under the claim lock: Optuna
    never fails a RUNNING trial that has none, so a worker killed between the
    claim and its first beat would leave the trial running for ever."""
    if getattr(storage, "heartbeat_interval", None) is not None:
        storage.record_heartbeat(trial_id)


@contextlib.contextmanager
def heartbeat(storage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every ``heartbeat_interval`` seconds while the block runs.

    The first beat is the claim's (:func:`first_beat`). Without heartbeats (a
    journal file, ``hpo.heartbeat_interval=null``) this does nothing.
    """
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception as err:  # a database blip: the next beat may get through
                log.warning("trial heartbeat not recorded: %s <hpo.heartbeat_interval=%s>",
                            err, interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
