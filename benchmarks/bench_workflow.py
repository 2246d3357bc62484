"""Benchmark of the workflow as a new user meets it: set-up and full run, no-op re-runs,
and the re-run after one parameter change, for Snakemake and for DVC.

Usage:
    python benchmarks/bench_workflow.py [--repeats 3] [--keep]

In a fresh ``git clone`` of this repository's HEAD (a temp folder; ``--keep`` keeps it):

1. ``make run``: venv set-up, sample pull, the whole graph for every experiment
   (target: 15 minutes on 2 cores);
2. ``snakemake --profile workflow/profiles/local`` again: nothing to do (target: 3 s);
3. ``dvc commit -f`` records the outputs Snakemake built (so DVC knows them without
   re-running), then ``dvc repro``: nothing to do (target: 3 s);
4. one parameter changed (``src/dlforge/conf/model/small_cnn.yaml`` dropout, the digits model):
   the Snakemake re-run (train, evaluate, register of digits), then another value
   and the ``dvc repro`` re-run.

Prints a table and writes benchmarks/results/bench_workflow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PARAM_FILE = Path("src/dlforge/conf/model/small_cnn.yaml")


def timed(cwd: Path, *cmd: str) -> tuple[float, str]:
    """Seconds a command took, and its output; fails loudly when it fails."""
    env = {**os.environ, "PATH": f"{cwd / '.venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def median_of(repeats: int, cwd: Path, *cmd: str, expect: str | None = None) -> float:
    times = []
    for _ in range(repeats):
        seconds, out = timed(cwd, *cmd)
        if expect is not None and expect not in out:
            raise SystemExit(f"{' '.join(cmd)} did work when nothing was to be done:\n{out}")
        times.append(seconds)
    return statistics.median(times)


def change_dropout(clone: Path, value: float) -> None:
    path = clone / PARAM_FILE
    lines = [f"  dropout: {value}" if line.strip().startswith("dropout:") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dlforge-bench-workflow-"))
    clone = folder / "dlforge"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    snakemake = (".venv/bin/snakemake", "--profile", "workflow/profiles/local")
    try:
        figures = {"make_run_s": timed(clone, "make", "run")[0]}
        print(f"make run: {figures['make_run_s']:.0f} s")
        figures["snakemake_noop_s"] = median_of(args.repeats, clone, *snakemake,
                                                expect="Nothing to be done")
        timed(clone, ".venv/bin/dvc", "commit", "--force", "--quiet")
        figures["dvc_repro_noop_s"] = median_of(args.repeats, clone, ".venv/bin/dvc", "repro",
                                                expect="Data and pipelines are up to date")
        change_dropout(clone, 0.2)
        figures["snakemake_param_change_s"], log = timed(clone, *snakemake)
        figures["snakemake_param_change_jobs"] = sorted(
            {line.split()[1].rstrip(":") for line in log.splitlines()
             if line.startswith(("rule ", "localrule "))} - {"all:", "all"})
        timed(clone, ".venv/bin/dvc", "commit", "--force", "--quiet")
        change_dropout(clone, 0.15)
        figures["dvc_param_change_s"], log = timed(clone, ".venv/bin/dvc", "repro")
        figures["dvc_param_change_stages"] = sorted(
            line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "repeats": args.repeats, **figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_workflow.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<28} {'seconds':>9}  target")
    for key, target in [("make_run_s", "<= 900"), ("snakemake_noop_s", "<= 3"),
                        ("dvc_repro_noop_s", "<= 3"), ("snakemake_param_change_s", ""),
                        ("dvc_param_change_s", "")]:
        print(f"{key:<28} {figures[key]:>9.1f}  {target}")
    print("Snakemake re-ran:", ", ".join(figures["snakemake_param_change_jobs"]))
    print("DVC re-ran:", ", ".join(figures["dvc_param_change_stages"]))


if __name__ == "__main__":
    main()
