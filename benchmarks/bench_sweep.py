"""The sweep targets: what pruning saves, and what a second worker adds.

Usage:
    python benchmarks/bench_sweep.py [--trials 10] [--epochs 8] [--only pruning|workers]
    python benchmarks/bench_sweep.py --only postgres (--postgres | --storage postgresql://...)

Runs `dlforge sweep experiment=intent` as a user does (a fresh process each,
outputs, study and MLflow store in a temporary folder) on the snapshot named
by outputs/intent/snapshot.json (run `make run`, or the ingest and snapshot
stages, first), with the same sampler seed and the same trial budget:

    pruned       the default pruner, one worker
    unpruned     hpo/pruner=none, one worker
    one_worker   hpo/pruner=none, one worker (--worker-trials of --worker-epochs)
    two_workers  the same with two workers

    pg_one_process    hpo.storage=postgresql://..., one `dlforge sweep` process
    pg_two_processes  two `dlforge sweep` processes started together on one
                      study, each in its own folder with its own MLflow store
                      (as on two hosts): scale-out through the database

``--postgres`` starts a throwaway PostgreSQL server (tests/services.py);
``--storage URL`` uses yours (each run gets a study of its own).

The worker comparisons search only the learning rate and dropout, so that
every trial costs about the same and trials per minute measure the workers,
not which batch sizes the sampler happened to pick.

All with one torch thread per worker; run nothing else on the machine
meanwhile. Reports total epochs, wall time, best validation accuracy and
completed trials per minute. Targets: pruning uses
>= 30% fewer epochs with the best accuracy within 1 point; two workers
complete >= 1.5x the trials per minute of one, and so do two processes on
PostgreSQL. Writes benchmarks/results/bench_sweep.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def sweep_command(root: Path, snapshot: str, trials: int, epochs: int,
                  *overrides: str) -> list[str]:
    return [sys.executable, "-m", "dlforge", "sweep", "experiment=intent",
            f"paths.root={root}", f"paths.snapshot_dir={ROOT / 'data' / 'snapshots'}",
            f"snapshot={snapshot}", f"hpo.n_trials={trials}",
            f"hpo.overrides.trainer.max_epochs={epochs}", "hpo.threads_per_worker=1",
            "trainer.enable_progress_bar=false", *overrides]


def run_sweep(root: Path, snapshot: str, trials: int, epochs: int, *overrides: str) -> dict:
    started = time.perf_counter()
    result = subprocess.run(sweep_command(root, snapshot, trials, epochs, *overrides), cwd=ROOT,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    summary = json.loads((root / "outputs" / "intent" / "sweep" / "summary.json").read_text())
    return _figures(summary, seconds)


def run_processes(roots: list[Path], snapshot: str, trials: int, epochs: int,
                  *overrides: str) -> dict:
    """``len(roots)`` sweep processes started together on one study; timed until the last ends."""
    started = time.perf_counter()
    procs = [subprocess.Popen(sweep_command(root, snapshot, trials, epochs, *overrides),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for root in roots]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - started
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0:
            raise SystemExit(err[-3000:])
    # Every process waits for the study to be full: the last summary holds every trial.
    summaries = [json.loads((root / "outputs/intent/sweep/summary.json").read_text())
                 for root in roots]
    summary = max(summaries, key=lambda found: len(found["trials"]))
    return {**_figures(summary, seconds), "processes": len(roots)}


def _figures(summary: dict, seconds: float) -> dict:
    finished = [t for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    return {"wall_seconds": round(seconds, 1), "epochs": summary["epochs"],
            "counts": summary["counts"], "best_val_acc": summary["best"]["value"],
            "best_params": summary["best"]["params"],
            "trials_per_minute": round(len(finished) / seconds * 60, 3)}


def postgres_runs(args, snapshot: str, same_cost: list[str], report: dict) -> None:
    """One process, then two, on PostgreSQL; each run on a study of its own."""
    with contextlib.ExitStack() as stack:
        storage = args.storage
        if args.postgres:
            sys.path.insert(0, str(ROOT))
            from tests.services import postgres_server

            server = stack.enter_context(postgres_server())
            storage = server.database("bench")
        tag = time.strftime("%Y%m%d%H%M%S")
        for name, processes in (("pg_one_process", 1), ("pg_two_processes", 2)):
            roots = [Path(stack.enter_context(tempfile.TemporaryDirectory()))
                     for _ in range(processes)]
            report[name] = run_processes(
                roots, snapshot, args.worker_trials, args.worker_epochs, "hpo.n_workers=1",
                "hpo/pruner=none", f"hpo.storage={storage}",
                f"hpo.study_name=bench-{tag}-{processes}", *same_cost)
            print(f"{name:>16}: {report[name]}", flush=True)
    speedup = (report["pg_two_processes"]["trials_per_minute"]
               / report["pg_one_process"]["trials_per_minute"])
    report["postgres"] = {"storage": _redact(storage), "speedup": round(speedup, 2),
                          "ok": speedup >= 1.5}
    print(f"postgres: 2 sweep processes complete {speedup:.2f}x the trials per minute of 1 "
          f"(target >= 1.5x) {'ok' if report['postgres']['ok'] else 'MISSED'}")


def _redact(url: str) -> str:
    from dlforge.hpo.storage import redact

    return redact(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial")
    parser.add_argument("--pruner", default=None,
                        help="a conf/hpo/pruner choice to compare (default: the default)")
    parser.add_argument("--worker-trials", type=int, default=6)
    parser.add_argument("--worker-epochs", type=int, default=4)
    parser.add_argument("--only", choices=("pruning", "workers", "postgres"))
    parser.add_argument("--storage", help="a postgresql:// URL for the PostgreSQL comparison")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server for the comparison")
    args = parser.parse_args()
    if args.only == "postgres" and not (args.storage or args.postgres):
        parser.error("--only postgres needs --storage URL or --postgres")
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
    part = {"pruning": ("pruned", "unpruned"), "workers": ("one_worker", "two_workers"),
            "postgres": ()}
    for name, (trials, epochs, overrides) in variants.items():
        if args.only and name not in part[args.only]:
            continue
        with tempfile.TemporaryDirectory() as root:
            report[name] = run_sweep(Path(root), snapshot, trials, epochs, *overrides)
        print(f"{name:>12}: {report[name]}", flush=True)
    if args.storage or args.postgres:
        postgres_runs(args, snapshot, same_cost, report)
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
