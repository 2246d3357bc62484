"""The toy data and projects the tests train on: labelled sentences and images, a
snapshot of them, a project that trains, evaluates and registers, its copies, and a
server over its models."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

from dlforge.core.config import compose
from dlforge.data import SnapshotStore, Store
from dlforge.stages.serve import server_settings


def make_project(tmp_path: Path, mlflow_dir: Path, name: str | None = None,
                 snapshot: bool = True):
    """The toy project of :func:`project` in ``tmp_path`` (for fixtures of wider scope).

    ``name`` (default: the folder's name) names its model and experiment; ``snapshot``
    False takes the snapshot already in the folder (a copied project).
    """
    from dlforge.stages.evaluate import evaluate
    from dlforge.stages.register import register
    from dlforge.stages.train import train

    if snapshot:
        make_snapshot(tmp_path, toy_rows(400))
    name = name or tmp_path.name

    class Project:
        root = tmp_path
        label = name
        model_name = f"toy-{name}"
        tracking_uri = f"sqlite:///{mlflow_dir}/mlflow.db"
        common = ["experiment=intent", f"paths.root={tmp_path}", f"paths.mlflow_dir={mlflow_dir}",
                  "dataset.name=toy", f"tracking.experiment=registry-{name}"]
        records: list[dict] = []  # register records of the releases made before a copy

        def config(self, stage: str, *overrides: str):
            model = [] if any(o.startswith("model=") for o in overrides) else SMALL_MODEL
            extra = {"train": [*FAST, *model, "hpo.enabled=false"],
                     "register": [f"registry.model_name={self.model_name}"],
                     "monitor": [f"registry.model_name={self.model_name}"]}.get(stage, [])
            return compose(stage, [*self.common, *extra, *overrides])

        def run(self, stage: str, *overrides: str) -> dict:
            function = {"train": train, "evaluate": evaluate, "register": register}[stage]
            return function(self.config(stage, *overrides))

        def release(self, *train_overrides: str, gate: tuple[str, ...] = ()) -> dict:
            """train -> evaluate -> register; the register record."""
            self.run("train", *train_overrides)
            self.run("evaluate")
            return self.run("register", *gate)

    return Project()


def copy_project(template, dest: Path):
    """A copy of ``template``'s folder at ``dest`` (data, outputs, MLflow store and
    artefacts) with every absolute path that named the template's folder moved to
    ``dest``; a project over it, under the template's model name."""
    shutil.copytree(template.root, dest, symlinks=True)
    old, new = str(template.root).encode(), str(dest).encode()
    for path in dest.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.suffix == ".db":
            continue
        data = path.read_bytes()
        if old in data and _is_text(data):  # checkpoints (zip) name no path anyone reads
            path.write_bytes(data.replace(old, new))
    store = dest / "mlruns" / "mlflow.db"
    move_paths_in_sqlite(store, str(template.root), str(dest))
    copy = make_project(dest, dest / "mlruns", name=template.label, snapshot=False)
    copy.records = [dict(record) for record in template.records]
    return copy


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def move_paths_in_sqlite(database: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in every text value of every table of ``database``.

    MLflow's SQLite store keeps absolute artefact locations (experiments, runs, logged
    models, model versions' source and storage location, ...): a copied store must
    point at its own copy of the artefacts, never at the original's.
    """
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                           (old, new, old))
        left = [table for table in tables if any(
            db.execute(f'SELECT 1 FROM "{table}" WHERE instr("{column}", ?) > 0 LIMIT 1',
                       (old,)).fetchone()
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')])]
    assert not left, f"{database}: {old} is still named in {left}"


def png_header(width: int, height: int) -> bytes:
    """A small PNG file that claims ``width`` x ``height`` pixels and holds almost none
    (a decompression bomb, refused from its header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


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


# hpo.enabled=false: train these settings, not the intent experiment's swept ones
FAST = ["trainer.max_epochs=3", "trainer.enable_progress_bar=false", "datamodule.batch_size=16",
        "optimizer.lr=0.02", "hpo.enabled=false"]


SMALL_MODEL = ["model.net.embed_dim=16", "model.net.hidden_dim=16"]  # for the default model


TEXTS = ["guitar song album", "rain umbrella forecast"]


TRUTH = ["music", "weather"]


def server_config(project, *overrides: str, strategy: str = "blue_green"):
    """The settings of a server over ``project``'s model, from conf/serve.yaml."""
    cfg = compose("serve", [f"paths.root={project.root}",
                            f"tracking.tracking_uri={project.tracking_uri}",
                            f"models={{{project.model_name}: {{strategy: {strategy}}}}}",
                            f"default_model={project.model_name}", "accelerator=cpu",
                            "max_batch_size=4", "batch_timeout=0.01", "max_body_bytes=4096",
                            "api_key=null", *overrides])
    return server_settings(cfg)
