"""Snapshots at scale: a streaming build that keeps the in-memory rules, image
snapshots that refer to the store's objects, lazy reads that check every byte,
builds that a kill leaves whole, memory that does not grow with the images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file
from dlforge.data import Snapshot, SnapshotStore, SplitRule, Store
from dlforge.data import build as build_module
from dlforge.data.build import SPLITS, dedupe, example_ids
from dlforge.data.seal import MARKS, seal_path
from dlforge.data.verify import verify
from tests.helpers import kill_after


def write_images(folder: Path, n: int, size: int = 64, classes: int = 3, seed: int = 0,
                 fmt: str = "JPEG") -> Path:
    """``n`` distinct RGB noise images in ``folder/c<k>/``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for i in range(n):
        label = folder / f"c{i % classes}"
        label.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(label / f"{seed}-{i:05d}{suffix}", fmt)
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def images(store, tmp_path) -> Path:
    source = write_images(tmp_path / "images", 120)
    store.create("pics", "image_class", source)
    return source


# -- the streaming build keeps the rules ------------------------------------------


def test_streaming_build_dedupes_and_splits_like_the_whole_table_rules(
        store, snapshots, write_csv, monkeypatch):
    monkeypatch.setattr(build_module, "ROW_GROUP_ROWS", 7)  # many batches and row groups
    first = "".join(f"utterance {i},{'a' if i % 3 else 'b'}\n" for i in range(100))
    second = "".join(f"utterance {i},{'c' if i % 2 else 'a'}\n" for i in range(50, 160))
    store.create("d", "text_intent", write_csv("a.csv", first))
    store.commit("d", write_csv("b.csv", second + "utterance 1,a\n"))
    rule = SplitRule(0.6, 0.2, 0.2)

    snap = snapshots.load("d", snapshots.build("d", split=rule).version)

    tables = [store.read_table(c).append_column("commit", pa.array([c.id] * c.rows, pa.int32()))
              for c in store.commits("d")]
    whole = pa.concat_tables(tables)
    kept, counts = dedupe(whole, whole.column("utterance").combine_chunks())
    keys = kept.column("utterance").to_pylist()
    expected = {k: (SPLITS[s], c) for k, s, c in zip(
        keys, rule.assign(keys), kept.column("commit").to_pylist(), strict=True)}
    got = {u: (name, c) for name in SPLITS
           for u, c in zip(snap.split(name)["utterance"], snap.split(name)["commit"],
                           strict=True)}
    assert got == expected
    assert {k: snap.counts[k] for k in counts} == counts
    assert counts["duplicates_removed"] == 51 and counts["label_conflicts"] > 0
    for name in SPLITS:  # rows keep their commit order; ids are the keys' hashes
        frame = snap.split(name)
        assert list(frame["utterance"]) == [k for k in keys if expected[k][0] == name]
        assert list(frame["example_id"]) == example_ids(list(frame["utterance"])).to_pylist()
        assert snap.rows(name) == len(frame) == len(snap.inputs(name))
    assert snap.labels == ["a", "b", "c"]


# -- image snapshots refer to the store ------------------------------------------------


def test_image_snapshot_holds_digests_and_a_second_version_adds_under_1pct(
        store, snapshots, tmp_path):
    source = write_images(tmp_path / "big", 1200, size=96)
    store.create("pics", "image_class", source)
    first = snapshots.build("pics")
    second = snapshots.build("pics", split=SplitRule(salt="another"))

    assert second.version != first.version
    stored = pq.read_schema(second.path / "train.parquet")  # 32 raw bytes, no example id
    assert stored.field("image_digest").type == pa.binary(32)
    assert "example_id" not in stored.names and "image" not in stored.names
    table = Snapshot.open(second.path).table("train")  # readers see hex digests and ids
    assert table.schema.field("image_digest").type == pa.string()
    assert table.column("example_id").to_pylist() == example_ids(
        table.column("image_digest").to_pylist()).to_pylist()
    assert folder_bytes(second.path) < 0.01 * folder_bytes(source)


