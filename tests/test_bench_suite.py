"""benchmarks/bench_suite.py reads pytest's durations and final line."""

from __future__ import annotations

import importlib.util
import os
import time
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


def test_the_machines_busy_time_is_read_from_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    #           user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  1000 20 300 9000 50 0 30 700 0 0\ncpu0 500 10 150 4500 25 0 15 350 0 0\n")
    bench, ticks = _bench_suite(), os.sysconf("SC_CLK_TCK")
    assert bench.machine_busy_s(stat) == (1000 + 20 + 300 + 0 + 30) / ticks  # not idle, steal
    assert bench.machine_busy_s(tmp_path / "none") is None  # not Linux
    before = bench.machine_busy_s()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # this process works: the machine's count grows
        pass
    assert bench.machine_busy_s() - before >= 0.2


def test_each_process_is_named_by_the_command_it_ran():
    kind = _bench_suite().command_kind
    python = "/venv/bin/python"
    assert kind([python, "/venv/bin/dlforge", "train", "experiment=intent"], "t") == (
        "dlforge train")
    assert kind([python, "-m", "dlforge", "sweep", "paths.root=/tmp/x"], "t") == "dlforge sweep"
    assert kind([python, "/venv/bin/snakemake", "--profile", "workflow/profiles/local",
                 "--dry-run"], "t") == "snakemake"
    assert kind([python, "/venv/bin/dvc", "exp", "run", "-S", "intent.seed=1"], "t") == "dvc exp"
    assert kind([python, "-u", "-X", "importtime", "-m", "dlforge.train.worker", "/tmp/c.yaml"],
                "t") == "dlforge.train.worker"
    # pytest-xdist's workers are `python -c ...` that end with no test running
    assert kind([python, "-c", "import sys;exec(eval(sys.stdin.readline()))"], None) == (
        "pytest worker")
    assert kind([python, "-c", "import mlflow"], "t") == "python -c"


def test_the_processes_a_test_starts_are_recorded_and_summed_by_command_and_test(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "DLFORGE_PROCESS_RECORD": str(tmp_path),
           "PYTHONPATH": str(ROOT / "benchmarks" / "process_record"),
           "PYTEST_CURRENT_TEST": "tests/a.py::test_b (call)"}
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    for code in (spin, "print()", "import os; os._exit(0)"):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)

    # ...and what the plugin records of each test in its worker
    (tmp_path / "in-process-gw0.jsonl").write_text(
        '{"test": "tests/a.py::test_b", "cpu_s": 1.5}\n{"test": "tests/c.py::test_d", '
        '"cpu_s": 0.5}\n')

    summary = _bench_suite().summarise_processes(tmp_path)

    assert summary["processes"] == 2  # os._exit skips the record, as the docs say
    (command,) = summary["by_command"]
    assert command["command"] == "python -c" and command["processes"] == 2
    test, other = summary["by_test"]
    assert test["test"] == "tests/a.py::test_b" and test["cpu_s"] == summary["cpu_s"] >= 0.3
    assert test["in_process_cpu_s"] == 1.5 and test["processes"] == 2
    assert other == {"test": "tests/c.py::test_d", "processes": 0, "cpu_s": 0.0,
                     "in_process_cpu_s": 0.5}


def test_a_record_file_in_no_folder_is_refused_before_the_run(tmp_path, capsys):
    import pytest

    bench = _bench_suite()
    missing = tmp_path / "gone" / "cpu.json"
    with pytest.raises(SystemExit):
        bench.parse_args(["--processes", str(missing)])
    assert f"--processes {missing}: no folder {missing.parent}" in capsys.readouterr().err
    assert bench.parse_args(["--phases", str(tmp_path / "phases.json")]).phases is not None
