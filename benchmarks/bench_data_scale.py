"""Benchmark: real-size data in bounded memory (snapshots, loaders, training).

Usage:
    python benchmarks/bench_data_scale.py [--images N] [--snapshot-images M]
        [--text-rows R] [--train-steps S] [--workers W] [--workdir DIR] [--out FILE]

Generates 96x96 RGB JPEGs (smooth random patterns with noise, a few KB each, like
photos at that size) and a text CSV, then measures side by side, each step in a
fresh process (peak RSS: ``ru_maxrss`` from ``os.wait4``, the largest process;
training also sums the proportional set size of the process and its loader
workers, sampled every 0.1 s):

- ``train_n`` / ``train_4n``: ``small_cnn`` on N and 4N images, batch 64, a fixed
  number of steps. Targets: 4N / N <= 1.2, and <= 2 GB;
- ``pipeline``: images/s of the train loader (read by digest, decode, resize,
  normalise, batch) against a plain PyTorch ``Dataset`` that opens each file with
  PIL, same transforms, same ``num_workers``. Target >= 1.0x;
- ``snapshot_text``: ``dlforge data snapshot`` of R text rows (target <= 350 MB);
- ``snapshot_images``: ``dlforge data snapshot`` of M images (target <= 500 MB);
- ``second_version``: disk a second snapshot version of the M images adds (another
  split salt), as a share of the images' bytes (target < 1%).

Writes every figure as JSON (default benchmarks/results/bench_data_scale.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import generate_csv, write_tiny_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MIB = 1 << 20
CLASSES = 10
TARGETS = {"train_ratio": 1.2, "train_mib": 2048, "pipeline_ratio": 1.0,
           "snapshot_text_mib": 350, "snapshot_images_mib": 500, "second_version_share": 0.01}

TRAIN = """
import json, sys
import lightning as L
from dlforge.data import Snapshot
from dlforge.models.preprocessing import ImageEncoder
from dlforge.models.vision import SmallCNN
from dlforge.train.data import SnapshotDataModule
from dlforge.train.module import Classifier
import torch

path, steps, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
L.seed_everything(0, workers=True)
data = SnapshotDataModule(Snapshot.open(path), ImageEncoder(channels=3), batch_size=64,
                          num_workers=workers)
