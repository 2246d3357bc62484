"""Benchmark: the CPU of a stage command, its start-up without the garbage collector.

Usage:
    python benchmarks/bench_startup.py [--repeats 3] [--out FILE]

Builds a small text dataset and its snapshot in a temp folder (300 sentences, three
intents), then runs ``dlforge train`` (3 epochs, a small network), ``dlforge
evaluate`` and ``dlforge register`` on it, each in a fresh process, two ways:

- ``program``: ``python -m dlforge``, the command as users run it. Its start-up
  (composing, checking, importing torch, Lightning and MLflow) runs without the
  garbage collector, and the stage starts with what was loaded frozen
  (:func:`dlforge.cli.stage.run_stage`);
- ``called``: ``dlforge.cli.main(argv)`` called from a small program, which leaves
  the collector as Python sets it: the same command, as it ran before.

The two ways alternate (program first, then called first), ``--repeats`` times
per command. Each run's CPU is the process's user + system time (``os.wait4``), so
the machine's other load moves it far less than the wall time, which is kept too.
Writes every run and each command's medians (default benchmarks/results/startup.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORDS = {"music": ["guitar", "song", "album", "band", "lyrics", "chord"],
         "weather": ["rain", "umbrella", "forecast", "sunny", "storm", "cloud"],
         "travel": ["flight", "hotel", "passport", "airport", "luggage", "visa"]}
WAYS = {"program": ["-m", "dlforge"],
        "called": ["-c", "import sys; from dlforge.cli import main; sys.exit(main(sys.argv[1:]))"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way per command")
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    return parser.parse_args(argv)


def make_project(root: Path) -> None:
    """A committed dataset ``toy`` and its snapshot, where ``dlforge train`` finds it."""
    from dlforge.data import SnapshotStore, Store

    rng = random.Random(0)
    rows = [f"{' '.join(rng.sample(WORDS[label], 3))} w{i},{label}\n"
            for i, label in enumerate(rng.choice(sorted(WORDS)) for _ in range(300))]
    source = root / "sources" / "toy.csv"
    source.parent.mkdir(parents=True)
    source.write_text("".join(rows))
    store = Store(root / "data" / "store")
    store.create("toy", "text_intent", source)
    ref = SnapshotStore(root / "data" / "snapshots", store).build("toy")
    (root / "outputs" / "intent").mkdir(parents=True)
    (root / "outputs" / "intent" / "snapshot.json").write_text(json.dumps(
        {"dataset": "toy", "version": ref.version, "path": str(ref.path)}))


def commands(root: Path) -> dict[str, list[str]]:
    common = ["experiment=intent", f"paths.root={root}", f"paths.mlflow_dir={root}/mlruns",
              "dataset.name=toy", "tracking.experiment=startup"]
    return {"train": ["train", *common, "trainer.max_epochs=3", "hpo.enabled=false",
                      "trainer.enable_progress_bar=false", "model.net.embed_dim=16",
                      "model.net.hidden_dim=16"],
            "evaluate": ["evaluate", *common],
            "register": ["register", *common, "registry.model_name=startup"]}


def run(way: str, argv: list[str], env: dict) -> dict:
    """One command in a fresh process: its CPU and wall seconds."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *WAYS[way], *argv], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{way} {argv[0]} failed:\n{stderr.decode(errors='replace')[-3000:]}")
    process.returncode = 0  # reaped by wait4 above
    return {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "wall_s": round(time.perf_counter() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "DLFORGE_CONFIG_DIR": str(ROOT / "conf")}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        make_project(root)
        for name, command in commands(root).items():
            runs = {way: [] for way in WAYS}
            for repeat in range(args.repeats):
                order = list(WAYS) if repeat % 2 == 0 else list(reversed(WAYS))
                for way in order:
                    runs[way].append(run(way, command, env))
                    print(f"{name:9s} {way:8s} {runs[way][-1]['cpu_s']:6.2f} CPU-s "
                          f"{runs[way][-1]['wall_s']:6.2f} s", flush=True)
            median = {way: statistics.median(r["cpu_s"] for r in runs[way]) for way in WAYS}
            results[name] = {"runs": runs, "median_cpu_s": median,
                             "cpu_saved": round(1 - median["program"] / median["called"], 3)}
    record = {"benchmark": "bench_startup",
              "command": " ".join(["python benchmarks/bench_startup.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "repeats": args.repeats,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "load_average_end": [round(x, 2) for x in os.getloadavg()]},
              "commands": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{'command':9s} {'program':>8s} {'called':>8s}  CPU saved (medians, CPU-s)")
    for name, result in results.items():
        median = result["median_cpu_s"]
        print(f"{name:9s} {median['program']:8.2f} {median['called']:8.2f}  "
              f"{result['cpu_saved']:.0%}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
