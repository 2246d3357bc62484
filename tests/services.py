"""Real servers for the scale-out tests: PostgreSQL, and a free loopback port.

PostgreSQL comes from the machine's server binaries (Debian's ``postgresql``
package, which ``make test`` installs where it is missing). The server refuses
to run as root, so as root it runs as the ``postgres`` user, in a folder of its
own under the system's temp dir, listening on loopback only, trust
authentication. One server serves the whole test run: the first pytest worker
that needs it starts it (:func:`shared_postgres`), the others find it recorded
in the run's folder, and the run stops it at its end
(:func:`stop_shared_postgres`); tests take a fresh database of it each
(:meth:`Postgres.database`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = ("install PostgreSQL's server (Debian: apt-get install postgresql); "
                "`make test` does so where it is missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bindir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``$PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin``, or the PATH."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda path: int(Path(path).parent.parent.name))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(f"No PostgreSQL server binaries (initdb) found: {INSTALL_HINT}.")


class Postgres:
    """A running server: ``url(db)`` is its SQLAlchemy URL, ``database()`` a fresh one."""

    def __init__(self, port: int, bindir: Path, run_as: list[str]):
        self.port = port
        self.bindir = bindir
        self._run_as = run_as

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {result.stderr}")
        return result.stdout

    def database(self, prefix: str = "t") -> str:
        """Create an empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


def _run_as() -> list[str]:
    """The command prefix that runs a server binary as ``postgres`` when we are root
    (PostgreSQL will not run as root); empty otherwise."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _start(folder: Path) -> tuple[subprocess.Popen, Postgres]:
    """initdb and start a server whose files live in ``folder``, once it accepts
    connections: (its process, the server)."""
    bindir, run_as = postgres_bindir(), _run_as()
    if run_as:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server's whole life
    server = subprocess.Popen(
        [*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off",
         "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=300"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not start: "
                               + (folder / "server.log").read_text(errors="replace"))
        time.sleep(0.1)
    return server, Postgres(port, bindir, run_as)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A server of its own for the ``with`` block (benchmarks/bench_sweep.py)."""
    folder = Path(tempfile.mkdtemp(prefix="dlforge-pg-"))
    server = None
    try:
        server, postgres = _start(folder)
        yield postgres
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: smart shutdown; then fast
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


SHARED = "postgres.json"  # in the run's folder: where the run's one server is


def shared_postgres(run_folder: Path) -> Postgres:
    """The test run's one server, started by the first process that asks for it and
    recorded in ``run_folder`` (a folder every pytest worker of the run shares);
    :func:`stop_shared_postgres` stops it when the run ends."""
    record = run_folder / SHARED
    with open(run_folder / f"{SHARED}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others wait and read
        if not record.is_file():
            folder = Path(tempfile.mkdtemp(prefix="dlforge-pg-"))
            try:
                _, postgres = _start(folder)
            except BaseException:
                _stop(folder, postgres_bindir(), _run_as())
                raise
            record.write_text(json.dumps({"port": postgres.port, "folder": str(folder),
                                          "bindir": str(postgres.bindir)}))
    found = json.loads(record.read_text())
    return Postgres(found["port"], Path(found["bindir"]), _run_as())


def stop_shared_postgres(run_folder: Path) -> None:
    """Stop the run's server, if one was started, and remove its files."""
    record = run_folder / SHARED
    if record.is_file():
        found = json.loads(record.read_text())
        _stop(Path(found["folder"]), Path(found["bindir"]), _run_as())
        record.unlink()


def _stop(folder: Path, bindir: Path, run_as: list[str]) -> None:
    """A fast shutdown of the server of ``folder`` (if it runs), then its files."""
    if (folder / "data" / "postmaster.pid").is_file():
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "stop",
                        "-m", "fast", "-w", "-t", "30"], capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)
