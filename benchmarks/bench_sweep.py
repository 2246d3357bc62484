"""The sweep targets: what pruning saves, and what a second worker adds.

Usage:
    python benchmarks/bench_sweep.py [--trials 10] [--epochs 8] [--only pruning|workers]

Runs `dlforge sweep experiment=intent` as a user does (a fresh process each,
outputs, study and MLflow store in a temporary folder) on the snapshot named
by outputs/intent/snapshot.json (run `make run`, or the ingest and snapshot
stages, first), with the same sampler seed and the same trial budget:

    pruned       the default pruner, one worker
    unpruned     hpo/pruner=none, one worker
    one_worker   hpo/pruner=none, one worker (--worker-trials of --worker-epochs)
    two_workers  the same with two workers

The worker comparison searches only the learning rate and dropout, so that
every trial costs about the same and trials per minute measure the workers,
not which batch sizes the sampler happened to pick.

All with one torch thread per worker; run nothing else on the machine
meanwhile. Reports total epochs, wall time, best validation accuracy and
completed trials per minute. Targets: pruning uses
>= 30% fewer epochs with the best accuracy within 1 point; two workers
complete >= 1.5x the trials per minute of one. Writes
benchmarks/results/bench_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run_sweep(root: Path, snapshot: str, trials: int, epochs: int, *overrides: str) -> dict:
    command = [sys.executable, "-m", "dlforge", "sweep", "experiment=intent",
               f"paths.root={root}", f"paths.snapshot_dir={ROOT / 'data' / 'snapshots'}",
               f"snapshot={snapshot}", f"hpo.n_trials={trials}",
               f"hpo.overrides.trainer.max_epochs={epochs}", "hpo.threads_per_worker=1",
               "trainer.enable_progress_bar=false", *overrides]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    summary = json.loads((root / "outputs" / "intent" / "sweep" / "summary.json").read_text())
    finished = [t for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    return {"wall_seconds": round(seconds, 1), "epochs": summary["epochs"],
            "counts": summary["counts"], "best_val_acc": summary["best"]["value"],
            "best_params": summary["best"]["params"],
            "trials_per_minute": round(len(finished) / seconds * 60, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial")
    parser.add_argument("--pruner", default=None,
                        help="a conf/hpo/pruner choice to compare (default: the default)")
    parser.add_argument("--worker-trials", type=int, default=6)
    parser.add_argument("--worker-epochs", type=int, default=4)
    parser.add_argument("--only", choices=("pruning", "workers"))
    args = parser.parse_args()
    snapshot = json.loads((ROOT / "outputs" / "intent" / "snapshot.json").read_text())["version"]
    report: dict = {"snapshot": snapshot, "trials": args.trials, "epochs_per_trial": args.epochs,
                    "worker_trials": args.worker_trials, "worker_epochs": args.worker_epochs}
    pruner = [f"hpo/pruner={args.pruner}"] if args.pruner else []
    variants = {
        "pruned": (args.trials, args.epochs, ["hpo.n_workers=1", *pruner]),
        "unpruned": (args.trials, args.epochs, ["hpo.n_workers=1", "hpo/pruner=none"]),
        "one_worker": (args.worker_trials, args.worker_epochs,
                       ["hpo.n_workers=1", "hpo/pruner=none"]),
        "two_workers": (args.worker_trials, args.worker_epochs,
                        ["hpo.n_workers=2", "hpo/pruner=none"]),
    }
    same_cost = ["~hpo.space", "+hpo.space={optimizer.lr:{type:float,low:0.002,high:0.01,"
                 "log:true},model.net.dropout:{type:float,low:0.0,high:0.5}}"]
    for name in ("one_worker", "two_workers"):
        variants[name][2].extend(same_cost)
    part = {"pruning": ("pruned", "unpruned"), "workers": ("one_worker", "two_workers")}
    for name, (trials, epochs, overrides) in variants.items():
        if args.only and name not in part[args.only]:
            continue
        with tempfile.TemporaryDirectory() as root:
            report[name] = run_sweep(Path(root), snapshot, trials, epochs, *overrides)
        print(f"{name:>12}: {report[name]}", flush=True)
    if "pruned" in report:
        pruned, unpruned = report["pruned"], report["unpruned"]
        saved = 1 - pruned["epochs"] / unpruned["epochs"]
        acc_gap = unpruned["best_val_acc"] - pruned["best_val_acc"]
        report["pruning"] = {"epochs_saved": round(saved, 3), "best_acc_gap": round(acc_gap, 4),
                             "wall_saved": round(1 - pruned["wall_seconds"]
                                                 / unpruned["wall_seconds"], 3),
                             "ok": saved >= 0.30 and acc_gap <= 0.01}
        print(f"pruning: {saved:.0%} fewer epochs ({pruned['epochs']} vs {unpruned['epochs']}), "
              f"wall {pruned['wall_seconds']} s vs {unpruned['wall_seconds']} s, best val acc "
              f"{pruned['best_val_acc']:.4f} vs {unpruned['best_val_acc']:.4f} (targets: "
              f">= 30% fewer, within 0.01) {'ok' if report['pruning']['ok'] else 'MISSED'}")
    if "two_workers" in report:
        speedup = report["two_workers"]["trials_per_minute"] / report["one_worker"][
            "trials_per_minute"]
        report["workers"] = {"speedup": round(speedup, 2), "ok": speedup >= 1.5}
        print(f"workers: 2 workers complete {speedup:.2f}x the trials per minute of 1 "
              f"(target >= 1.5x) {'ok' if report['workers']['ok'] else 'MISSED'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_sweep{'_' + args.only if args.only else ''}.json").write_text(
        json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
