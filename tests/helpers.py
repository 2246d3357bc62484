"""Small helpers shared by tests (fixtures live in the conftest files; the toy data
and projects in :mod:`tests.toy`): processes and what they wait on, :func:`built_once`
for what the whole run builds once (:func:`dlforge_wheel`), and :func:`running`, a
prediction server in the test's own process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "raw" / "clinc150"
BIN = Path(sys.executable).parent  # this environment's commands: dlforge, dvc, snakemake
# `git commit` and `dvc exp run` commit in the projects the tests make.
GIT_IDENTITY = {key: "dlforge@example.org" for key in (
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")}


def run(cwd: Path, *command: str | Path, env: dict | None = None) -> str:
    """Run ``command`` in ``cwd``: in ``env``, else in this environment with its
    commands first on PATH and a git identity. Its output (stdout, then stderr); fails
    the test, with that output, if the command fails."""
    if env is None:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **GIT_IDENTITY}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git (in ``cwd``, else the working folder); its stdout."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def commit(message: str, cwd: Path | None = None) -> str:
    """Commit everything in the work tree as a test author; the new commit's id."""
    git("add", "-A", cwd=cwd)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message,
        cwd=cwd)
    return git("rev-parse", "HEAD", cwd=cwd).strip()


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every process of this test run shares: the main process's base temp
    folder (each pytest-xdist worker's own is a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], None]) -> Path:
    """``build(folder)`` run once for the whole test run, in a folder that every
    pytest-xdist worker of the run sees: the first worker to ask builds it while the
    others wait on a lock. A build that failed is tried again by the next one to ask."""
    root = shared_folder(tmp_path_factory)
    where, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir()
            build(where)
            done.touch()
    return where


def dlforge_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once for the whole test run from a copy of its
    sources (building writes build/ and *.egg-info beside them)."""
    def build(where: Path) -> None:
        source = where / "source"
        shutil.copytree(ROOT / "src", source / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (ROOT / name).is_file():
                shutil.copyfile(ROOT / name, source / name)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--no-build-isolation", "--wheel-dir", str(where / "dist"),
                        str(source)], check=True, capture_output=True, timeout=300)

    return next((built_once(tmp_path_factory, "wheel", build) / "dist").glob("dlforge-*.whl"))


@contextlib.contextmanager
def running(settings) -> Iterator:
    """A TestClient of a started, ready server over ``settings``
    (:func:`dlforge.stages.serve.server_settings`), in this process (its inference
    workers are real processes), addressed as localhost: a server without an API key
    answers only loopback names."""
    from fastapi.testclient import TestClient
    from litserve.utils import wrap_litserve_start

    from dlforge.serve.server import build_server

    server = build_server(settings)
    try:
        with wrap_litserve_start(server), \
                TestClient(server.app, base_url="http://localhost") as client:
            deadline = time.monotonic() + 180
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, client.get("/health/ready").text
                time.sleep(0.2)
            client.litserver = server  # for tests that look inside
            yield client
    finally:  # what `dlforge serve` removes as it stops
        if server.sockets_dir:
            shutil.rmtree(server.sockets_dir, ignore_errors=True)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the sha256 of its bytes."""
    if not root.exists():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def dlforge(*args: str, cwd: Path | None = None, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``dlforge ARGS`` in a process of its own (in ``cwd``, default the checkout;
    ``env`` over this environment), as a user would; with ``check``, the test fails with
    its stderr if the command does."""
    result = subprocess.run(
        [sys.executable, "-m", "dlforge", *args],
        cwd=cwd or ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dlforge {' '.join(args)} failed:\n{result.stderr}")
    return result


@contextlib.contextmanager
def dlforge_serve(cwd: Path, *overrides: str):
    """``dlforge serve`` on a free loopback port, in its own process group, until healthy.

    Yields (base URL, the process); the whole group is killed on exit.
    """
    from tests.services import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dlforge", "serve", f"port={port}",
                               "accelerator=cpu", "api_key=null", *overrides],
                              cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, 120, lambda: "dlforge serve did not become healthy")
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


def wait_healthy(url: str, process: subprocess.Popen, seconds: float, timed_out,
                 pause: float = 0.5) -> None:
    """Wait until ``url``/health answers 200; fail with the process's stderr if it ends,
    or with ``timed_out()`` after ``seconds``."""
    import httpx

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        return False

    wait_for(healthy, process, seconds=seconds, poll=pause, timed_out=timed_out)


def kill_after(process: subprocess.Popen, seconds: float) -> None:
    """SIGKILL ``process`` ``seconds`` from now (unless it ended first) and reap it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition, *processes: subprocess.Popen, seconds: float = 120,
             poll: float = 0.2, timed_out: Callable[[], str] = lambda: "timed out"):
    """Poll ``condition`` every ``poll`` seconds until it returns something true, and
    return that; fail with a process's stderr if one ends first, or with
    ``timed_out()`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        for process in processes:
            assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, timed_out()
        time.sleep(poll)
    return found
