"""GPU training paths: the default trainer on a GPU, and FSDP with bf16 and
activation checkpointing. Skipped where there is no CUDA device (CI)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from dlforge.core.config import compose
from dlforge.models.package import load_package, save_package
from dlforge.models.preprocessing import TextEncoder
from dlforge.models.text import EmbeddingBagClassifier
from tests.toy import make_snapshot, toy_rows

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def fit(tmp_path, **trainer_args):
    import lightning as L

    from dlforge.data.snapshot import Snapshot
    from dlforge.train.data import SnapshotDataModule
    from dlforge.train.fit import network_weights
    from dlforge.train.module import Classifier

    summary = make_snapshot(tmp_path, toy_rows(600))
    data = SnapshotDataModule(Snapshot.open(summary["path"]), TextEncoder(ngrams=2), batch_size=32)
    data.setup()
    net = EmbeddingBagClassifier(num_classes=data.num_classes, embed_dim=32, hidden_dim=32,
                                 **data.encoder.model_inputs)
    module = Classifier(net, data.num_classes, False, partial(torch.optim.AdamW, lr=0.02))
    trainer = L.Trainer(devices=1, max_epochs=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path, **trainer_args)
    trainer.fit(module, data)
    test = trainer.test(module, data, verbose=False)[0]
    return trainer, network_weights(trainer), data, test


def test_the_default_trainer_config_trains_on_the_gpu(tmp_path):
    args = dict(compose("train", ["experiment=intent"]).trainer)
    args = {k: v for k, v in args.items() if k not in ("devices", "max_epochs", "num_nodes",
                                                       "enable_progress_bar")}
    trainer, weights, _, test = fit(tmp_path, **args)
    assert trainer.strategy.root_device.type == "cuda"
    assert test["test/acc"] > 0.7


def test_fsdp_with_bf16_and_activation_checkpointing_packages_full_weights(tmp_path):
    from hydra.utils import instantiate

    cfg = compose("train", ["experiment=intent", "trainer=fsdp", "trainer.devices=1",
                            "trainer.strategy.activation_checkpointing=[torch.nn.Linear]"])
    assert cfg.trainer.precision == "bf16-mixed"
    trainer, weights, data, test = fit(tmp_path, accelerator="gpu",
                                       strategy=instantiate(cfg.trainer.strategy),
                                       precision=cfg.trainer.precision)
    assert type(trainer.strategy).__name__ == "FSDPStrategy"
    assert test["test/acc"] > 0.7
    # The gathered weights rebuild the plain network on the CPU.
    arguments = {"num_classes": data.num_classes, "embed_dim": 32, "hidden_dim": 32,
                 **data.encoder.model_inputs}
    folder = save_package(tmp_path / "model", weights, EmbeddingBagClassifier, arguments,
                          data.encoder, data.labels, False, {})
    predictor = load_package(folder)
    assert predictor.predict(["play a loud song on the guitar"])[0]["label"] == "music"
    print(json.dumps({"fsdp_test_acc": test["test/acc"]}))
