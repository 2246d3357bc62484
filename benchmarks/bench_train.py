"""Benchmark of ``dlforge train`` against a plain PyTorch loop, plus MLflow's per-epoch cost.

Usage:
    python benchmarks/bench_train.py [--epochs N] [--repeats R] [--threads T] [--out FILE]

Trains the ``intent`` snapshot (outputs/intent/snapshot.json): embedding_bag model, batch
64, N epochs (default 5), a fresh subprocess per run, the variants alternated R times (2):

- ``dlforge``: ``dlforge.train.fit.train(cfg)`` with ``~callbacks.early_stopping``, no
  progress bar, ``paths.root`` in a temp folder (the repo's outputs/, mlruns/ untouched);
- ``plain``: a hand-written loop over the same encoded splits and collate
  (``SnapshotDataModule``), network, AdamW, cosine schedule, clipping, seed, threads;
- ``untracked``: ``dlforge`` with ``EpochHistory(run_id=None)``: no ``mlflow.log_metrics``.

samples/s = training examples / wall time of the fit loop: for dlforge
``metrics["samples_per_second"]``, whose ``train_seconds`` spans ``trainer.fit`` (sanity
check, epochs, a validation pass per epoch, checkpoints, callbacks); so the plain loop's
time includes a validation pass (loss, accuracy) per epoch too, no checkpoints.
MLflow overhead: time in ``EpochHistory.on_train_epoch_end`` per epoch, tracked minus
untracked (and, noisier, the fit-time difference). Headline: each variant's best run
(least disturbed by other load; each run's CPU stall from /proc/pressure/cpu is kept).
Prints a table and writes benchmarks/results/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("dlforge", "plain", "untracked")
RATIO_TARGET = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_train.json")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def compose_cfg(epochs: int, root: Path):
    """The train config every variant uses (the plain loop reads its arguments from it)."""
    from dlforge.core.config import compose

    version = json.loads((ROOT / "outputs" / "intent" / "snapshot.json").read_text())["version"]
    return compose("train", [
        "experiment=intent", f"paths.root={root}", f"paths.snapshot_dir={ROOT / 'data/snapshots'}",
        f"snapshot={version}", "resume=false", f"trainer.max_epochs={epochs}",
        "datamodule.batch_size=64", "~callbacks.early_stopping",
        "trainer.enable_progress_bar=false"])


def time_epoch_callback(history_cls, track: bool) -> list[float]:
    """Patch ``EpochHistory`` (optionally untracked); return the list its epoch-end times fill."""
    from dlforge.train import callbacks

    seconds: list[float] = []

    class Timed(history_cls):
        def __init__(self, run_id=None):
            super().__init__(run_id if track else None)

        def on_train_epoch_end(self, trainer, pl_module):
            start = time.perf_counter()
            super().on_train_epoch_end(trainer, pl_module)
            seconds.append(time.perf_counter() - start)

    callbacks.EpochHistory = Timed
    return seconds


def run_dlforge(epochs: int, root: Path, track: bool) -> dict:
    """The real train stage; its own throughput figures plus the epoch-end callback times."""
    import torch

    from dlforge.stages.train import train
    from dlforge.train.callbacks import EpochHistory

    callback_s = time_epoch_callback(EpochHistory, track)
    metrics = train(compose_cfg(epochs, root))
    return {"samples_per_s": metrics["samples_per_second"], "fit_s": metrics["train_seconds"],
            "epochs": metrics["epochs"], "val_acc": metrics["val/acc"],
            "callback_ms_per_epoch": round(1000 * statistics.mean(callback_s), 3),
            "threads": torch.get_num_threads()}


def run_plain(epochs: int, root: Path) -> dict:
    """A hand-written loop: same data, network, optimizer, schedule, clipping and seed."""
    import torch
    from hydra.utils import instantiate

    from dlforge.stages.common import experiment_snapshot
    from dlforge.train.data import SnapshotDataModule

    cfg = compose_cfg(epochs, root)
    torch.manual_seed(cfg.seed)
    data = SnapshotDataModule(experiment_snapshot(cfg), instantiate(cfg.model.encoder),
                              **cfg.datamodule)
    data.setup()
    net = instantiate(cfg.model.net, num_classes=data.num_classes, **data.encoder.model_inputs)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    scheduler, loss_fn = instantiate(cfg.scheduler)(optimizer), torch.nn.CrossEntropyLoss()
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss_fn(net(inputs), targets).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.trainer.gradient_clip_val)
            optimizer.step()
        scheduler.step()
        val_acc = validate(net, val_loader, loss_fn)
    seconds = time.perf_counter() - start
    return {"samples_per_s": round(len(data.splits["train"]) * epochs / seconds, 1),
            "fit_s": round(seconds, 2),
            "epochs": epochs, "val_acc": round(val_acc, 6), "threads": torch.get_num_threads()}


def validate(net, loader, loss_fn) -> float:
    """One validation pass (loss and accuracy, as dlforge's validation_step computes)."""
    import torch

    net.eval()
    correct = 0
    with torch.inference_mode():
        for inputs, targets in loader:
            logits = net(inputs)
            loss_fn(logits, targets)
            correct += int((logits.argmax(1) == targets).sum())
    return correct / len(loader.dataset)


def child(args: argparse.Namespace) -> None:
    """Run one variant in this (fresh) process; print its result as the last stdout line."""
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(run_plain(args.epochs, args.root) if args.child == "plain" else
                     run_dlforge(args.epochs, args.root, track=args.child == "dlforge")))


