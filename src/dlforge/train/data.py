"""A LightningDataModule over a dataset snapshot.

The encoder (vocabulary, image size and normalisation) is fitted on the train
split only; validation and test inputs are encoded with it, as serving will.
Training batches alone are then augmented (``augment``, image inputs only), on
the device, after they are moved there.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from dlforge.data.snapshot import Snapshot
from dlforge.train.augment import batch_seed, build_augment

log = logging.getLogger(__name__)


class EncodedSplit(Dataset):
    """Pre-encoded inputs and their targets (class index, or multi-hot for multi-label)."""

    def __init__(self, inputs: list, targets: torch.Tensor):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index]


class SnapshotDataModule(L.LightningDataModule):
    """Train/val/test loaders of one snapshot version.

    Args:
        snapshot: the snapshot (:meth:`dlforge.data.snapshot.Snapshot.open`).
        encoder: an unfitted encoder (``TextEncoder``/``ImageEncoder``).
        batch_size: examples per batch (per process under DDP).
        num_workers: loader worker processes (0: load in the training process).
        augment: transforms of training batches (:mod:`dlforge.train.augment`), or None.
        seed: the seed of the augmentation's random streams (the training seed).
    """

    def __init__(self, snapshot: Snapshot, encoder, batch_size: int = 64, num_workers: int = 0,
                 augment=None, seed: int = 0):
        super().__init__()
        self.snapshot = snapshot
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers
        self.augment = build_augment(augment, getattr(encoder, "kind", None))
        self.seed = seed
        self.augmented_batches = 0  # per process; in checkpoints, so a resumed run continues
        self.manifest = snapshot.manifest
        self.labels: list[str] = snapshot.labels
        self.multi_label: bool = snapshot.multi_label
        self.splits: dict[str, EncodedSplit] = {}

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.encoder.fit(self.snapshot.inputs("train"))
        for name in ("train", "val", "test"):
            inputs = [self.encoder.encode(x) for x in self.snapshot.inputs(name)]
            targets = self._targets(self.snapshot.split(name)["label_ids"])
            self.splits[name] = EncodedSplit(inputs, targets)
        log.info("snapshot %s: %s examples, %d classes", self.snapshot.version,
                 {k: len(v) for k, v in self.splits.items()}, self.num_classes)

    def _targets(self, label_ids) -> torch.Tensor:
        if not self.multi_label:
            return torch.tensor([int(ids[0]) for ids in label_ids], dtype=torch.long)
        targets = torch.zeros(len(label_ids), self.num_classes)
        for row, ids in enumerate(label_ids):
            targets[row, list(ids)] = 1.0
        return targets

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Augment a training batch, on its device; other batches pass unchanged."""
        trainer = self.trainer
        if self.augment is None or trainer is None or not trainer.training:
            return batch
        inputs, targets = batch
        generator = torch.Generator(device=inputs.device)
        generator.manual_seed(batch_seed(self.seed, trainer.global_rank, self.augmented_batches))
        self.augmented_batches += 1
        return self.augment(inputs, generator), targets

    def state_dict(self) -> dict:
        return {"augmented_batches": self.augmented_batches} if self.augment else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.augmented_batches = state_dict.get("augmented_batches", 0)

    def _collate(self, batch):
        inputs, targets = zip(*batch, strict=True)
        return self.encoder.collate(inputs), torch.stack(targets)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=self._collate,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
