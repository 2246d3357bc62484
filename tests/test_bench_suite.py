"""benchmarks/bench_suite.py reads pytest's durations and final line."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench_suite():
    spec = importlib.util.spec_from_file_location("bench_suite",
                                                  ROOT / "benchmarks" / "bench_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_durations_and_the_final_line_are_read():
    output = ["..F.s\n", "============ slowest durations ============\n",
              "12.50s call     tests/serve/test_live.py::test_x[a b]\n",
              "0.01s setup    tests/core/test_io.py::test_y\n",
              "== 1 failed, 3 passed, 1 skipped, 2 errors, 4 warnings in 812.34s (0:13:32) ==\n"]

    parsed = _bench_suite().parse_output(output)

    assert parsed["pytest_s"] == 812.34
    assert {k: v for k, v in parsed["tests"].items() if v} == {
        "passed": 3, "failed": 1, "skipped": 1, "errors": 2}
    assert parsed["phases"][0] == {"test": "tests/serve/test_live.py::test_x[a b]",
                                   "phase": "call", "seconds": 12.5}
    assert len(parsed["phases"]) == 2


def test_pytest_arguments_follow_the_double_dash_and_default_to_the_whole_suite():
    bench = _bench_suite()
    assert bench.split_argv(["--out", "x.json", "--", "-m", "unit"]) == (
        ["--out", "x.json"], ["-m", "unit"])
    workers = str(len(os.sched_getaffinity(0)) + 1)  # as make test: one more than the CPUs
    assert bench.split_argv([]) == ([], ["-n", workers, "--dist", "worksteal"])


def test_the_readme_gives_both_recorded_suite_times_in_one_place():
    """README.md's times for `make test` and `make test-fast` are the recorded runs'
    (benchmarks/results/suite.json, suite-fast.json), as the script prints them."""
    import json

    bench, readme = _bench_suite(), (ROOT / "README.md").read_text()
    for target, name in (("make test", "suite.json"), ("make test-fast", "suite-fast.json")):
        recorded = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert recorded["exit_status"] == 0, f"{name} records a failing run"
        assert readme.count(bench.readme_figure(target, recorded)) == 1, (target, name)
    assert readme.count(" tests in ") == 2  # one place only