def test_an_image_snapshot_with_hex_digests_and_stored_ids_still_reads(images, snapshots):
    """The first layout-2 snapshots held the digest in hex and the example id."""
    ref = snapshots.build("pics")
    snap = Snapshot.open(ref.path)
    before = {s: (snap.table(s).to_pylist(), list(snap.inputs(s))) for s in SPLITS}
    manifest = json.loads((ref.path / "manifest.json").read_text())
    seal_path(snapshots.store.root, "pics", ref.version).unlink()  # they predate seals too
    for key in MARKS:
        del manifest[key]
    (ref.path / "manifest.json").write_text(json.dumps(manifest))
    for name in SPLITS:
        path = ref.path / f"{name}.parquet"
        pq.write_table(Snapshot.open(ref.path).table(name), path)
        manifest["files"][path.name]["sha256"] = sha256_file(path)
    (ref.path / "manifest.json").write_text(json.dumps(manifest))

    old = Snapshot.open(ref.path)
    assert pq.read_schema(ref.path / "train.parquet").field("image_digest").type == pa.string()
    assert {s: (old.table(s).to_pylist(), list(old.inputs(s))) for s in SPLITS} == before
    assert old.inputs("val").example_id(1) == before["val"][0][1]["example_id"]


def test_inputs_are_the_committed_bytes_read_lazily(images, snapshots):
    snap = snapshots.load("pics", snapshots.build("pics").version)
    originals = {p.read_bytes() for p in images.rglob("*.jpg")}
    inputs = snap.inputs("train")
    assert len(inputs) == snap.counts["train"]
    assert set(inputs) <= originals and inputs[0] == inputs[:1][0] == list(inputs)[0]
    assert inputs[-1] == inputs[len(inputs) - 1]
    assert len(set().union(*(set(snap.inputs(s)) for s in SPLITS))) == 120


def test_fetch_gives_a_copy_that_opens_without_the_store(images, store, snapshots, tmp_path):
    ref = snapshots.build("pics")
    before = {s: list(Snapshot.open(ref.path).inputs(s)) for s in SPLITS}
    out = tmp_path / "fetched"

    snapshots.fetch("pics", ref.version, out)
    os.rename(store.root, tmp_path / "gone")  # the copy needs nothing of the store

    copy = Snapshot.open(out)
    assert {s: list(copy.inputs(s)) for s in SPLITS} == before
    assert len(list((out / "images").rglob("*.jpg"))) == 120


def test_a_missing_or_altered_store_object_fails_the_read_naming_the_example(
        images, store, snapshots):
    snap = snapshots.load("pics", snapshots.build("pics").version)
    inputs = snap.inputs("train")
    digests = snap.table("train", ["image_digest"]).column("image_digest").to_pylist()
    missing, altered = (store.object_path("pics", digests[i]) for i in (0, 1))
    missing.unlink()
    altered.write_bytes(altered.read_bytes()[:-10])

    for row, problem in ((0, "cannot be read"), (1, "does not match its digest")):
        with pytest.raises(DlforgeError) as info:
            inputs[row]
        message = str(info.value)
        assert f"example {inputs.example_id(row)}" in message and problem in message
        assert "`dlforge data verify`" in message
    with pytest.raises(DlforgeError, match=inputs.example_id(0)):
        list(inputs)
    assert not verify(snapshots)["ok"]


