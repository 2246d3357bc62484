"""A LightningDataModule over a dataset snapshot, read lazily.

Nothing is held per example but the split's compact input column (texts, or the
digests of images in the store) and its label ids: each example is read,
decoded and encoded where it is loaded, in DataLoader worker processes
(``datamodule.num_workers``), so memory does not grow with the dataset.

The encoder (vocabulary, image size and normalisation) is fitted on the train
split only: a text encoder reads every train text in one streaming pass, an
image encoder measures an evenly spaced sample (``datamodule.encoder_fit_sample``).
Validation and test inputs are encoded with it, as serving will. Training
batches alone are then augmented (``augment``, image inputs only), on the
device, after they are moved there.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dlforge.core.errors import DlforgeError
from dlforge.data.reader import SplitInputs
from dlforge.data.snapshot import Snapshot
from dlforge.train.augment import batch_seed, build_augment

log = logging.getLogger(__name__)

IDLE = -1  # a worker's slot in SnapshotSplit.reading when it reads no example
MAX_AUTO_WORKERS = 4


def auto_workers() -> int:
    """Loader workers that use the spare cores: the cores this process may run on,
    shared among the training processes of this machine, less one for training."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_AUTO_WORKERS, per_process - 1))


class SnapshotSplit(Dataset):
    """One split: example ``i`` is read, encoded and paired with its target on access.

    Args:
        inputs: the split's lazy inputs (:meth:`Snapshot.inputs`).
        label_ids: its ``label_ids`` column (Arrow ``list<int32>``).
        encoder: the fitted encoder.
        where: the split and snapshot, for messages.
        num_classes: the size of the multi-hot target of a multi-label snapshot.
        workers: the loader's worker processes (for :attr:`reading`).
    """

    def __init__(self, inputs: SplitInputs, label_ids, encoder, where: str,
                 num_classes: int, multi_label: bool, workers: int = 0):
        self.inputs, self.encoder, self.where = inputs, encoder, where
        self.num_classes, self.multi_label = num_classes, multi_label
        ids = label_ids.combine_chunks()
        self._counts = pc.list_value_length(ids).to_numpy().astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])  # (N + 1,)
        self._ids = pc.list_flatten(ids).to_numpy().astype(np.int64)
        # The row each worker is reading (shared memory), so that a worker that dies
        # mid-example is reported with that example.
        self.reading = multiprocessing.RawArray("q", [IDLE] * max(1, workers))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        info = get_worker_info()
        slot = info.id if info is not None else 0
        self.reading[slot] = index
        try:
            encoded = self.encoder.encode(self.inputs[index])
        except DlforgeError:
            raise  # a damaged store object: the reader named the example and the fix
        except Exception as err:
            raise DlforgeError(
                f"{self.describe(index)} cannot be read: {type(err).__name__}: {err}. Fix: "
                "run `dlforge data verify`; if the input itself is bad, commit a corrected "
                "copy (a later commit replaces it) and build the snapshot again") from None
        self.reading[slot] = IDLE
        return encoded, self._target(index)

    def _target(self, index: int) -> int | torch.Tensor:
        """The class index, or the multi-hot ``(C,)`` vector of a multi-label snapshot."""
        ids = self._ids[self._starts[index]:self._starts[index + 1]]
        if not self.multi_label:
            return int(ids[0])
        target = torch.zeros(self.num_classes)
        target[torch.from_numpy(ids)] = 1.0
        return target

    def describe(self, index: int) -> str:
        return f"example {self.inputs.example_id(index)} (row {index} of {self.where})"

    def in_progress(self) -> list[str]:
        """The examples that workers were reading (those of a worker that died stay)."""
        return [self.describe(i) for i in self.reading if i != IDLE]


class Collate:
    """Batches of ``(encoded, target)`` -> ``(inputs, targets)`` tensors (a plain object,
    so that a ``spawn`` worker receives the encoder and nothing else)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def __call__(self, batch):
        inputs, targets = zip(*batch, strict=True)
        if isinstance(targets[0], int):
            return self.encoder.collate(inputs), torch.tensor(targets, dtype=torch.long)  # (B,)
        return self.encoder.collate(inputs), torch.stack(targets)  # (B, C)


class SnapshotLoader(DataLoader):
    """A DataLoader whose worker failures are reported with the example being read."""

    def __iter__(self):
        # Workers start (and may die) while the iterator is being made, too.
        with _reported(self.dataset):
            return _Reported(super().__iter__(), self.dataset)


class _Reported:
    """An iterator over a :class:`SnapshotLoader` that names the example when a worker
    raised (its own message, without the worker's traceback) or died."""

    def __init__(self, iterator, dataset: SnapshotSplit):
        self._iterator, self._dataset = iterator, dataset

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self._iterator)

    def __getattr__(self, name):
        return getattr(self._iterator, name)

    def __next__(self):
        with _reported(self._dataset):
            return next(self._iterator)


