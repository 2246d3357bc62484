"""Inference workers fork from a fork server, yet start as a spawned process would."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlforge.core.process import pid_alive
from dlforge.serve.server import CallersSetting, in_callers_setting, worker_context


def record_setting(out: str) -> None:
    Path(out).write_text(json.dumps({"cwd": os.getcwd(), "variable": os.environ.get(
        "DLFORGE_TEST_WORKER_VARIABLE"), "path": sys.path, "torch": "torch" in sys.modules,
        "frozen": gc.get_freeze_count(), "collecting": gc.isenabled()}))


def start(out: Path) -> dict:
    process = worker_context().Process(target=in_callers_setting,
                                       args=(CallersSetting.here(), record_setting, (str(out),)))
    process.start()
    process.join(120)
    assert process.exitcode == 0
    return json.loads(out.read_text())


def test_a_worker_starts_in_the_folder_environment_and_path_of_its_moment(
        tmp_path, monkeypatch):
    # The fork server starts with the first worker; what changes after it must still
    # reach the next worker, as it would reach a spawned one.
    start(tmp_path / "first.json")
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("DLFORGE_TEST_WORKER_VARIABLE", "set after the fork server started")
    monkeypatch.syspath_prepend(str(tmp_path / "user-code"))
    seen = start(tmp_path / "second.json")
    assert seen["cwd"] == str(here)
    assert seen["variable"] == "set after the fork server started"
    assert seen["path"][0] == str(tmp_path / "user-code")
    assert seen["torch"]  # imported once, by the fork server, not by each worker
    # ... and frozen there: the worker's collections never walk what it shares with
    # the fork server, and it collects its own objects as usual.
    assert seen["frozen"] > 100_000 and seen["collecting"]



# A serving process: it starts a worker from the fork server, forks a child that
# outlives it (as its HTTP processes would), and waits to be killed.
SERVER = """
import os, sys, time
from dlforge.core.process import die_with_parent
from dlforge.serve.server import CallersSetting, in_callers_setting, worker_context

def work():
    die_with_parent()  # as an inference worker does (dlforge.serve.parts.build_parts)
    time.sleep(600)

if __name__ == "__main__":
    worker = worker_context().Process(target=in_callers_setting,
                                      args=(CallersSetting.here(), work, ()))
    worker.start()
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    print(worker.pid, flush=True)
    time.sleep(600)
"""


def test_a_server_killed_with_sigkill_leaves_no_worker_behind(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        worker = int(server.stdout.readline())
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 10
        while pid_alive(worker):
            assert time.monotonic() < deadline, "the worker outlived its killed server"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # the forked child, and anything left
