"""Augmentation of training batches: the transforms, their config checks, and that
only training batches (never validation, test, the package or serving) see them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.data import SnapshotStore, Store
from dlforge.data.snapshot import Snapshot
from dlforge.models.package import load_package
from dlforge.models.preprocessing import ImageEncoder, TextEncoder
from dlforge.stages.train import train
from dlforge.train.augment import TRANSFORMS, build_augment
from dlforge.train.data import SnapshotDataModule
from tests.toy import write_images

EVERY = {name: {} for name in TRANSFORMS}  # every transform, with its defaults
STRONG = {"crop": {"padding": 3}, "affine": {"p": 1.0, "degrees": 30, "scale": [0.8, 1.2],
                                             "translate": 0.1},
          "flip": {"p": 0.5}, "jitter": {"p": 1.0}, "erase": {"p": 1.0}}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_transform_keeps_shape_and_dtype_and_changes_the_batch(name):
    augment = build_augment({name: {"p": 1.0}})
    images = torch.randn(6, 3, 12, 10)  # not square
    out = augment(images, generator())
    assert out.shape == images.shape and out.dtype == images.dtype
    assert not torch.equal(out, images)
    assert augment(images, generator(0)).equal(out)  # the same seed, the same batch


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    augment = build_augment(EVERY)
    images = torch.randn(16, 1, 8, 8)
    first = augment(images, generator(1))
    assert torch.equal(first, augment(images, generator(1)))
    assert not torch.equal(first, augment(images, generator(2)))
    assert torch.equal(images, images.clone())  # the input is not modified in place


def test_p_zero_and_null_turn_a_transform_off():
    images = torch.randn(4, 1, 8, 8)
    assert torch.equal(build_augment({"flip": {"p": 0}, "erase": {"p": 0.0}})(images,
                                                                              generator()), images)
    assert build_augment({"flip": None}) is None and build_augment({}) is None
    assert build_augment(None) is None


@pytest.mark.parametrize(("spec", "message"), [
    ({"blur": {}}, r"datamodule.augment.blur is not a transform.*crop, affine, flip"),
    ({"flip": {"p": 1.5}}, r"datamodule.augment.flip.p=1.5 is outside \[0, 1\]"),
    ({"flip": {"p": -0.1}}, r"datamodule.augment.flip.p=-0.1 is outside"),
    ({"flip": {"q": 0.5}}, r"datamodule.augment.flip.q is not a parameter of flip"),
    ({"crop": {"padding": 1.5}}, r"datamodule.augment.crop.padding=1.5 .*an integer"),
    ({"erase": {"scale": [0.5, 0.1]}}, r"augment.erase.scale=\[0.5, 0.1\] is not a range"),
    ({"affine": 3}, r"datamodule.augment.affine=3 is not a mapping"),
    ([1, 2], r"datamodule.augment=\[1, 2\] is not a mapping"),
])
def test_a_bad_config_fails_naming_the_key(spec, message):
    with pytest.raises(DlforgeError, match=message):
        build_augment(spec)


def test_text_inputs_cannot_be_augmented():
    with pytest.raises(DlforgeError, match="datamodule.augment is set .* image inputs only"):
        build_augment({"flip": {}}, TextEncoder.kind)


def image_snapshot(root: Path) -> Path:
    store = Store(root / "data/store")
    store.create("toy", "image_class", write_images(root / "images"))
    ref = SnapshotStore(root / "data/snapshots", store).build("toy")
    (root / "outputs/intent").mkdir(parents=True)
    (root / "outputs/intent/snapshot.json").write_text(json.dumps({"path": str(ref.path)}))
    return ref.path


def test_only_training_batches_are_augmented(tmp_path):
    path = image_snapshot(tmp_path)
    plain = SnapshotDataModule(Snapshot.open(path), ImageEncoder(), batch_size=8)
    augmented = SnapshotDataModule(Snapshot.open(path), ImageEncoder(), batch_size=8,
                                   augment=STRONG, seed=3)
    for data in (plain, augmented):
        data.setup()
        data.trainer = SimpleNamespace(training=True, global_rank=0)
    loaders = {"train": lambda d: d.train_dataloader(), "val": lambda d: d.val_dataloader(),
               "test": lambda d: d.test_dataloader()}
    for split, loader in loaders.items():
        batch = next(iter(loader(augmented)))
        for data in (plain, augmented):
            data.trainer.training = split == "train"  # as Lightning's fit and test loops set it
        inputs, targets = augmented.on_after_batch_transfer(batch, 0)
        same, _ = plain.on_after_batch_transfer(batch, 0)
        assert torch.equal(targets, batch[1]) and torch.equal(same, batch[0])
        assert torch.equal(inputs, batch[0]) == (split != "train"), split
    assert augmented.state_dict() == {"augmented_batches": 1} and plain.state_dict() == {}


def test_text_models_with_augmentation_fail_before_training(train_cfg, tmp_path):
    with pytest.raises(DlforgeError, match="datamodule.augment is set"):
        train(train_cfg("datamodule=augment"))
    with pytest.raises(DlforgeError, match=r"datamodule.augment.flip.p=2 is outside"):
        train(train_cfg("+datamodule.augment={flip: {p: 2}}"))
    assert not (tmp_path / "outputs/intent/train/run.json").exists()


def test_an_augmented_image_model_trains_deterministically_and_packages_no_augmentation(
        train_cfg, tmp_path):
    root = tmp_path / "img"
    image_snapshot(root)
    common = ["model=small_cnn", "model.net.width=8", "trainer.max_epochs=3",
              "datamodule=augment", "datamodule.augment.flip=null"]
    cfg = train_cfg(*common, root=root)
    metrics = train(cfg)
    package = Path(cfg.paths.train_dir) / "model"
    weights = (package / "weights.safetensors").read_bytes()
    assert metrics["test/acc"] > 0.7
    assert train(train_cfg(*common, root=root))["test/acc"] == metrics["test/acc"]
    assert (package / "weights.safetensors").read_bytes() == weights  # same config, same weights

    # The package's encoder is the plain one: what evaluation and serving run.
    preprocessing = json.loads((package / "preprocessing.json").read_text())
    assert "augment" not in json.dumps(preprocessing)
    predictor = load_package(package)
    snapshot = Snapshot.open(cfg.snapshot_path if cfg.get("snapshot_path") else json.loads(
        (root / "outputs/intent/snapshot.json").read_text())["path"])
    labels = [snapshot.labels[int(ids[0])] for ids in snapshot.split("test")["label_ids"]]
    predicted = [p["label"] for p in predictor.predict(snapshot.inputs("test"))]
    accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)  # test batches unaugmented

    train(train_cfg(*common, "seed=7", root=root))
    assert (package / "weights.safetensors").read_bytes() != weights
    train(train_cfg(*common[:-2], root=root))  # no augmentation, the same seed
    assert (package / "weights.safetensors").read_bytes() != weights


def test_the_augment_config_composes_and_is_valid():
    cfg = compose("train", ["experiment=digits", "datamodule=augment"])
    assert set(build_augment(cfg.datamodule.augment).transforms) == set(TRANSFORMS)
    assert "augment" not in compose("train", ["experiment=digits"]).datamodule