data.setup()
net = SmallCNN(num_classes=data.num_classes, channels=3, width=32)
module = Classifier(net, data.num_classes, False, lambda p: torch.optim.SGD(p, lr=0.01), None)
trainer = L.Trainer(max_epochs=1, max_steps=steps, limit_val_batches=0, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
trainer.fit(module, data)
print(json.dumps({"steps": trainer.global_step}))
"""

PIPELINE = """
import io, json, sys, time
import numpy as np, torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from dlforge.data import Snapshot
from dlforge.models.preprocessing import ImageEncoder
from dlforge.train.data import SnapshotDataModule

path, folder, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = SnapshotDataModule(Snapshot.open(path), ImageEncoder(channels=3), batch_size=64,
                          num_workers=workers, persistent_workers=False)
data.setup()
encoder = data.encoder
mean = np.asarray(encoder.mean, np.float32)[:, None, None]
std = np.asarray(encoder.std, np.float32)[:, None, None]
files = sorted(p for p in __import__("pathlib").Path(folder).rglob("*.jpg"))
labels = sorted({p.parent.name for p in files})

class Files(Dataset):  # the plain baseline: open each file with PIL
    def __len__(self):
        return len(files)
    def __getitem__(self, i):
        with Image.open(files[i]) as image:
            image = image.convert("RGB").resize((encoder.size[1], encoder.size[0]))
            pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((pixels - mean) / std), labels.index(files[i].parent.name)

def rate(loader):
    start, seen = time.perf_counter(), 0
    for inputs, _ in loader:
        seen += len(inputs)
    return seen / (time.perf_counter() - start)

ours, plain = [], []
for _ in range(2):  # alternate, best of two: the page cache is warm for both
    ours.append(rate(data.train_dataloader()))
    plain.append(rate(DataLoader(Files(), batch_size=64, shuffle=True, num_workers=workers)))
print(json.dumps({"ours": max(ours), "plain": max(plain), "images": len(files)}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="N: training on N vs 4N")
    parser.add_argument("--snapshot-images", type=int, default=200_000,
                        help="images of the image snapshot step (smaller for a quick run)")
    parser.add_argument("--text-rows", type=int, default=1_000_000)
    parser.add_argument("--train-steps", type=int, default=60, help="steps of each training")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers (default: the datamodule's automatic choice)")
    parser.add_argument("--workdir", type=Path,
                        help="working folder (default: a temp dir under benchmarks/results/)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_data_scale.json")
    return parser.parse_args(argv)


def _image(index: int, folder: str) -> int:
    """Write image ``index``: a smooth random pattern plus noise, as a 96x96 JPEG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB")
    pixels = np.asarray(coarse.resize((96, 96), Image.BICUBIC), dtype=np.int16)
    pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
    path = Path(folder) / f"c{index % CLASSES}" / f"{index:07d}.jpg"
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=90)
    return path.stat().st_size


def generate_images(folder: Path, count: int) -> int:
    """``count`` images in ``folder/c<k>/``; their total bytes."""
    for k in range(CLASSES):
        (folder / f"c{k}").mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count()) as pool:
        return sum(pool.starmap(_image, [(i, str(folder)) for i in range(count)], 256))


def manifest(folder: Path, count: int, out: Path) -> Path:
    """A ``path,label`` manifest of images 0..count-1 of ``folder``."""
    lines = [f"c{i % CLASSES}/{i:07d}.jpg,c{i % CLASSES}" for i in range(count)]
    out.write_text("\n".join(lines) + "\n")
    return out


# Linux carries a process's peak RSS across exec: a child started from this (large)
# process would report at least this one's. A small launcher starts the step instead.
LAUNCH = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, out)
"""


def measure(name: str, cmd: list[str], logs: Path, tree: bool = False) -> dict:
    """Run ``cmd`` in a fresh process: wall time, peak RSS of its largest process and,
    with ``tree``, the peak of the summed proportional set size of it and its children."""
    usage = logs / f"{name}.usage.json"
    with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(usage), *cmd], stdout=out,
                                stderr=err, cwd=ROOT)
        peak, stop = [0], threading.Event()
        if tree:
            threading.Thread(target=_sample_pss, args=(proc.pid, peak, stop), daemon=True).start()
        proc.wait()
        stop.set()
        wall = time.perf_counter() - start
    child = json.loads(usage.read_text())
    if child["code"] != 0:
        sys.exit(f"{name} failed: {(logs / f'{name}.err').read_text()[-3000:]}")
    result = {"wall_s": round(wall, 2), "peak_rss_mib": round(child["maxrss_kib"] / 1024, 1)}
    if tree:
        result["peak_tree_pss_mib"] = round(peak[0] / MIB, 1)
    lines = (logs / f"{name}.out").read_text().strip().splitlines()
    if lines and lines[-1].startswith("{"):
        result.update(json.loads(lines[-1]))
    return result


def _sample_pss(pid: int, peak: list, stop: threading.Event) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        while not stop.is_set():
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += process.memory_full_info().pss
            peak[0] = max(peak[0], total)
            time.sleep(0.1)
    except psutil.NoSuchProcess:
        pass


def dlforge(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dlforge", "data", "--store", str(work / "store"),
            "--snapshots", str(work / "snapshots"), *args]


def snapshot_path(work: Path, name: str) -> Path:
    from dlforge.data import SnapshotStore, Store

    return SnapshotStore(work / "snapshots", Store(work / "store")).resolve(name)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench(args: argparse.Namespace, work: Path) -> dict:
    from dlforge.data import SnapshotStore, SplitRule, Store
    from dlforge.train.data import auto_workers

    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    n, images = args.images, work / "images"
    workers = auto_workers() if args.workers is None else args.workers
    count = max(4 * n, args.snapshot_images)
    started = time.perf_counter()
    image_bytes = generate_images(images, count)
    report = {"images_generated": count, "image_mib": round(image_bytes / MIB, 1),
              "generate_s": round(time.perf_counter() - started, 1), "workers": workers,
              "steps": {}}
    steps = report["steps"]
    for name, size in (("n", n), ("4n", 4 * n), ("all", args.snapshot_images)):
        measure(f"create_{name}", dlforge(work, "create", f"img_{name}", "--type",
                                          "image_class", "--source",
                                          str(manifest(images, size, images / f"{name}.csv"))),
                logs)
        step = measure(f"snapshot_{name}", dlforge(work, "snapshot", f"img_{name}"), logs)
        if name == "all":
            steps["snapshot_images"] = {**step, "images": size}
    for name, size in (("n", n), ("4n", 4 * n)):
        cmd = [sys.executable, "-c", TRAIN, str(snapshot_path(work, f"img_{name}")),
               str(args.train_steps), str(workers)]
        steps[f"train_{name}"] = {**measure(f"train_{name}", cmd, logs, tree=True),
                                  "images": size}
    cmd = [sys.executable, "-c", PIPELINE, str(snapshot_path(work, "img_n")), "", str(workers)]
    subset = work / "subset"  # the baseline reads the same N files
    for i in range(n):
        target = subset / f"c{i % CLASSES}" / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(images / f"c{i % CLASSES}" / f"{i:07d}.jpg", target)
    cmd[4] = str(subset)
    steps["pipeline"] = measure("pipeline", cmd, logs)
    snapshots = SnapshotStore(work / "snapshots", Store(work / "store"))
    second = snapshots.build("img_all", split=SplitRule(salt="second version"))
    all_bytes = sum((images / f"c{i % CLASSES}" / f"{i:07d}.jpg").stat().st_size
                    for i in range(args.snapshot_images))
    steps["second_version"] = {"bytes": folder_bytes(second.path), "image_bytes": all_bytes,
                               "share": round(folder_bytes(second.path) / all_bytes, 5)}
    csv_path, tiny = work / "text.csv", work / "tiny.csv"
    generate_csv(csv_path, args.text_rows, 0)
    write_tiny_csv(tiny)
    measure("create_text", dlforge(work, "create", "text", "--type", "text_intent",
                                   "--source", str(tiny)), logs)
    measure("commit_text", dlforge(work, "commit", "text", "--source", str(csv_path)), logs)
    steps["snapshot_text"] = {**measure("snapshot_text", dlforge(work, "snapshot", "text"),
                                        logs), "rows": args.text_rows + 50}
    return report


def verdicts(report: dict) -> dict:
    s = report["steps"]
    ratio = s["train_4n"]["peak_tree_pss_mib"] / s["train_n"]["peak_tree_pss_mib"]
    rss_ratio = s["train_4n"]["peak_rss_mib"] / s["train_n"]["peak_rss_mib"]
    pipeline = s["pipeline"]["ours"] / s["pipeline"]["plain"]
    figures = {
        "train_ratio": (round(ratio, 3), ratio <= TARGETS["train_ratio"]),
        "train_rss_ratio": (round(rss_ratio, 3), rss_ratio <= TARGETS["train_ratio"]),
        "train_mib": (s["train_4n"]["peak_tree_pss_mib"],
                      s["train_4n"]["peak_tree_pss_mib"] <= TARGETS["train_mib"]),
        "pipeline_ratio": (round(pipeline, 3), pipeline >= TARGETS["pipeline_ratio"]),
        "snapshot_text_mib": (s["snapshot_text"]["peak_rss_mib"],
                              s["snapshot_text"]["peak_rss_mib"] <= TARGETS["snapshot_text_mib"]),
        "snapshot_images_mib": (s["snapshot_images"]["peak_rss_mib"],
                                s["snapshot_images"]["peak_rss_mib"]
                                <= TARGETS["snapshot_images_mib"]),
        "second_version_share": (s["second_version"]["share"],
                                 s["second_version"]["share"] < TARGETS["second_version_share"]),
    }
    return {k: {"value": v, "target": TARGETS.get(k, TARGETS["train_ratio"]), "ok": ok}
            for k, (v, ok) in figures.items()}


def main(argv: list[str] | None = None) -> None:
    import pandas
    import pyarrow
    import torch

    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_", dir=RESULTS))
    try:
        report = bench(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report["targets"] = verdicts(report)
    report["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    report["environment"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "platform": platform.platform(), "torch": torch.__version__,
                             "pyarrow": pyarrow.__version__, "pandas": pandas.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, t in report["targets"].items():
        print(f"{name:<22}{t['value']!s:>12}  target {t['target']}  "
              f"{'ok' if t['ok'] else 'MISSED'}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
