"""Seals: a split rewritten together with its manifest is refused by every reader,
reported by verify and rebuilt by snapshot, because the store sealed its digest."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file
from dlforge.data import Snapshot, SnapshotStore, Store
from dlforge.data.build import read_split
from dlforge.data.seal import read_seal, seal_path, writer
from dlforge.data.verify import verify
from tests.data.test_snapshot import lines, relabel


@pytest.fixture
def built(store, snapshots, write_csv):
    """A snapshot of a small dataset, built and sealed."""
    store.create("d", "text_intent", write_csv("a.csv", lines(200, "alpha")))
    store.commit("d", write_csv("b.csv", lines(200, "beta", start=200)))
    return snapshots.build("d")


def edit_manifest(folder, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del manifest[key]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def forge(folder, file_name: str = "train.parquet") -> None:
    """Replace a split with another valid table and give the manifest its hash."""
    relabel(folder / file_name)
    files = json.loads((folder / "manifest.json").read_text())["files"]
    files[file_name]["sha256"] = sha256_file(folder / file_name)
    edit_manifest(folder, files=files)


def test_a_forged_split_is_refused_by_every_reader(built, snapshots):
    forge(built.path)
    split = built.path / "train.parquet"
    for read in (lambda: Snapshot.open(built.path).split("train"),
                 lambda: Snapshot.open(built.path).inputs("train"),
                 lambda: snapshots.load("d", built.version).table("train"),
                 lambda: read_split(split)):
        with pytest.raises(DlforgeError) as info:
            read()
        message = str(info.value)
        assert f"{split} does not match the digest the store sealed for it" in message
        sealed = built.manifest["files"]["train.parquet"]["sha256"]
        assert f"sha256 {sealed}" in message  # what was expected
        assert f"Fix: delete {built.path} and build it again from the store" in message
    Snapshot.open(built.path).split("val")  # the untouched splits still read


def test_a_forged_label_vocabulary_is_refused(built):
    edit_manifest(built.path, labels=list(reversed(built.manifest["labels"])))
    with pytest.raises(DlforgeError, match="manifest's labels .* is not the sealed one"):
        Snapshot.open(built.path).split("test")


def test_verify_names_a_forged_split(built, cli):
    forge(built.path, "val.parquet")

    result = cli("verify")

    assert result.returncode == 1
    assert f"snapshot d/{built.version}: val.parquet does not match the digest" in result.stdout
    assert str(seal_path(built.path.parents[2] / "store", "d", built.version)) in result.stdout


def test_verify_reports_a_snapshot_that_claims_a_seal_the_store_lacks(built, cli):
    seal = seal_path(built.path.parents[2] / "store", "d", built.version)
    seal.unlink()

    result = cli("verify")

    assert result.returncode == 1
    assert f"snapshot d/{built.version}: has no seal in the store" in result.stdout
    assert str(seal) in result.stdout


def test_snapshot_rebuilds_a_forged_split_from_the_store(built, snapshots, cli):
    original = (built.path / "train.parquet").read_bytes()
    forge(built.path)

    result = cli("snapshot", "d", check=True)

    assert result.stdout.strip() == built.version
    assert "corrupt, rebuilding it from the store" in result.stderr
    assert "sealed" in result.stderr and "reused" not in result.stderr
    assert (built.path / "train.parquet").read_bytes() == original
    seal = read_seal(snapshots.store.root, "d", built.version)
    assert seal["builds"][writer()]["train.parquet"]["sha256"] == sha256_file(
        built.path / "train.parquet")
    assert len(Snapshot.open(built.path).split("train")) == built.manifest["counts"]["train"]
    assert verify(snapshots)["ok"]


def test_a_manifest_that_leads_readers_away_from_the_seal_is_reported_and_replaced(
        built, snapshots, tmp_path):
    original = (built.path / "train.parquet").read_bytes()
    forge(built.path)
    edit_manifest(built.path, store=os.path.relpath(tmp_path / "decoy", built.path))

    problems = verify(snapshots)["problems"]

    assert any("train.parquet does not match the digest" in p for p in problems), problems
    assert any(f"leads readers to the seal in {tmp_path / 'decoy'}" in p for p in problems)
    again = snapshots.build("d")
    assert not again.reused and again.manifest["store"] == built.manifest["store"]
    assert (built.path / "train.parquet").read_bytes() == original


def test_an_unsealed_snapshot_opens_with_a_warning_and_the_next_build_seals_it(
        built, snapshots, caplog):
    seal_path(snapshots.store.root, "d", built.version).unlink()
    edit_manifest(built.path, store=None, sealed=None)  # as a snapshot from before seals
    files = {p.name: p.read_bytes() for p in built.path.glob("*.parquet")}

    with caplog.at_level(logging.WARNING):
        assert len(Snapshot.open(built.path).split("train")) == built.manifest["counts"]["train"]
    assert f"snapshot {built.path} has no seal" in caplog.text
    report = verify(snapshots)
    assert report["ok"] and report["datasets"]["d"]["unsealed_snapshots"] == 1

    again = snapshots.build("d")

    assert (again.version, again.reused) == (built.version, False)
    assert again.manifest["created_at"] == built.manifest["created_at"]
    assert {p.name: p.read_bytes() for p in built.path.glob("*.parquet")} == files
    assert read_seal(snapshots.store.root, "d", built.version) is not None
    assert verify(snapshots)["datasets"]["d"]["unsealed_snapshots"] == 0
    forge(built.path)
    with pytest.raises(DlforgeError, match="sealed"):
        Snapshot.open(built.path).split("train")


def test_a_rebuild_by_another_writer_adds_its_digests_to_the_seal(built, snapshots):
    path = seal_path(snapshots.store.root, "d", built.version)
    seal = json.loads(path.read_text())
    older = {f: {**e, "sha256": "0" * 64} for f, e in seal["builds"].pop(writer()).items()}
    seal["builds"]["dlforge 0.0.1, pyarrow 1.0.0"] = older  # other parquet bytes
    path.write_text(json.dumps(seal))
    shutil.rmtree(built.path)

    assert not snapshots.build("d").reused

    builds = json.loads(path.read_text())["builds"]
    assert builds["dlforge 0.0.1, pyarrow 1.0.0"] == older
    assert builds[writer()]["val.parquet"]["sha256"] == sha256_file(built.path / "val.parquet")
    Snapshot.open(built.path).split("val")


def test_a_seal_is_never_overwritten_with_other_digests(built, snapshots):
    path = seal_path(snapshots.store.root, "d", built.version)
    seal = json.loads(path.read_text())
    seal["builds"][writer()]["test.parquet"]["sha256"] = "0" * 64
    path.write_text(json.dumps(seal))
    sealed = path.read_bytes()
    shutil.rmtree(built.path)

    with pytest.raises(DlforgeError) as info:
        snapshots.build("d")

    assert f"does not match its seal {path}" in str(info.value) and "Fix:" in str(info.value)
    assert path.read_bytes() == sealed
    assert not built.path.exists()  # nothing published without its seal


def _build(roots: tuple[str, str]) -> str:
    store_root, snapshot_root = roots
    return SnapshotStore(snapshot_root, Store(store_root)).build("d").version


@pytest.mark.slow
def test_concurrent_builds_of_one_snapshot_seal_it_once(store, snapshots, write_csv):
    store.create("d", "text_intent", write_csv("a.csv", lines(20_000, "alpha")))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        versions = pool.map(_build, [(str(store.root), str(snapshots.root))] * 2)
    assert len(set(versions)) == 1
    seal = read_seal(store.root, "d", versions[0])
    assert list(seal["builds"]) == [writer()]
    assert verify(snapshots)["ok"]
    Snapshot.open(snapshots.root / "d" / versions[0]).split("train")


def test_an_unreadable_seal_is_reported_naming_it(built, snapshots):
    path = seal_path(snapshots.store.root, "d", built.version)
    path.write_text("{")
    with pytest.raises(DlforgeError, match=f"the seal {path} is unreadable .* Fix: restore"):
        Snapshot.open(built.path).split("train")
    assert any(f"the seal {path} is unreadable" in p for p in verify(snapshots)["problems"])


@pytest.fixture
def experiment(tmp_path):
    """A train config whose experiment's snapshot (of dataset ``toy``) is built and sealed
    in the project's store, and that snapshot's folder."""
    from dlforge.core.config import compose
    from tests.toy import make_snapshot, toy_rows

    summary = make_snapshot(tmp_path, toy_rows(200))
    cfg = compose("train", ["experiment=intent", f"paths.root={tmp_path}", "dataset.name=toy"])
    return cfg, Path(summary["path"])


def test_the_experiments_reader_finds_the_seal_in_the_projects_store(experiment, tmp_path):
    from dlforge.data import load_snapshot
    from dlforge.stages.common import experiment_snapshot

    cfg, folder = experiment
    split = folder / "train.parquet"
    forge(folder)
    leads_away = {"store": None, "sealed": None}  # as if from before seals
    for changes in ({"store": None}, leads_away,
                    {"store": os.path.relpath(tmp_path / "decoy", folder)}):
        edit_manifest(folder, **changes)
        for read in (lambda: experiment_snapshot(cfg).inputs("train"),
                     lambda: load_snapshot("toy", overrides=[f"paths.root={tmp_path}"])
                     .table("train"),
                     lambda: Snapshot.open(folder, store=cfg.paths.store_dir).split("train")):
            with pytest.raises(DlforgeError) as info:
                read()
            assert f"{split} does not match the digest the store sealed for it" in str(info.value)
            assert "Fix: delete" in str(info.value)
    assert experiment_snapshot(cfg).rows("val") > 0  # the untouched splits still read


def test_a_manifest_that_names_its_store_but_no_seal_of_it_is_refused(experiment, tmp_path):
    """The forged split, its hash and the manifest's store pointing at a store without the
    seal: also a reader that has only the folder refuses it."""
    cfg, folder = experiment
    forge(folder)
    edit_manifest(folder, store=os.path.relpath(tmp_path / "decoy", folder))
    with pytest.raises(DlforgeError, match=f"has no seal in the store {tmp_path / 'decoy'}"):
        Snapshot.open(folder).split("train")
    edit_manifest(folder, store=None)
    with pytest.raises(DlforgeError, match="names no store that holds its seal"):
        Snapshot.open(folder).split("train")


def test_a_sealed_snapshot_without_its_seal_in_the_projects_store_is_refused(experiment, cli):
    from dlforge.stages.common import experiment_snapshot

    cfg, folder = experiment
    store_root = Path(cfg.paths.store_dir)
    seal = seal_path(store_root, "toy", folder.name)
    seal.unlink()
    edit_manifest(folder, store=None)  # what the manifest says of its store does not matter

    for read in (lambda: experiment_snapshot(cfg),
                 lambda: SnapshotStore(folder.parents[1], Store(store_root)).fetch(
                     "toy", folder.name, folder.parents[2] / "copy")):
        with pytest.raises(DlforgeError) as info:
            read()
        message = str(info.value)
        assert f"snapshot {folder} has no seal in the store {store_root} (no {seal})" in message
        assert "Fix: delete" in message and "`dlforge data snapshot toy`" in message
    assert not (folder.parents[2] / "copy").exists()


def test_a_manifest_that_names_another_snapshot_is_refused(experiment):
    from dlforge.stages.common import experiment_snapshot

    cfg, folder = experiment
    edit_manifest(folder, version="0" * 12)
    with pytest.raises(DlforgeError, match=f"names snapshot toy/{'0' * 12}, not toy/"
                                           f"{folder.name}: the snapshot is not used"):
        experiment_snapshot(cfg)


def test_an_unsealed_snapshot_is_refused_for_the_experiment_until_it_is_rebuilt(experiment):
    """Built before seals, or a copy stripped of its marks: the stages never read it
    unchecked, and `dlforge snapshot` rebuilds it from the store and seals it."""
    from dlforge.stages.common import experiment_snapshot

    cfg, folder = experiment
    seal_path(Path(cfg.paths.store_dir), "toy", folder.name).unlink()
    edit_manifest(folder, store=None, sealed=None)

    with pytest.raises(DlforgeError) as info:
        experiment_snapshot(cfg)
    assert f"snapshot {folder} has no seal in the store {cfg.paths.store_dir}" in str(info.value)
    assert "Fix: run `dlforge data snapshot toy`" in str(info.value)

    store = Store(cfg.paths.store_dir)  # what the fix runs: rebuilt and sealed
    assert SnapshotStore(cfg.paths.snapshot_dir, store).build("toy").path == folder
    snapshot = experiment_snapshot(cfg)
    assert len(snapshot.inputs("train")) == snapshot.counts["train"]


def test_the_workflow_tracks_the_folder_the_store_keeps_seals_in():
    """The snapshot stage's outputs hold the seals, so they travel with the snapshots."""
    from dlforge.data.seal import SEALS
    from dlforge.stages import workflow

    assert workflow.SEALS == SEALS
