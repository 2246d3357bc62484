"""The prediction log: rotation by size, concurrent writers, damaged lines."""

from __future__ import annotations

import json
import multiprocessing

import pytest

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
    log = PredictionLog(folder, max_bytes=8192)
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


def test_a_tiny_rotation_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="log_max_bytes must be at least 1024"):
        PredictionLog(tmp_path, max_bytes=10)
