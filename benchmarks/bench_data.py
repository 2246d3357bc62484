"""Benchmark of the dataset manager on a large ``text_intent`` CSV.

Usage:
    python benchmarks/bench_data.py [--rows N] [--workdir DIR] [--out FILE] [--seed S]

Generates a deterministic N-row CSV (default 1,000,000) by recombining the
bundled CLINC150 sample, then runs each step in a fresh subprocess and records
its wall time and peak RSS (``ru_maxrss`` from ``os.wait4``):

- ``imports``: the interpreter plus what a commit imports (the RSS baseline);
- ``floor``: ``pandas.read_csv`` + ``DataFrame.to_parquet``, the least any commit can do;
- ``commit``: ``dlforge data commit bench --source big.csv`` (after a tiny ``create``);
- ``snapshot``: ``dlforge data snapshot bench``.

Targets: commit throughput >= 0.5 x floor; commit memory <= 3 x the CSV size.
Prints a table and writes every figure as JSON (default benchmarks/results/bench_data.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "raw" / "clinc150" / "part-a.csv"
RESULTS = ROOT / "benchmarks" / "results"
MIB = 1 << 20
THROUGHPUT_TARGET, MEMORY_TARGET = 0.5, 3.0
INTERJECTIONS = ("hey", "ok", "please", "so", "well", "hi there", "quick question")
MULTI_LABEL_SHARE, COMMA_SHARE = 0.02, 0.03

IMPORTS = ("import dlforge.data, dlforge.data.store, dlforge.data.snapshot, "
           "dlforge.data.types.text_intent, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, "
           "pandera.pandas")
FLOOR = """import sys, pandas
frame = pandas.read_csv(sys.argv[1], header=None, names=["utterance", "labels"], dtype=str,
                        keep_default_na=False)
