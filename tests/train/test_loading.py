"""Loading a snapshot for training: examples are read and encoded one by one in the
loader workers, the same batches and weights come out with any number of workers,
and a bad example (or a dying worker) is reported by its id, never skipped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.data import Snapshot, SnapshotStore, Store
from dlforge.models.preprocessing import ImageEncoder, TextEncoder
from dlforge.stages.train import train
from dlforge.train.data import SnapshotDataModule, auto_workers
from tests.toy import make_snapshot, toy_rows, write_images


@pytest.fixture
def image_snapshot(tmp_path) -> Snapshot:
    store = Store(tmp_path / "data/store")
    store.create("toy", "image_class", write_images(tmp_path / "images", per_class=12))
    return Snapshot.open(SnapshotStore(tmp_path / "data/snapshots", store).build("toy").path)


def batches(snapshot: Snapshot, encoder, split: str, **settings) -> list:
    data = SnapshotDataModule(snapshot, encoder, batch_size=8, **settings)
    data.setup()
    torch.manual_seed(0)  # the shuffle's seed, as Lightning's seed_everything sets it
    return list(data._loader(split, shuffle=split == "train"))


@pytest.mark.parametrize("split", ["train", "test"])
def test_workers_give_the_same_batches_as_the_training_process(image_snapshot, split):
    alone = batches(image_snapshot, ImageEncoder(), split, num_workers=0)
    workers = batches(image_snapshot, ImageEncoder(), split, num_workers=2)
    assert len(alone) == len(workers) > 0
    for (x0, y0), (x1, y1) in zip(alone, workers, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_text_encoder_reads_every_train_text_and_image_encoder_a_sample(
        tmp_path, image_snapshot):
    folder = Path(make_snapshot(tmp_path / "text", toy_rows(80))["path"])
    texts = Snapshot.open(folder)
    data = SnapshotDataModule(texts, TextEncoder(), num_workers=0, encoder_fit_sample=2)
    data.setup()
    assert data.encoder.vocab == TextEncoder().fit(list(texts.inputs("train"))).vocab

    sampled = SnapshotDataModule(image_snapshot, ImageEncoder(), num_workers=0,
                                 encoder_fit_sample=5)
    sampled.setup()
    inputs = image_snapshot.inputs("train")
    expected = ImageEncoder().fit(list(inputs.sample(5)))
    assert sampled.encoder.mean == expected.mean and len(list(inputs.sample(5))) == 5


def test_loader_settings_default_to_the_spare_cores(image_snapshot):
    data = SnapshotDataModule(image_snapshot, ImageEncoder(), num_workers=None)
    data.setup()
    loader = data.train_dataloader()
    assert loader.num_workers == auto_workers() <= max(0, len(os.sched_getaffinity(0)) - 1)
    assert loader.pin_memory == torch.cuda.is_available()


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_no_longer_decodes_is_reported_by_id(image_snapshot, monkeypatch,
                                                           workers):
    inputs = image_snapshot.inputs("train")
    bad = inputs[3]
    decode = ImageEncoder.encode

    def encode(self, data):  # as a newer decoder that refuses one stored image would
        if data == bad:
            raise OSError("broken data stream when reading image file")
        return decode(self, data)

    monkeypatch.setattr(ImageEncoder, "encode", encode)
    with pytest.raises(DlforgeError) as info:
        batches(image_snapshot, ImageEncoder(), "train", num_workers=workers)
    message = str(info.value)
    assert f"example {inputs.example_id(3)} (row 3 of the train split" in message
    assert "broken data stream" in message and "Fix:" in message
    assert "Traceback" not in message


def test_a_missing_store_object_fails_the_loader_naming_the_example(image_snapshot,
                                                                     tmp_path):
    inputs = image_snapshot.inputs("val")
    digest = image_snapshot.table("val", ["image_digest"])["image_digest"][0].as_py()
    (tmp_path / "data/store/toy/objects" / digest[:2] / digest[2:]).unlink()
    with pytest.raises(DlforgeError) as info:
        batches(image_snapshot, ImageEncoder(), "val", num_workers=1)
    assert f"example {inputs.example_id(0)}" in str(info.value)
    assert "`dlforge data verify`" in str(info.value)


def test_a_worker_that_dies_is_reported_with_the_example_it_was_reading(image_snapshot,
                                                                         monkeypatch):
    inputs = image_snapshot.inputs("train")
    fatal = inputs[9]
    decode = ImageEncoder.encode

    def encode(self, data):  # a decoder that crashes the process on one input
        if data == fatal:
            os.kill(os.getpid(), signal.SIGKILL)
        return decode(self, data)

    monkeypatch.setattr(ImageEncoder, "encode", encode)
    with pytest.raises(DlforgeError) as info:
        batches(image_snapshot, ImageEncoder(), "train", num_workers=1)
    message = str(info.value)
    assert "loader worker died" in message and f"example {inputs.example_id(9)}" in message


@pytest.mark.slow
def test_training_with_workers_gives_the_weights_of_training_without(train_cfg, tmp_path):
    weights = []
    for workers in (0, 2):
        cfg = train_cfg(f"datamodule.num_workers={workers}", "trainer.max_epochs=1")
        train(cfg)
        weights.append((Path(cfg.paths.train_dir) / "model/weights.safetensors").read_bytes())
    assert weights[0] == weights[1]