def test_an_image_snapshot_of_the_old_layout_asks_to_be_rebuilt(images, snapshots):
    ref = snapshots.build("pics")
    manifest = json.loads((ref.path / "manifest.json").read_text())
    del manifest["objects"]
    manifest["schema_version"] = 1
    (ref.path / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(DlforgeError, match="older dlforge.*Fix: build it again"):
        Snapshot.open(ref.path).inputs("train")


# -- faults --------------------------------------------------------------------------


def start_snapshot(store: Store, snapshots: SnapshotStore) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dlforge", "data", "--store", str(store.root),
         "--snapshots", str(snapshots.root), "snapshot", "d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_sigkill_mid_snapshot_build_leaves_no_partial_snapshot(store, snapshots, tmp_path):
    source = tmp_path / "big.csv"
    source.write_text("".join(f"utterance {i} with words,l{i % 7}\n" for i in range(150_000)))
    store.create("d", "text_intent", source)
    started = time.monotonic()
    assert start_snapshot(store, snapshots).wait() == 0
    duration = time.monotonic() - started
    built = snapshots.versions("d")[0]
    os.rename(snapshots.root / "d" / built["version"], tmp_path / "first")
    for fraction in (0.3, 0.5, 0.7, 0.85, 0.95):
        kill_after(start_snapshot(store, snapshots), fraction * duration)
        folders = list((snapshots.root / "d").iterdir()) if (snapshots.root / "d").exists() else []
        for folder in folders:  # a snapshot is there whole, or not at all
            assert (folder / "manifest.json").is_file()
            snapshots.load("d", folder.name).split("train")
    report = verify(snapshots)
    assert report["ok"], report["problems"]
    assert not any((snapshots.root / ".tmp").iterdir())
    assert snapshots.build("d").manifest["counts"]["input_rows"] == 150_000


# -- memory ---------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys, traceback
    from dlforge.data import SnapshotStore, Store
    from dlforge.models.preprocessing import ImageEncoder
    from dlforge.train.data import SnapshotDataModule

    def load_all(root):
        snapshots = SnapshotStore(root + "/snapshots", Store(root + "/store"))
        snap = snapshots.load("pics", snapshots.build("pics").version)
        data = SnapshotDataModule(snap, ImageEncoder(channels=3), batch_size=64,
                                  num_workers=0, encoder_fit_sample=128)
        data.setup()
        return sum(len(batch[1]) for name in ("train", "val", "test")
                   for batch in data._loader(name, shuffle=name == "train"))

    def measure(root):
        # A fork starts from this process as it stands, imports done and nothing
        # loaded: its peak from here is the peak of a fresh process doing the same.
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := the current resident set
        seen = load_all(root)
        status = open("/proc/self/status").read()  # VmHWM: this process's own peak
        peak_kib = int(status.split("VmHWM:")[1].split()[0])
        print(json.dumps({"root": root, "seen": seen, "peak_kib": peak_kib}), flush=True)

    children = []
    for root in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                measure(root)
                code = 0
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children.append(pid)
    sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children))
""")


@pytest.mark.slow
def test_snapshot_and_loading_memory_does_not_grow_with_the_images(tmp_path):
    counts = (500, 2000)
    for n in counts:
        root = tmp_path / str(n)
        Store(root / "store").create("pics", "image_class",
                                     write_images(root / "src", n, size=96, seed=n))
    # One interpreter pays the imports; each count is measured in a fork of it.
    roots = [str(tmp_path / str(n)) for n in counts]
    done = subprocess.run([sys.executable, "-c", CHILD, *roots], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {Path(r["root"]).name: r for r in map(json.loads, done.stdout.splitlines())}
    assert {n: results[str(n)]["seen"] for n in counts} == {n: n for n in counts}
    peaks = {n: results[str(n)]["peak_kib"] for n in counts}
    # Held decoded as float32 (as before), 1500 more 96x96 RGB images would add 166 MB:
    # about 1.3x the peak of 500.
    print(f"peak RSS (KiB) by number of images: {peaks}")
    assert peaks[2000] <= 1.2 * peaks[500], peaks


def test_verify_reports_an_image_snapshot_that_no_longer_finds_the_store(images, snapshots):
    ref = snapshots.build("pics")
    assert verify(snapshots)["ok"]
    manifest = json.loads((ref.path / "manifest.json").read_text())
    (ref.path / "manifest.json").write_text(json.dumps({**manifest, "objects": "../elsewhere"}))

    report = verify(snapshots)

    assert not report["ok"]
    assert any("not the store's objects folder" in p for p in report["problems"])
