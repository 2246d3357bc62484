"""The prediction log: rotation by size, bounded disk, concurrent writers, damaged lines,
a full disk."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os

import pytest

from dlforge.serve import log as log_module
from dlforge.serve.log import PredictionLog, input_digest, read_log


def record(i: int, writer: int = 0) -> dict:
    return {"request_id": f"{writer}-{i}", "model": "intent", "version": "1",
            "input_digest": input_digest(f"text {i}"), "label": "weather", "score": 0.9,
            "latency_ms": 3.2}


def test_records_rotate_by_size_and_read_back_in_order(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=4096)
    for i in range(100):
        log.write([record(i)])
    rotated = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert rotated and all(p.stat().st_size <= 4096 for p in rotated)
    records, stats = read_log(tmp_path)
    assert [r["request_id"] for r in records] == [f"0-{i}" for i in range(100)]
    assert stats == {"files": len(rotated) + 1, "skipped": 0}


def _write_many(folder, writer: int) -> None:
    log = PredictionLog(folder, max_bytes=8192, keep_files=1000)
    for i in range(200):
        log.write([record(i, writer), record(i + 1000, writer)])


def test_concurrent_writers_never_interleave_or_lose_a_line(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(tmp_path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    records, stats = read_log(tmp_path)
    ids = [r["request_id"] for r in records]
    assert stats["skipped"] == 0 and len(ids) == len(set(ids)) == 4 * 400


def test_a_line_cut_short_by_a_killed_writer_is_skipped_and_counted(tmp_path):
    log = PredictionLog(tmp_path)
    log.write([record(1), record(2)])
    with (tmp_path / "predictions.jsonl").open("a") as handle:
        handle.write(json.dumps(record(3))[:20])  # the writer died mid-line
    log.write([record(4)])
    records, stats = read_log(tmp_path)
    assert [r["request_id"] for r in records] == ["0-1", "0-2", "0-4"]
    assert stats["skipped"] == 1


def ids(folder, name: str = "predictions") -> list[str]:
    records, stats = read_log(folder, name)
    out = [r["request_id"] for r in records]
    assert stats["skipped"] == 0
    return out


def test_rotations_within_one_second_never_overwrite_each_other(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=1024, keep_files=1000)
    for i in range(40):
        log.write([record(i)])
    oldest = min(tmp_path.glob("predictions-*.jsonl"))
    lost = {r["request_id"] for r in map(json.loads, oldest.read_text().splitlines())}
    oldest.unlink()  # deleted by hand: the next rotation must not reuse a name
    for i in range(40, 77):
        log.write([record(i)])
    names = [p.name for p in tmp_path.glob("predictions-*.jsonl")]
    assert len(names) == len(set(names)) >= 10
    assert ids(tmp_path) == [f"0-{i}" for i in range(77) if f"0-{i}" not in lost]


def test_only_the_newest_rotated_files_are_kept(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=1024, keep_files=3)
    (tmp_path / "predictions-mine.jsonl").write_text("")  # not the log's: left alone
    for i in range(200):
        log.write([record(i)])
    assert len(list(tmp_path.glob("predictions-*-*.jsonl"))) == 3
    assert (tmp_path / "predictions-mine.jsonl").exists()
    kept = ids(tmp_path)
    assert kept[-1] == "0-199" and kept == [f"0-{i}" for i in range(200 - len(kept), 200)]
    assert sum(p.stat().st_size for p in tmp_path.glob("predictions*.jsonl")) <= 4 * 1024


def test_sequence_numbers_past_9999_and_older_names_read_in_order(tmp_path):
    (tmp_path / "predictions-20261126T223501-9998.jsonl").write_text(
        json.dumps(record(0)) + "\n")
    (tmp_path / "predictions-20261126T223501-9999.jsonl").write_text(
        json.dumps(record(1)) + "\n")
    log = PredictionLog(tmp_path, max_bytes=1024, keep_files=1000)
    for i in range(2, 30):
        log.write([record(i)])
    assert (len(list(tmp_path.glob("predictions-*-0001000[0-9].jsonl")))
            == len(list(tmp_path.glob("predictions-*.jsonl"))) - 2)
    assert ids(tmp_path) == [f"0-{i}" for i in range(30)]


def test_records_being_read_survive_rotation_and_deletion(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=1024, keep_files=1)
    for i in range(20):
        log.write([record(i)])
    records, _ = read_log(tmp_path)  # the files are opened now...
    expected = ids(tmp_path)
    for i in range(20, 60):
        log.write([record(i)])  # ...so deleting them now loses nothing being read
    assert [r["request_id"] for r in records] == expected


def test_a_full_disk_raises_enospc(tmp_path):
    log = PredictionLog(tmp_path, name="feedback")
    os.symlink("/dev/full", tmp_path / "feedback.jsonl")
    with pytest.raises(OSError) as raised:
        log.write([record(1)])
    assert raised.value.errno == errno.ENOSPC


def test_a_write_cut_short_by_a_full_disk_is_taken_back(tmp_path, monkeypatch):
    log = PredictionLog(tmp_path)
    log.write([record(1)])
    real_write = os.write
    calls = []

    def short_write(fd, data):  # the disk fills up halfway through the write
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:len(data) // 2]))

    monkeypatch.setattr(log_module.os, "write", short_write)
    with pytest.raises(OSError) as raised:
        log.write([record(2), record(3)])
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.setattr(log_module.os, "write", real_write)
    log.write([record(4)])
    assert ids(tmp_path) == ["0-1", "0-4"]  # nothing half-written, no damaged line