frame.to_parquet(sys.argv[2])
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big CSV")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the CSV, store and snapshots (default: a temp dir "
                             "under benchmarks/results/, removed afterwards)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_data.json")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_sample(path: Path = SAMPLE) -> dict[str, list[list[str]]]:
    """Sample utterances as word lists, grouped by label."""
    groups: dict[str, list[list[str]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        for utterance, labels in csv.reader(handle):
            groups[labels].append(utterance.split())
    return dict(sorted(groups.items()))


def synth_row(rng: random.Random, groups: dict, labels: list[str]) -> tuple[str, str]:
    """One row: the head of one utterance of a label joined to the tail of another."""
    label = rng.choice(labels)
    head, tail = rng.choice(groups[label]), rng.choice(groups[label])
    words = head[: rng.randint(1, len(head))] + tail[rng.randint(0, len(tail)) :]
    utterance = " ".join(words)
    if rng.random() < COMMA_SHARE:
        utterance = f"{rng.choice(INTERJECTIONS)}, {utterance}"
    if rng.random() < MULTI_LABEL_SHARE:
        other = rng.choice(labels)
        label = f"{label};{other}" if other != label else label
    return utterance, label


def generate_csv(path: Path, rows: int, seed: int) -> None:
    """Write ``rows`` deterministic rows ``utterance,labels`` (no header) to ``path``."""
    rng, groups = random.Random(seed), load_sample()
    labels = list(groups)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for start in range(0, rows, 100_000):
            writer.writerows(synth_row(rng, groups, labels)
                             for _ in range(min(100_000, rows - start)))


def write_tiny_csv(path: Path, rows: int = 50) -> None:
    """The first ``rows`` lines of the bundled sample, for ``dlforge data create``."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
    path.write_text("".join(lines), encoding="utf-8")


def measure(name: str, cmd: list[str], logs: Path) -> dict:
    """Run ``cmd`` in a fresh process; its wall time, peak RSS and stdout."""
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}): {err_path.read_text()[-2000:]}")
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "stdout": out_path.read_text()}


def dlforge(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dlforge", "data", "--store", str(work / "store"),
            "--snapshots", str(work / "snapshots"), *args]


def run_steps(work: Path, big: Path) -> dict[str, dict]:
    """Run the baseline, floor, create, commit and snapshot subprocesses in order."""
    for folder in ("store", "snapshots", "logs"):
        shutil.rmtree(work / folder, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir()
    tiny = work / "small.csv"
    write_tiny_csv(tiny)
    steps = {"imports": measure("imports", [sys.executable, "-c", IMPORTS], logs)}
    floor = [sys.executable, "-c", FLOOR, str(big), str(work / "floor.parquet")]
    steps["floor"] = measure("floor", floor, logs)
    measure("create", dlforge(work, "create", "bench", "--type", "text_intent",
                              "--source", str(tiny)), logs)
    steps["commit"] = measure("commit", dlforge(work, "commit", "bench", "--source", str(big)),
                              logs)
    steps["snapshot"] = measure("snapshot", dlforge(work, "snapshot", "bench"), logs)
    return steps


def summarise(steps: dict[str, dict], rows: int, csv_mib: float) -> dict:
    """Derived figures: rows/s, RSS above the import baseline, ratios against the CSV size."""
    base = steps["imports"]["peak_rss_mib"]
    for name, step in steps.items():
        step.pop("stdout", None)
        if name != "imports":
            step["rows_per_s"] = round(rows / step["wall_s"])
            step["rss_above_imports_mib"] = round(step["peak_rss_mib"] - base, 1)
            step["rss_over_csv"] = round(step["peak_rss_mib"] / csv_mib, 2)
            step["rss_above_imports_over_csv"] = round(step["rss_above_imports_mib"] / csv_mib, 2)
    commit = steps["commit"]
    ratio = round(commit["rows_per_s"] / steps["floor"]["rows_per_s"], 3)
    return {
        "throughput_ratio_commit_over_floor": ratio,
        "throughput_target": THROUGHPUT_TARGET, "throughput_ok": ratio >= THROUGHPUT_TARGET,
        "memory_target": MEMORY_TARGET,
        "memory_ok_peak": commit["rss_over_csv"] <= MEMORY_TARGET,
        "memory_ok_above_imports": commit["rss_above_imports_over_csv"] <= MEMORY_TARGET,
    }


def environment() -> dict:
    import pandas
    import pyarrow

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}


def render(report: dict) -> str:
    """The human-readable table of a report."""
    head = ("step", "wall s", "rows/s", "peak MiB", "-imports MiB", "peak/CSV", "-imports/CSV")
    lines = [f"{report['rows']:,} rows, CSV {report['csv_mib']:.1f} MiB "
             f"(generated in {report['generate_s']:.1f} s)", "",
             "{:<9}{:>8}{:>11}{:>10}{:>14}{:>10}{:>14}".format(*head)]
    for name, s in report["steps"].items():
        cells = [s.get(k, "") for k in ("rows_per_s", "rss_above_imports_mib", "rss_over_csv",
                                         "rss_above_imports_over_csv")]
        rate = f"{cells[0]:,}" if cells[0] != "" else ""
        lines.append(f"{name:<9}{s['wall_s']:>8.2f}{rate:>11}{s['peak_rss_mib']:>10.1f}"
                     f"{cells[1]!s:>14}{cells[2]!s:>10}{cells[3]!s:>14}")
    t = report["targets"]
    ok = {True: "ok", False: "MISSED"}
    commit = report["steps"]["commit"]
    lines += ["",
              f"commit/floor throughput: {t['throughput_ratio_commit_over_floor']:.3f} "
              f"(target >= {THROUGHPUT_TARGET}) {ok[t['throughput_ok']]}",
              f"commit peak RSS / CSV: {commit['rss_over_csv']:.2f} "
              f"(target <= {MEMORY_TARGET}) {ok[t['memory_ok_peak']]}",
              f"commit (peak - imports) / CSV: {commit['rss_above_imports_over_csv']:.2f} "
              f"(target <= {MEMORY_TARGET}) {ok[t['memory_ok_above_imports']]}"]
    return "\n".join(lines)


def bench(rows: int, work: Path, seed: int) -> dict:
    """Generate the CSV, run every step and return the full report."""
    big = work / "big.csv"
    start = time.perf_counter()
    generate_csv(big, rows, seed)
    generate_s = time.perf_counter() - start
    csv_mib = big.stat().st_size / MIB
    steps = run_steps(work, big)
    committed = json.loads(steps["commit"]["stdout"])["rows"]
    if committed != rows:
        sys.exit(f"commit stored {committed} rows, expected {rows}")
    steps["snapshot"]["version"] = steps["snapshot"]["stdout"].strip()
    return {"rows": rows, "seed": seed, "csv_mib": round(csv_mib, 2),
            "generate_s": round(generate_s, 2), "environment": environment(),
            "steps": steps, "targets": summarise(steps, rows, csv_mib)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-data-", dir=RESULTS))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = bench(args.rows, work, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
