"""Atomic writes and locks: a reader sees the old file or the new one, never part of one."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest

from dlforge.core.io import atomic_output, file_lock, write_json_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"acc": 0.5})
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_write_creates_the_folder_and_replaces_the_file(tmp_path):
    target = tmp_path / "a" / "b" / "best.yaml"
    write_text_atomic(target, "- x=1\n")
    write_text_atomic(target, "- x=2\n")
    assert target.read_text() == "- x=2\n"


def _write_forever(path: str) -> None:
    while True:
        write_json_atomic(path, {"rows": list(range(20_000))})


def test_a_writer_killed_mid_write_never_leaves_half_a_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"rows": []})
    writer = multiprocessing.get_context("spawn").Process(target=_write_forever,
                                                          args=(str(target),))
    writer.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            json.loads(target.read_text())  # every read is a whole file
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
    json.loads(target.read_text())


def _hold(path: str, shared: bool, started, release) -> None:
    with file_lock(path, shared=shared):
        started.set()
        release.wait(10)


def test_readers_share_the_lock_and_a_writer_waits_for_them(tmp_path):
    lock = tmp_path / "log.lock"
    lock.touch()
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    reader = ctx.Process(target=_hold, args=(str(lock), True, started, release))
    reader.start()
    try:
        assert started.wait(10)
        with file_lock(lock, shared=True):  # a second reader gets in at once
            pass
        writer_started, writer_release = ctx.Event(), ctx.Event()
        writer = ctx.Process(target=_hold, args=(str(lock), False, writer_started,
                                                  writer_release))
        writer.start()
        assert not writer_started.wait(0.5)  # the writer waits for the reader
        release.set()
        assert writer_started.wait(10)
        writer_release.set()
        writer.join(10)
    finally:
        release.set()
        reader.join(10)
