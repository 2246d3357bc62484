"""Benchmark: `dlforge review` in bounded memory, whatever the size of the test split.

Usage:
    python benchmarks/bench_review.py [--rows 5000 50000 500000] [--classes 150]
        [--out FILE]

For each N, builds a project in a temp folder: a git repository whose last commit
holds one experiment's results (the frozen training config, the evaluation's
metrics and per-class scores, and N (actual, predicted) rows over ``--classes``
labels, about 85% right), and a working tree with the next run's results on the
same test split (about 88% right). Then runs ``dlforge review --base HEAD --format
json`` there in a fresh process and records its wall time and peak RSS
and CPU time (``ru_maxrss``, ``ru_utime + ru_stime`` from ``os.wait4``; a small
launcher starts the review, so the benchmark's own memory is not counted) and
the machine's load average (wall time depends on it, CPU time much less).
Target: under 300 MB peak RSS at 500,000 rows.

Writes every figure as JSON (default benchmarks/results/review.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_MIB, TARGET_ROWS = 300, 500_000

# Linux carries a process's peak RSS across exec: a child started from this process
# would report at least this one's. A small launcher starts the review instead.
LAUNCH = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
               "cpu_s": usage.ru_utime + usage.ru_stime}, out)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000, 50_000, 500_000],
                        help="test rows of each side, one project per value")
    parser.add_argument("--classes", type=int, default=150, help="labels (CLINC150: 150)")
    parser.add_argument("--out", type=Path, default=RESULTS / "review.json")
    return parser.parse_args(argv)


def write_side(exp: Path, rows: int, classes: int, right: float, lr: float) -> None:
    """One run's results of experiment folder ``exp``: ``right`` of ``rows`` correct."""
    (exp / "train").mkdir(parents=True, exist_ok=True)
    (exp / "eval").mkdir(exist_ok=True)
    (exp / "train/config.yaml").write_text(f"optimizer:\n  lr: {lr}\ntrainer:\n  max_epochs: 5\n")
    truth, guess = random.Random(0), random.Random(int(right * 1000))
    hits, support, chosen = [0] * classes, [0] * classes, [0] * classes
    with (exp / "eval/confusion.csv").open("w") as out:
        out.write("actual,predicted\n")
        for _ in range(rows):
            actual = truth.randrange(classes)
            predicted = actual if guess.random() < right else guess.randrange(classes)
            hits[actual] += actual == predicted
            support[actual] += 1
            chosen[predicted] += 1
            out.write(f"intent_{actual},intent_{predicted}\n")
    f1 = [2 * h / (s + c) for h, s, c in zip(hits, support, chosen, strict=True) if s]
    (exp / "eval/metrics.json").write_text(json.dumps(
        {"accuracy": sum(hits) / rows, "macro_f1": sum(f1) / len(f1), "examples": rows,
         "snapshot": "s1"}))
    (exp / "eval/per_class.csv").write_text("label,precision,recall,f1,support\n" + "".join(
        f"intent_{k},1,1,1,{rows // classes}\n" for k in range(classes)))


def build_project(folder: Path, rows: int, classes: int) -> Path:
    """A git repository with a committed base run and a head run in the working tree."""
    project = folder / f"review-{rows}"
    (project / "workflow").mkdir(parents=True)
    (project / "workflow/config.yaml").write_text("experiments: [intent]\n")
    write_side(project / "outputs/intent", rows, classes, right=0.85, lr=0.003)
    git = ["git", "-C", str(project), "-c", "user.name=bench", "-c", "user.email=b@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    write_side(project / "outputs/intent", rows, classes, right=0.88, lr=0.01)
    return project


def measure(project: Path) -> dict:
    """Wall time and peak RSS of ``dlforge review`` in ``project``, and its intervals."""
    usage, report = project / "usage.json", project / "review.json"
    command = [sys.executable, "-m", "dlforge", "review", "--base", "HEAD", "--format", "json"]
    start = time.perf_counter()
    with report.open("w") as out:
        done = subprocess.run([sys.executable, "-c", LAUNCH, str(usage), *command], cwd=project,
                              stdout=out, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    child = json.loads(usage.read_text())
    if done.returncode != 0 or child["code"] != 0:
        sys.exit(f"dlforge review failed in {project}:\n{done.stderr[-3000:]}")
    metrics = json.loads(report.read_text())["experiments"]["intent"]["metrics"]
    return {"wall_s": round(wall, 2), "cpu_s": round(child["cpu_s"], 2),
            "peak_rss_mib": round(child["maxrss_kib"] / 1024, 1),
            "intervals": {m["metric"]: m["interval"] for m in metrics if m["interval"]}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="dlforge-bench-review-") as folder:
        for rows in args.rows:
            figures = {"rows": rows, **measure(build_project(Path(folder), rows, args.classes))}
            results.append(figures)
            print(f"{rows:>9} rows: {figures['wall_s']:>6.1f} s ({figures['cpu_s']:.1f} s CPU), "
                  f"{figures['peak_rss_mib']:>7.1f} MiB peak RSS", flush=True)
    largest = [r for r in results if r["rows"] >= TARGET_ROWS]
    report = {"benchmark": "bench_review", "classes": args.classes,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "load_average": [round(x, 2) for x in os.getloadavg()]},
              "target": {"rows": TARGET_ROWS, "peak_rss_mib": TARGET_MIB},
              "ok": all(r["peak_rss_mib"] <= TARGET_MIB for r in largest) if largest else None,
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if report["ok"] is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
