"""The test suite's time: the whole run, the slowest tests, and the time summed over workers.

Usage:
    python benchmarks/bench_suite.py [--out FILE] [-- PYTEST_ARGS ...]
    python benchmarks/bench_suite.py                       # the whole suite, as `make test`
    python benchmarks/bench_suite.py --out benchmarks/results/suite-fast.json \
        -- -m unit -n 2 --dist worksteal                   # `make test-fast`, 2 CPUs
    python benchmarks/bench_suite.py --phases phases.json  # and every test's seconds

Runs ``pytest PYTEST_ARGS --durations=0 --durations-min=0 -q`` in this interpreter
(PYTEST_ARGS: ``-n CPUS+1 --dist worksteal``, as ``make test``, when none are given;
the run's files in a folder of its own, as ``make test``) and shows its output as it
goes, less the per-test durations. From pytest's durations and its final line it
records pytest's own seconds, the counts of passed, failed, skipped and erroring
tests, the 10 slowest phases (setup, call or teardown of one test), and the seconds
of every phase summed: with pytest-xdist the time the workers spent, which the
run's wall time divides by the parallelism it got; and the CPU seconds of pytest and
the processes it waited for. Beside them: the machine's CPUs, its load average at
the start and at the end (another job on the machine slows the suite), and Python's
version.

Writes benchmarks/results/suite.json (--out; benchmarks/results/suite-fast.json
for `make test-fast`) and prints the 10 slowest, the total and the README's line
for the run (README.md gives both runs' times; tests/test_bench_suite.py checks
they are the recorded ones); exits with pytest's exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# as `make test`: one worker more than the CPUs this process may run on
DEFAULT_PYTEST_ARGS = ["-n", str(len(os.sched_getaffinity(0)) + 1), "--dist", "worksteal"]
SLOWEST = 10

# "12.34s call     tests/serve/test_live.py::test_x[a b]" (pytest's --durations lines)
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s (setup|call|teardown)\s+(\S.*)$")
HEADER = re.compile(r"^=+ slowest (\d+ )?durations =+$")
# "3 failed, 930 passed, 12 skipped, 2 warnings in 812.34s (0:13:32)", with -q or
# between "=" rules
FINAL = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+|no tests ran) in (\d+(?:\.\d+)?)s\b")
COUNTS = ("passed", "failed", "skipped", "errors", "xfailed", "xpassed", "deselected")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """This script's arguments, and pytest's (everything after ``--``)."""
    if "--" not in argv:
        return argv, list(DEFAULT_PYTEST_ARGS)
    at = argv.index("--")
    return argv[:at], argv[at + 1:]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "suite.json")
    parser.add_argument("--phases", type=Path, metavar="FILE",
                        help="also write every phase's seconds to FILE (JSON), slowest "
                             "first, to see where the time goes by file or fixture")
    return parser.parse_args(argv)


def parse_output(lines: list[str]) -> dict:
    """pytest's seconds, counts and every phase's duration, from its output lines."""
    phases, seconds, counts = [], None, dict.fromkeys(COUNTS, 0)
    for line in lines:
        if match := DURATION.match(line.strip()):
            phases.append({"test": match[3], "phase": match[2], "seconds": float(match[1])})
        elif match := FINAL.match(line.strip()):
            seconds = float(match[2])
            for number, word in re.findall(r"(\d+) (\w+)", match[1]):
                key = "errors" if word == "error" else word  # "1 error", "2 errors"
                if key in counts:
                    counts[key] = int(number)
    return {"pytest_s": seconds, "tests": counts, "phases": phases}


def run_pytest(pytest_args: list[str]) -> tuple[int, list[str], float]:
    """Run pytest, echoing its output less the durations; (exit status, lines, wall s).
    As ``make test``: the bytecode the run compiles is kept (PYTHONDONTWRITEBYTECODE
    unset); unless PYTEST_ARGS give one, the run's files go to a folder of its own,
    removed after a passing run (pytest's own would delete an earlier run's within the
    run's time)."""
    runs = None
    if not any(arg.startswith("--basetemp") for arg in pytest_args):
        runs = Path(tempfile.mkdtemp(prefix="dlforge-tests."))
        pytest_args = [*pytest_args, f"--basetemp={runs / 'run'}"]
    command = [sys.executable, "-m", "pytest", *pytest_args,
               "--durations=0", "--durations-min=0", "-q"]
    start = time.monotonic()
    lines = []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        for line in process.stdout:
            lines.append(line)
            if not (DURATION.match(line.strip()) or HEADER.match(line.strip())):
                sys.stdout.write(line)
                sys.stdout.flush()
    wall = time.monotonic() - start
    if runs is not None and process.returncode == 0:
        shutil.rmtree(runs, ignore_errors=True)
    elif runs is not None:
        print(f"the run's files: {runs / 'run'}")
    return process.returncode, lines, wall


def readme_figure(target: str, recorded: dict) -> str:
    """How the README gives a recorded run: "`make test`: 932 tests in 9 min 6 s"
    (tests run or skipped; pytest's own seconds)."""
    tests = sum(recorded["tests"].get(k, 0) for k in ("passed", "failed", "skipped"))
    minutes, seconds = divmod(round(recorded["pytest_s"]), 60)
    return f"`{target}`: {tests} tests in {minutes} min {seconds} s"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    own, pytest_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = parse_args(own)
    started, load_start = datetime.now(UTC), load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, lines, wall = run_pytest(pytest_args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parsed = parse_output(lines)
    phases = sorted(parsed["phases"], key=lambda p: p["seconds"], reverse=True)
    report = {
        "benchmark": "bench_suite",
        "command": shlex.join(["python", "benchmarks/bench_suite.py", "--", *pytest_args]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_start": load_start, "load_average_end": load_average()},
        "exit_status": code,
        "pytest_s": parsed["pytest_s"],
        "wall_s": round(wall, 2),
        "worker_s": round(sum(p["seconds"] for p in phases), 2),
        # CPU seconds of pytest and every process it waited for (the processes tests
        # start, the servers): what the machine's cores had to give
        "cpu_s": round(cpu, 1),
        "tests": parsed["tests"],
        "slowest": phases[:SLOWEST],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.phases:
        args.phases.write_text(json.dumps(phases, indent=1) + "\n")
    print(f"\nslowest {SLOWEST}:")
    for phase in report["slowest"]:
        print(f"{phase['seconds']:>8.2f} s  {phase['phase']:<8} {phase['test']}")
    print(f"pytest {report['pytest_s']} s (wall {report['wall_s']} s), "
          f"{report['worker_s']} s summed over tests, {report['cpu_s']} s of CPU; "
          f"wrote {args.out}")
    if report["pytest_s"] is not None:
        target = "make test-fast" if "unit" in pytest_args else "make test"
        print(f"for README.md: {readme_figure(target, report)}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