@contextmanager
def _reported(dataset: SnapshotSplit) -> Iterator[None]:
    """Turn a loader worker's error or death into a DlforgeError naming the example."""
    try:
        yield
    except DlforgeError as err:
        text = str(err)
        if "DataLoader worker process" in text:  # the worker's message is the last line
            text = text.rstrip().splitlines()[-1].split(": ", 1)[-1]
        raise DlforgeError(text) from None
    except (RuntimeError, EOFError, ConnectionError) as err:
        # A dead worker surfaces as PyTorch's RuntimeError (from its SIGCHLD handler,
        # wherever the main process is, or from the next read), or, when it died while
        # handing over a batch's shared memory, as the closed pipe's EOF or reset.
        if isinstance(err, RuntimeError) and "DataLoader worker" not in str(err):
            raise
        reading = "; ".join(dataset.in_progress()) or "no example in progress"
        why = str(err) or type(err).__name__
        raise DlforgeError(f"a loader worker died while reading {reading} ({why}). Fix: "
                           "check that example's input (`dlforge data verify`); if it is "
                           "fine, the worker ran out of memory or crashed: lower "
                           "datamodule.num_workers or datamodule.batch_size") from None


class SnapshotDataModule(L.LightningDataModule):
    """Train/val/test loaders of one snapshot version.

    Args:
        snapshot: the snapshot (:meth:`dlforge.data.snapshot.Snapshot.open`).
        encoder: an unfitted encoder (``TextEncoder``/``ImageEncoder``).
        batch_size: examples per batch (per process under DDP).
        num_workers: loader worker processes (0: load in the training process; None:
            :func:`auto_workers`).
        pin_memory: page-locked batches for a faster copy to the GPU (None: when CUDA is
            available).
        persistent_workers: keep the workers between epochs.
        prefetch_factor: batches each worker loads ahead.
        encoder_fit_sample: train images an image encoder measures (evenly spaced; None:
            all); text encoders read every train text, streamed.
        augment: transforms of training batches (:mod:`dlforge.train.augment`), or None.
        seed: the seed of the augmentation's random streams (the training seed).
    """

    def __init__(self, snapshot: Snapshot, encoder, batch_size: int = 64,
                 num_workers: int | None = 0, pin_memory: bool | None = None,
                 persistent_workers: bool = True, prefetch_factor: int = 2,
                 encoder_fit_sample: int | None = 1024, augment=None, seed: int = 0):
        super().__init__()
        self.snapshot = snapshot
        self.encoder, self.batch_size = encoder, batch_size
        self.num_workers = auto_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers, self.prefetch_factor = persistent_workers, prefetch_factor
        self.encoder_fit_sample = encoder_fit_sample
        self.augment = build_augment(augment, getattr(encoder, "kind", None))
        self.seed = seed
        self.augmented_batches = 0  # per process; in checkpoints, so a resumed run continues
        self.manifest = snapshot.manifest
        self.labels: list[str] = snapshot.labels
        self.multi_label: bool = snapshot.multi_label
        self.splits: dict[str, SnapshotSplit] = {}

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = {name: self.snapshot.inputs(name) for name in ("train", "val", "test")}
        image = getattr(self.encoder, "kind", None) == "image"  # text: every text, streamed
        self.encoder.fit(splits["train"].sample(self.encoder_fit_sample if image else None))
        for name, inputs in splits.items():
            label_ids = self.snapshot.table(name, ["label_ids"]).column("label_ids")
            where = f"the {name} split of snapshot {self.snapshot.dataset}/{self.snapshot.version}"
            self.splits[name] = SnapshotSplit(inputs, label_ids, self.encoder, where,
                                              self.num_classes, self.multi_label,
                                              self.num_workers)
        log.info("snapshot %s: %s examples, %d classes; %d loader workers "
                 "<datamodule.num_workers=%s>", self.snapshot.version,
                 {k: len(v) for k, v in self.splits.items()}, self.num_classes,
                 self.num_workers, self.num_workers)

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

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.num_workers
        return SnapshotLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle,
                              num_workers=workers, collate_fn=Collate(self.encoder),
                              pin_memory=self.pin_memory,
                              persistent_workers=self.persistent_workers and workers > 0,
                              prefetch_factor=self.prefetch_factor if workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
