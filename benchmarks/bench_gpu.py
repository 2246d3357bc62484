"""Benchmark: GPU training throughput of dlforge against a plain PyTorch loop, and
whether the image loader keeps up.

Usage:
    python benchmarks/bench_gpu.py [--device cuda|cpu] [--steps N] [--warmup W]
        [--batch-size B] [--repeats R] [--loader-images M] [--workers K] [--out FILE]
    bash benchmarks/gpu_check.sh      # this benchmark, tests/gpu and `dlforge verify` on a GPU

The digits experiment's network (``small_cnn``, from ``experiment=digits``) on
synthetic 3x96x96 batches already on the device (the size of
``bench_data_scale.py``'s JPEGs), trained for W untimed and N timed steps, at
``bf16-mixed`` and ``32-true``, two ways, alternated R times:

- ``plain``: ``loss_fn(net(x), y).backward()``, gradient clipping, ``opt.step()``
  (``torch.autocast(dtype=torch.bfloat16)`` for bf16), the experiment's optimizer;
- ``dlforge``: dlforge's training path: ``Classifier`` (its loss and metrics) in a
  ``lightning.Trainer`` built from the experiment's ``trainer`` config with
  ``trainer.precision`` set; no checkpoints, logger or progress bar.

Both run under the config's ``trainer.deterministic`` (torch's deterministic
algorithms, cuDNN benchmark off), as Lightning sets it. samples/s = B x N / the
wall time of the N steps (the device synchronised at both ends); the best of R.
The loader: M such JPEGs committed to a store and snapshotted, then dlforge's
snapshot train loader (``SnapshotDataModule``: read by digest, decode, normalise,
batch; the automatic worker count unless K) read twice; its best images/s against
the GPU's appetite, the dlforge rate of each precision. With ``--device cpu`` the
defaults make a quick run that checks the benchmark works (batch 8, one repeat,
128 JPEGs).

Writes benchmarks/results/gpu.json (as ``gpu_check.sh`` writes it, it also holds
the GPU tests' counts and the verify verdicts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = ("bf16-mixed", "32-true")
LOOPS = ("plain", "dlforge")
IMAGE = (3, 96, 96)  # (C, H, W) of bench_data_scale.py's JPEGs
CLASSES = 10
POOL = 8  # distinct synthetic batches, cycled


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: N/10, >= 1)")
    parser.add_argument("--batch-size", type=int,
                        help="the experiment's datamodule.batch_size on cuda; 8 on cpu")
    parser.add_argument("--repeats", type=int,
                        help="runs of each loop and precision (default: 2 on cuda, 1 on cpu)")
    parser.add_argument("--loader-images", type=int,
                        help="JPEGs of the loader measure (default: 4096 on cuda, 128 on cpu; "
                             "0: skip it)")
    parser.add_argument("--workers", type=int, help="loader workers (default: automatic)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)
    # On the CPU the defaults are those of a quick run that checks the benchmark works.
    gpu = args.device == "cuda"
    defaults = {"warmup": max(1, args.steps // 10), "repeats": 2 if gpu else 1,
                "loader_images": 4096 if gpu else 128}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def compose_cfg():
    """The digits experiment's train config (network, optimizer, trainer)."""
    from dlforge.core.config import compose

    os.environ.setdefault("DLFORGE_CONFIG_DIR", str(ROOT / "conf"))
    return compose("train", ["experiment=digits"])


def synthetic_batches(batch_size: int, device):
    """``POOL`` batches of normal noise ``(B, C, H, W)`` and labels ``(B,)``, on ``device``."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(batch_size, *IMAGE, generator=generator).to(device),
             torch.randint(0, CLASSES, (batch_size,), generator=generator).to(device))
            for _ in range(POOL)]


def torch_flags(deterministic: bool) -> None:
    """What Lightning sets for ``trainer.deterministic``, so both loops run alike."""
    import torch

    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = False


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_net(cfg, device):
    import torch
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    return instantiate(cfg.model.net, num_classes=CLASSES, channels=IMAGE[0]).to(device)


class Batches:
    """``count`` batches cycled from ``batches``: one loader to Lightning (a plain list
    would be taken for a list of loaders)."""

    def __init__(self, batches: list, count: int):
        self.batches, self.count = batches, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return (self.batches[i % len(self.batches)] for i in range(self.count))


def plain_rate(cfg, batches, precision: str, steps: int, warmup: int, device) -> float:
    """samples/s of a hand-written loop over ``batches``."""
    import torch
    from hydra.utils import instantiate

    net = build_net(cfg, device)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    loss_fn, clip = torch.nn.CrossEntropyLoss(), cfg.trainer.gradient_clip_val
    net.train()
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        inputs, targets = batches[step % len(batches)]
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = loss_fn(net(inputs), targets)  # logits (B, classes)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
    synchronize(device)
    return len(batches[0][0]) * steps / (time.perf_counter() - start)


def dlforge_rate(cfg, batches, precision: str, steps: int, warmup: int, device) -> float:
    """samples/s of dlforge's Classifier in the experiment's Lightning Trainer."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dlforge.train.module import Classifier

    class StepTimer(L.Callback):  # the timed steps only: no setup, no epoch end
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                synchronize(device)
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == warmup + steps - 1:
                synchronize(device)
                self.seconds = time.perf_counter() - self.start

    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = Classifier(build_net(cfg, device), CLASSES, False, instantiate(cfg.optimizer),
                        scheduler)
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args.update(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                strategy="auto", precision=precision, max_epochs=1, max_steps=warmup + steps,
                limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False)
    timer = StepTimer()
    trainer = L.Trainer(**args, logger=False, callbacks=[timer],
                        default_root_dir=tempfile.gettempdir())
    trainer.fit(module, train_dataloaders=Batches(batches, warmup + steps))
    return len(batches[0][0]) * steps / timer.seconds


