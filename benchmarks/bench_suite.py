"""The test suite's time: the whole run, the slowest tests, and the time summed over workers.

Usage:
    python benchmarks/bench_suite.py [--out FILE] [-- PYTEST_ARGS ...]
    python benchmarks/bench_suite.py                       # the whole suite, as `make test`
    python benchmarks/bench_suite.py --out benchmarks/results/suite-fast.json \
        -- -m unit -n 2 --dist worksteal                   # `make test-fast`, 2 CPUs
    python benchmarks/bench_suite.py --phases phases.json  # and every test's seconds
    python benchmarks/bench_suite.py --processes cpu.json  # and where the CPU goes

Runs ``pytest PYTEST_ARGS --durations=0 --durations-min=0 -q`` in this interpreter
(PYTEST_ARGS: ``-n CPUS+1 --dist worksteal``, as ``make test``, when none are given;
the run's files in a folder of its own, as ``make test``) and shows its output as it
goes, less the per-test durations. From pytest's durations and its final line it
records pytest's own seconds, the counts of passed, failed, skipped and erroring
tests, the 10 slowest phases (setup, call or teardown of one test), and the seconds
of every phase summed: with pytest-xdist the time the workers spent, which the
run's wall time divides by the parallelism it got; the CPU seconds of pytest and
the processes it waited for; and the CPU seconds the whole machine worked meanwhile
(Linux), which also counts what pytest never waited for, such as the processes a fork
server starts, or another job. Beside them: the machine's CPUs, its load average at
the start and at the end (another job on the machine slows the suite), and Python's
version.

``--processes FILE`` also records every Python process the run starts, as it exits
(benchmarks/process_record/sitecustomize.py, put first on PYTHONPATH): its own CPU
seconds, summed in FILE by command (``dlforge train``, ``snakemake``, ``dvc status``,
the pytest workers...) and by the test that started it; and each test's own CPU in
the worker that ran it (benchmarks/process_record/suite_cpu.py, a pytest plugin).
Most first: which tests, and which of their processes, the suite's CPU goes to.
(Processes that end by a signal or ``os._exit``, and those a test starts without
PYTHONPATH, are not in it.)

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
    parser.add_argument("--processes", type=Path, metavar="FILE",
                        help="also record the CPU seconds of every Python process the run "
                             "starts, summed by command and by test, to FILE (JSON)")
    args = parser.parse_args(argv)
    for option, path in (("--phases", args.phases), ("--processes", args.processes)):
        if path is not None and not path.resolve().parent.is_dir():  # not after the run
            parser.error(f"{option} {path}: no folder {path.resolve().parent} to write it "
                         "in; create it, or name a file in a folder that exists")
    return args


def command_kind(argv: list[str], test: str | None) -> str:
    """What a recorded process ran, by its interpreter's command line: ``dlforge train``,
    ``snakemake``, ``dvc status``, ``pytest worker``, ``python -c``..."""
    args = argv[1:]
    while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
        args = args[2:] if args[0] in ("-X", "-W") else args[1:]
    if not args:
        return "python"
    if args[0] == "-c":  # pytest-xdist starts its workers so; they run no test as they end
        return "python -c" if test else "pytest worker"
    name, rest = (args[1], args[2:]) if args[0] == "-m" else (Path(args[0]).stem, args[1:])
    if name == "__main__":  # `python -m PACKAGE` seen from inside: the package
        name = Path(args[0]).parent.name
    word = next((a for a in rest if a[:1].isalpha() and not {"=", "/", "{", " "} & set(a)), "")
    return f"{name} {word}".strip()


def summarise_processes(folder: Path) -> dict:
    """The records in ``folder`` (benchmarks/process_record), summed by command and by
    test (its phase left out), most CPU first."""
    by_command: dict[str, list] = {}
    by_test: dict[str, list] = {}
    for path in folder.glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a process killed as it wrote
        test = (entry.get("test") or "").rsplit(" (", 1)[0] or None
        for key, table in ((command_kind(entry["argv"], test), by_command),
                           (test or "(no test: pytest and its workers)", by_test)):
            row = table.setdefault(key, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += entry["cpu_s"]
    for path in folder.glob("in-process-*.jsonl"):  # each test's own, in its worker
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            by_test.setdefault(entry["test"], [0, 0.0, 0.0])[2] += entry["cpu_s"]

    def rows(table: dict, name: str, in_process: bool = False) -> list[dict]:
        found = [{name: key, "processes": n, "cpu_s": round(cpu, 1),
                  **({"in_process_cpu_s": round(own, 1)} if in_process else {})}
                 for key, (n, cpu, own) in table.items()]
        return sorted(found, key=lambda row: -(row["cpu_s"] + row.get("in_process_cpu_s", 0)))

    return {"processes": sum(n for n, _, _ in by_command.values()),
            "cpu_s": round(sum(cpu for _, cpu, _ in by_command.values()), 1),
            "by_command": rows(by_command, "command"),
            "by_test": rows(by_test, "test", in_process=True)}


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


def run_pytest(pytest_args: list[str], env: dict | None = None) -> tuple[int, list[str], float]:
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
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "", **(env or {})}
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


def machine_busy_s(stat: Path = Path("/proc/stat")) -> float | None:
    """The CPU seconds the machine's cores have worked since it started, every process
    and the kernel's own (Linux's /proc/stat: user, nice, system, irq and softirq time;
    not idle, waiting on disk, or stolen by the host); None where there is no such file."""
    try:
        with stat.open() as lines:
            fields = [int(x) for x in lines.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    own, pytest_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = parse_args(own)
    started, load_start = datetime.now(UTC), load_average()
    before, busy_before = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_s()
    record = Path(tempfile.mkdtemp(prefix="dlforge-processes.")) if args.processes else None
    env = None if record is None else {
        "DLFORGE_PROCESS_RECORD": str(record),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks" / "process_record"),
                                                    os.environ.get("PYTHONPATH")]))}
    code, lines, wall = run_pytest(pytest_args if record is None else
                                   [*pytest_args, "-p", "suite_cpu"], env)
    after, busy_after = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_s()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    machine_cpu = None if None in (busy_before, busy_after) else busy_after - busy_before
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
        # what the whole machine worked meanwhile: also the processes pytest never
        # waited for (a fork server's children, a process left running) and any other
        # job; far above cpu_s, CPU is going where no test's process shows it
        "machine_cpu_s": None if machine_cpu is None else round(machine_cpu, 1),
        "tests": parsed["tests"],
        "slowest": phases[:SLOWEST],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.phases:
        args.phases.write_text(json.dumps(phases, indent=1) + "\n")
    if record is not None:
        processes = summarise_processes(record)
        shutil.rmtree(record, ignore_errors=True)
        args.processes.write_text(json.dumps(processes, indent=1) + "\n")
        print(f"\n{processes['processes']} Python processes recorded, "
              f"{processes['cpu_s']} s of CPU; the most by command (CPU s, processes):")
        for row in processes["by_command"][:SLOWEST]:
            print(f"{row['cpu_s']:>8.1f}  {row['processes']:>4}  {row['command']}")
        print("and by test (its processes' CPU s, how many, its own in its worker):")
        for row in processes["by_test"][:SLOWEST]:
            print(f"{row['cpu_s']:>8.1f}  {row['processes']:>4}  "
                  f"{row['in_process_cpu_s']:>7.1f}  {row['test']}")
    print(f"\nslowest {SLOWEST}:")
    for phase in report["slowest"]:
        print(f"{phase['seconds']:>8.2f} s  {phase['phase']:<8} {phase['test']}")
    print(f"pytest {report['pytest_s']} s (wall {report['wall_s']} s), "
          f"{report['worker_s']} s summed over tests, {report['cpu_s']} s of CPU "
          f"({report['machine_cpu_s']} s on the whole machine); wrote {args.out}")
    if report["pytest_s"] is not None:
        target = "make test-fast" if "unit" in pytest_args else "make test"
        print(f"for README.md: {readme_figure(target, report)}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
