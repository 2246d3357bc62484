"""Inference workers fork from a fork server, yet start as a spawned process would."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dlforge.serve.server import CallersSetting, in_callers_setting, worker_context


def record_setting(out: str) -> None:
    Path(out).write_text(json.dumps({"cwd": os.getcwd(), "variable": os.environ.get(
        "DLFORGE_TEST_WORKER_VARIABLE"), "path": sys.path, "torch": "torch" in sys.modules}))


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