def throughput(cfg, args: argparse.Namespace, device) -> list[dict]:
    """Every run: each precision and loop, alternated ``repeats`` times."""
    deterministic = bool(cfg.trainer.deterministic)
    if deterministic:  # cuBLAS needs it before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    batches = synthetic_batches(args.batch_size, device)
    runs = []
    for repeat in range(args.repeats):
        for precision in PRECISIONS:
            for loop in LOOPS:
                torch_flags(deterministic)
                rate = (plain_rate if loop == "plain" else dlforge_rate)(
                    cfg, batches, precision, args.steps, args.warmup, device)
                runs.append({"repeat": repeat, "precision": precision, "loop": loop,
                             "samples_per_s": round(rate, 1)})
                print(f"  {precision:<11}{loop:<8} run {repeat + 1}: {rate:,.1f} samples/s",
                      flush=True)
    return runs


def loader_rate(images: int, workers: int | None, batch_size: int, work: Path) -> dict:
    """images/s of dlforge's snapshot train loader over ``images`` JPEGs (best of 2 passes)."""
    from bench_data_scale import generate_images

    from dlforge.data import Snapshot, SnapshotStore, Store
    from dlforge.models.preprocessing import ImageEncoder
    from dlforge.train.data import SnapshotDataModule

    generate_images(work / "images", images)
    store = Store(work / "store")
    store.create("images", "image_class", work / "images")
    ref = SnapshotStore(work / "snapshots", store).build("images")
    data = SnapshotDataModule(Snapshot.open(ref.path, store=store.root),
                              ImageEncoder(channels=IMAGE[0]), batch_size=batch_size,
                              num_workers=workers)
    data.setup()
    loader, rates = data.train_dataloader(), []
    for _ in range(2):  # the first pass also starts the (persistent) workers
        start, seen = time.perf_counter(), 0
        for inputs, _ in loader:
            seen += len(inputs)
        rates.append(seen / (time.perf_counter() - start))
    return {"images": seen, "workers": data.num_workers, "cpus": os.cpu_count(),
            "images_per_s": round(max(rates), 1),
            "passes_images_per_s": [round(r, 1) for r in rates]}


def summarise(runs: list[dict], loader: dict | None) -> dict:
    """Per precision: best samples/s of each loop, dlforge/plain, and the loader's share."""
    table = {}
    for precision in PRECISIONS:
        best = {loop: max(r["samples_per_s"] for r in runs
                          if r["precision"] == precision and r["loop"] == loop)
                for loop in LOOPS}
        row = {f"{loop}_samples_per_s": best[loop] for loop in LOOPS}
        row["ratio_dlforge_over_plain"] = round(best["dlforge"] / best["plain"], 3)
        if loader:  # the appetite: what dlforge's training consumes at this precision
            row["loader_over_appetite"] = round(loader["images_per_s"] / best["dlforge"], 3)
            row["loader_keeps_up"] = loader["images_per_s"] >= best["dlforge"]
        table[precision] = row
    return table


def environment(device_name: str) -> dict:
    """The device, and the versions the figures depend on."""
    from importlib.metadata import version

    import torch

    gpu = torch.cuda.get_device_name(0) if device_name == "cuda" else None
    return {"device": gpu or platform.processor() or "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "lightning": version("lightning"), "dlforge": version("dlforge"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu, or on a machine with a GPU")
    device, cfg = torch.device(args.device), compose_cfg()
    if args.batch_size is None:
        args.batch_size = int(cfg.datamodule.batch_size) if args.device == "cuda" else 8
    runs = throughput(cfg, args, device)
    loader = None
    if args.loader_images:
        work = Path(tempfile.mkdtemp(prefix="bench-gpu-loader-"))
        try:
            loader = loader_rate(args.loader_images, args.workers, args.batch_size, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "bench_gpu", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(args.device),
        "settings": {"model": f"small_cnn width {cfg.model.net.width}", "input": "x".join(
            map(str, IMAGE)), "batch_size": args.batch_size, "steps": args.steps,
            "warmup": args.warmup, "repeats": args.repeats,
            "deterministic": bool(cfg.trainer.deterministic)},
        "throughput": summarise(runs, loader), "loader": loader, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for precision, row in report["throughput"].items():
        print(f"{precision:<11} plain {row['plain_samples_per_s']:>10,.1f}  dlforge "
              f"{row['dlforge_samples_per_s']:>10,.1f}  ratio {row['ratio_dlforge_over_plain']}")
    if loader:
        print(f"loader: {loader['images_per_s']:,.1f} images/s ({loader['workers']} workers)")
    print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
