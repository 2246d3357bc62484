"""Real servers for the scale-out tests: PostgreSQL, and a free loopback port.

PostgreSQL comes from the machine's server binaries (Debian's ``postgresql``
package, which ``make test`` installs where it is missing). The server refuses
to run as root, so as root it runs as the ``postgres`` user, in a folder of its
own under the system's temp dir, listening on loopback only, trust
authentication. Each pytest worker starts one server for its session; tests
take a fresh database of it each (:meth:`Postgres.database`).
"""

from __future__ import annotations

import contextlib
import glob
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


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    bindir = postgres_bindir()
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="dlforge-pg-"))
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    port = free_port()
    server = None
    try:
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server's whole life
        server = subprocess.Popen(
            [*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: "
                                   + (folder / "server.log").read_text(errors="replace"))
            time.sleep(0.1)
        yield Postgres(port, bindir, run_as)
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: smart shutdown; then fast
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)
