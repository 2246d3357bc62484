"""A toy snapshot that trains in seconds, and a train config pointing at it."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from dlforge.core.config import compose
from dlforge.data import SnapshotStore, Store

WORDS = {
    "weather": ["rain", "sunny", "forecast", "cold", "umbrella", "snow"],
    "music": ["song", "play", "album", "guitar", "playlist", "loud"],
    "food": ["pizza", "hungry", "dinner", "recipe", "lunch", "salad"],
}


def toy_rows(n: int, seed: int = 0, multi_label: bool = False) -> str:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(WORDS))
        words = rng.sample(WORDS[label], 3) + [f"filler{rng.randint(0, 50)}", f"w{i}"]
        labels = label
        if multi_label and i % 4 == 0:
            other = rng.choice([x for x in WORDS if x != label])
            words += rng.sample(WORDS[other], 2)
            labels = f"{label};{other}"
        rows.append(f"{' '.join(words)},{labels}\n")
    return "".join(rows)


def make_snapshot(root, rows: str, name: str = "toy") -> dict:
    """Commit ``rows`` as dataset ``name`` under ``root`` and record its snapshot
    where the snapshot stage would (``outputs/intent/snapshot.json``)."""
    source = root / "sources" / f"{name}.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(rows)
    store = Store(root / "data" / "store")
    store.create(name, "text_intent", source)
    ref = SnapshotStore(root / "data" / "snapshots", store).build(name)
    summary = {"dataset": name, "version": ref.version, "path": str(ref.path)}
    (root / "outputs" / "intent").mkdir(parents=True, exist_ok=True)
    (root / "outputs" / "intent" / "snapshot.json").write_text(json.dumps(summary))
    return summary


def write_images(folder: Path, per_class: int = 40) -> Path:
    """Three visually distinct classes of 8x8 grayscale images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    patterns = {"rows": lambda: np.tile(np.array([[255], [0]] * 4), (1, 8)),
                "cols": lambda: np.tile(np.array([[255, 0] * 4]), (8, 1)),
                "dark": lambda: np.zeros((8, 8))}
    for label, pattern in patterns.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noisy = np.clip(pattern() + rng.normal(0, 40, (8, 8)), 0, 255).astype("uint8")
            Image.fromarray(noisy, mode="L").save(folder / label / f"{i}.png")
    return folder


def wait_for(condition, *processes: subprocess.Popen, seconds: float = 120,
             poll: float = 0.2):
    """Poll ``condition`` every ``poll`` seconds until it returns something true, and
    return that; fail with a process's stderr if one ends first, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        for process in processes:
            assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)
    return found


# hpo.enabled=false: train these settings, not the intent experiment's swept ones
FAST = ["trainer.max_epochs=3", "trainer.enable_progress_bar=false", "datamodule.batch_size=16",
        "optimizer.lr=0.02", "hpo.enabled=false"]
SMALL_MODEL = ["model.net.embed_dim=16", "model.net.hidden_dim=16"]  # for the default model


@pytest.fixture
def train_cfg(tmp_path, mlflow_dir):
    """``train_cfg(*overrides)``: the intent train config on a toy snapshot under tmp_path."""
    make_snapshot(tmp_path, toy_rows(400))

    def make(*overrides: str, root=tmp_path):
        model = [] if any(o.startswith("model=") for o in overrides) else SMALL_MODEL
        return compose("train", ["experiment=intent", f"paths.root={root}",
                                 f"paths.mlflow_dir={mlflow_dir}", "dataset.name=toy",
                                 f"tracking.experiment=test-{root.name}", *FAST, *model,
                                 *overrides])

    return make
