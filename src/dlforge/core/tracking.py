"""The MLflow connection every stage and command shares, and the tags dlforge writes.

The tracking URI comes from config (``tracking.tracking_uri``, whose default in
conf/tracking/mlflow.yaml is ``$MLFLOW_TRACKING_URI`` when set); a relative
SQLite path is made absolute and its tables are created under a lock, so that
processes starting together on a new database never race. A database server
(``postgresql://user:pw@host/db``) is reached once first, so that a missing
driver or a server that is down is reported at once (MLflow itself retries for
over a minute), and its tables are created under an advisory lock. Experiments
created here keep their artifacts in ``tracking.artifact_location``
(``paths.mlflow_dir/artifacts``) for SQLite and database URIs alike; only an
MLflow server stores them itself. Importing this module does not import mlflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path

from dlforge import __version__
from dlforge.core.errors import DlforgeError
from dlforge.core.io import file_lock, staging_dir, user_cache_dir
from dlforge.core.secrets import resolved
from dlforge.core.urls import hide_passwords, redact

log = logging.getLogger(__name__)

# MLflow's own variable: conf/tracking/mlflow.yaml takes it as tracking.tracking_uri's default.
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"


class Tag:
    """Names of the MLflow tags dlforge writes on runs and model versions."""

    EXPERIMENT = "dlforge.experiment"
    STAGE = "dlforge.stage"
    DATASET = "dlforge.dataset"
    SNAPSHOT = "dlforge.snapshot"
    COMMITS = "dlforge.commits"
    CONFIG_HASH = "dlforge.config_hash"
    VERSION = "dlforge.version"
    HOST = "dlforge.host"
    PID = "dlforge.pid"
    GIT_COMMIT = "dlforge.git_commit"
    GIT_DIRTY = "dlforge.git_dirty"
    STUDY = "dlforge.study"
    TRIAL = "dlforge.trial"
    TRIAL_STATE = "dlforge.trial_state"
    VERIFY = "dlforge.verify."  # prefix of a model version's attestation (`dlforge verify`)
    RECORD_CODE = "dlforge.record.code"  # the training's run record (dlforge.core.record)
    RECORD_CONFIG = "dlforge.record.config"


def setup_tracking_uri(tracking) -> None:
    """Point MLflow at ``tracking.tracking_uri`` (a relative SQLite path made absolute)."""
    import mlflow

    uri = resolved(tracking, "tracking_uri", "tracking.tracking_uri")
    if not uri:
        env = os.environ.get(ENV_TRACKING_URI)
        env = env and redact(env)
        raise DlforgeError(
            f"tracking.tracking_uri is empty ({ENV_TRACKING_URI}={env!r} in the environment?). "
            f"Fix: unset {ENV_TRACKING_URI} or set it to an MLflow tracking URI "
            "(sqlite:///path/mlflow.db, http://host:5000)")
    uri = absolute_sqlite(uri)
    users = os.environ.get(ENV_TRACKING_URI)
    mlflow.set_tracking_uri(uri)
    # MLflow also exports the URI to the environment; the configs read that variable as
    # the user's choice, so a later composition in this process must not see ours.
    if users is None:
        os.environ.pop(ENV_TRACKING_URI, None)
    else:
        os.environ[ENV_TRACKING_URI] = users
    if uri.startswith("sqlite:///"):
        _create_sqlite_store(uri)
    elif uri.split("://", 1)[0].split("+", 1)[0] in _DATABASES:
        _create_database_store(uri)


def _create_sqlite_store(uri: str) -> None:
    """Create the SQLite store's tables under a lock: processes starting together on
    a new database (sweep workers, parallel jobs) would otherwise race to create them."""
    import mlflow

    path = Path(uri.removeprefix("sqlite:///"))
    if path in _CREATED:
        return
    with file_lock(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            _copy_empty_store(path)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    _CREATED.add(path)


def _copy_empty_store(path: Path) -> None:
    """Start the SQLite store ``path`` as a copy of an empty one with MLflow's tables:
    creating them runs each of MLflow's schema migrations in turn, seconds of CPU for
    every new store. The empty store is made by MLflow once per MLflow version and set
    of migrations (:func:`_schema`), in the user's cache. The copy loses its
    experiments, so that MLflow adds its Default experiment with the copy's own
    artifact root (an empty store holding a run is not used). Where the cache cannot
    be used, MLflow creates the tables itself."""
    import mlflow

    template = user_cache_dir() / "mlflow" / f"empty-{mlflow.__version__}-{_schema()}.db"
    copy = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            with staging_dir(template.parent) as stage:
                made = stage / template.name
                mlflow.MlflowClient(f"sqlite:///{made}").search_experiments(max_results=1)
                os.replace(made, template)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, copy)
        with contextlib.closing(sqlite3.connect(copy)) as db:
            if db.execute("SELECT count(*) FROM runs").fetchone()[0]:
                return  # not an empty store
            with db:
                db.execute("DELETE FROM experiment_tags")
                db.execute("DELETE FROM experiments")
        with open(copy, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(copy, path)  # never over a store that another process made meanwhile
    except (OSError, sqlite3.Error) as err:
        log.debug("no copy of an empty MLflow store (%s): MLflow creates %s", err, path)
    finally:
        copy.unlink(missing_ok=True)


def _schema() -> str:
    """A digest of the names of MLflow's schema migrations: an empty store is kept per
    MLflow version and per set of migrations, so that a copy always has the schema the
    installed MLflow expects."""
    import mlflow

    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    names = sorted(path.name for path in versions.glob("*.py"))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


_CREATED: set[Path | str] = set()

# The database servers MLflow stores runs in, and how to install each one's driver.
_DATABASES = {"postgresql": "pip install 'dlforge[postgres]'",
              "mysql": "pip install mysqlclient", "mssql": "pip install pyodbc"}
# pg_advisory_lock's key while MLflow creates its tables in a new database ("dlforge").
_TABLES_LOCK = 0x646C666F726765


def _create_database_store(uri: str) -> None:
    """Reach the database, then have MLflow create or check its tables (under an
    advisory lock on PostgreSQL: workers starting together on a new database)."""
    import mlflow
    import sqlalchemy

    if uri in _CREATED:
        return
    url = sqlalchemy.engine.make_url(uri)
    backend = url.get_backend_name()
    setting = f"tracking.tracking_uri={redact(uri)}"
    try:
        engine = sqlalchemy.create_engine(
            url, connect_args={"connect_timeout": 10} if backend == "postgresql" else {})
    except ImportError as err:
        raise DlforgeError(f"{setting}: no driver for {url.drivername} ({err}). "
                           f"Fix: {_DATABASES[backend]}") from None
    try:
        with engine.connect() as connection:
            if backend == "postgresql":
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_TABLES_LOCK})"))
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except sqlalchemy.exc.DBAPIError as err:
        reason = hide_passwords(str(err.orig).strip().splitlines()[0], uri)
        raise DlforgeError(
            f"{setting}: cannot reach the database ({reason}). Fix: is the server up at "
            f"{url.host}:{url.port or 'its default port'}, does database {url.database!r} "
            "exist, and may this user connect to it?") from None
    finally:
        engine.dispose()
    _CREATED.add(uri)


def connect(tracking_uri: str | None = None) -> None:
    """Point MLflow at ``tracking_uri``, or at ``tracking.tracking_uri`` in conf/ (for CLIs)."""
    from omegaconf import OmegaConf

    from dlforge.core.config import compose

    tracking = compose("runs").tracking if tracking_uri is None \
        else OmegaConf.create({"tracking_uri": tracking_uri})
    setup_tracking_uri(tracking)


def setup_mlflow(tracking) -> str:
    """Point MLflow at the tracking store; create the experiment; return its id.

    Processes starting together on a new experiment (parallel jobs) may all try
    to create it: the ones that lose find the winner's.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    setup_tracking_uri(tracking)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = tracking.get("artifact_location")
    if location and "://" not in location and _is_server(tracking.tracking_uri):
        location = None  # a tracking server stores (or proxies) artifacts itself
    if location and "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    try:
        return mlflow.create_experiment(tracking.experiment, artifact_location=location)
    except MlflowException:
        experiment = mlflow.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///rel/path.db`` -> absolute, with the folder created."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def flatten(cfg: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` for MLflow params."""
    import json

    from dlforge.core.config import dotted

    return {name: json.dumps(value) if isinstance(value, list | dict) else str(value)
            for name, value in dotted(cfg, prefix).items()}


def git_state() -> dict[str, str]:
    """Commit of the working tree and whether it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {Tag.GIT_COMMIT: "unknown", Tag.GIT_DIRTY: "unknown"}
    return {Tag.GIT_COMMIT: commit, Tag.GIT_DIRTY: str(bool(dirty.strip())).lower()}


def process_tags() -> dict[str, str]:
    """Where a run was made: dlforge's version, the host, this process, the git state."""
    return {Tag.VERSION: __version__, Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid()),
            **git_state()}


def finish_run(run_id: str, status: str) -> None:
    """Mark the run FINISHED, FAILED or KILLED."""
    import mlflow

    mlflow.MlflowClient().set_terminated(run_id, status=status)