def cpu_stall_s() -> float | None:
    """Seconds some task waited for a CPU, since boot (Linux PSI); None where unavailable."""
    pressure = Path("/proc/pressure/cpu")
    return int(pressure.read_text().split("total=")[1].split()[0]) / 1e6 \
        if pressure.is_file() else None


def spawn(variant: str, args: argparse.Namespace, threads: int, logs: Path) -> dict:
    """Run one variant in a fresh subprocess with its own temp ``paths.root``."""
    stall, root = cpu_stall_s(), Path(tempfile.mkdtemp(prefix=f"bench-train-{variant}-"))
    log = logs / f"{variant}-{root.name}.log"
    cmd = [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs),
           "--threads", str(threads), "--root", str(root)]
    try:
        with log.open("w") as err:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"{variant} failed (exit {proc.returncode}): {log}\n{log.read_text()[-3000:]}")
    result = {"variant": variant, **json.loads(proc.stdout.strip().splitlines()[-1])}
    if stall is not None:
        result["cpu_stall_s"] = round(cpu_stall_s() - stall, 1)
    return result


def summarise(runs: list[dict], epochs: int) -> dict:
    """Best and median samples/s per variant, the ratio and the MLflow overhead."""
    by = {v: [r for r in runs if r["variant"] == v] for v in VARIANTS}
    best = {v: max(r["samples_per_s"] for r in rs) for v, rs in by.items()}
    median = {v: statistics.median(r["samples_per_s"] for r in rs) for v, rs in by.items()}
    tracked = ("dlforge", "untracked")
    callback = {v: statistics.median(r["callback_ms_per_epoch"] for r in by[v]) for v in tracked}
    fit_per_epoch = {v: min(r["fit_s"] for r in by[v]) / epochs for v in tracked}
    ratio = best["dlforge"] / best["plain"]
    return {
        "best_samples_per_s": best, "median_samples_per_s": median,
        "ratio_dlforge_over_plain": round(ratio, 3),
        "ratio_median": round(median["dlforge"] / median["plain"], 3),
        "ratio_target": RATIO_TARGET, "ratio_ok": ratio >= RATIO_TARGET,
        "epoch_callback_ms": callback,
        "mlflow_ms_per_epoch_callback": round(callback["dlforge"] - callback["untracked"], 3),
        "mlflow_ms_per_epoch_end_to_end": round(
            1000 * (fit_per_epoch["dlforge"] - fit_per_epoch["untracked"]), 1),
    }


def render(report: dict) -> str:
    """The human-readable table."""
    s = report["summary"]
    lines = [f"{report['epochs']} epochs x {report['train_examples']} examples, batch 64, "
             f"{report['threads']} torch threads, {report['repeats']} runs each", "",
             f"{'variant':<11}{'best sps':>10}{'median sps':>12}{'runs (samples/s)':>30}"]
    for v in VARIANTS:
        each = ", ".join(f"{r['samples_per_s']:.1f}" for r in report["runs"] if r["variant"] == v)
        lines.append(f"{v:<11}{s['best_samples_per_s'][v]:>10.1f}"
                     f"{s['median_samples_per_s'][v]:>12.1f}{each:>30}")
    ok = "ok" if s["ratio_ok"] else "MISSED"
    lines += ["", f"dlforge/plain: {s['ratio_dlforge_over_plain']:.3f} best, "
              f"{s['ratio_median']:.3f} median (target >= {RATIO_TARGET}) {ok}",
              f"MLflow per epoch: {s['mlflow_ms_per_epoch_callback']:.3f} ms in the epoch-end "
              f"callback (tracked {s['epoch_callback_ms']['dlforge']:.3f} vs untracked "
              f"{s['epoch_callback_ms']['untracked']:.3f} ms); end to end "
              f"{s['mlflow_ms_per_epoch_end_to_end']:+.1f} ms (best fit time, noisy)"]
    return "\n".join(lines)


def environment() -> dict:
    """Interpreter, machine and library versions."""
    from importlib.metadata import version

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), **{p: version(p) for p in ("torch", "lightning", "mlflow")}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    import torch

    threads = args.threads or torch.get_num_threads()
    manifest = json.loads((ROOT / "outputs" / "intent" / "snapshot.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-train-logs-", dir=RESULTS))
    runs = []
    for repeat in range(args.repeats):
        for variant in VARIANTS:  # alternated, so slow phases of the machine hit every variant
            runs.append({"repeat": repeat, **spawn(variant, args, threads, logs)})
            run = runs[-1]
            print(f"  {variant:<10} run {repeat + 1}: {run['samples_per_s']:.1f} samples/s "
                  f"(fit {run['fit_s']:.1f} s, CPU stall {run.get('cpu_stall_s')} s)", flush=True)
    shutil.rmtree(logs, ignore_errors=True)
    report = {"epochs": args.epochs, "repeats": args.repeats, "threads": threads,
              "batch_size": 64, "snapshot": manifest["version"],
              "train_examples": manifest["counts"]["train"], "environment": environment(),
              "runs": runs, "summary": summarise(runs, args.epochs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
