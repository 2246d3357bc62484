"""The LightningModule: any registered network, single- or multi-label, with metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import lightning as L
import torch
import torchmetrics
from torch import nn

from dlforge.core.errors import DlforgeError


class Classifier(L.LightningModule):
    """Trains ``net`` with cross-entropy (or BCE for multi-label data).

    Args:
        net: maps a batch of encoded inputs to logits ``(B, C)``.
        num_classes: C.
        multi_label: sigmoid/BCE head and multi-label metrics.
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``optimizer -> LRScheduler`` or None.
    """

    def __init__(self, net: nn.Module, num_classes: int, multi_label: bool,
                 optimizer: Callable, scheduler: Callable | None = None):
        super().__init__()
        self.net, self.multi_label = net, multi_label
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
        # One collection per stage ("train" itself would shadow Module.train).
        stages = ("train", "val", "test")
        self.metrics = nn.ModuleDict({
            f"{stage}_metrics": torchmetrics.MetricCollection(_metrics(num_classes, multi_label),
                                                              prefix=f"{stage}/")
            for stage in stages})
        self.losses = nn.ModuleDict({f"{stage}_loss": torchmetrics.MeanMetric()
                                     for stage in stages})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _step(self, batch, stage: str) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = self.loss(logits, targets)
        preds = torch.sigmoid(logits) if self.multi_label else logits
        with _native_bincount(preds.device):
            self.metrics[f"{stage}_metrics"].update(
                preds, targets.long() if self.multi_label else targets)
        self.losses[f"{stage}_loss"].update(loss.detach(), len(targets))
        return loss

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's epoch metrics once: computing them reduces over all
        processes (torchmetrics), so nothing is logged per step."""
        metrics, loss = self.metrics[f"{stage}_metrics"], self.losses[f"{stage}_loss"]
        mean_loss = loss.compute()
        if stage == "train" and not torch.isfinite(mean_loss):  # the same on every rank
            raise DlforgeError(f"training diverged: train/loss is {float(mean_loss)} in epoch "
                               f"{self.current_epoch}. Fix: lower optimizer.lr or set "
                               "trainer.gradient_clip_val")
        self.log_dict({**metrics.compute(), f"{stage}/loss": mean_loss}, on_step=False,
                      on_epoch=True, batch_size=1)
        metrics.reset()
        loss.reset()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # Logged at the last batch rather than in on_train_epoch_end, which runs
        # after the callbacks that record the epoch (dlforge.train.callbacks).
        if self.trainer.is_last_batch:
            self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self._parameter_groups())
        for group in optimizer.param_groups:  # before the scheduler records each group's rate
            group["lr"] *= group.get("lr_factor", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}

    def _parameter_groups(self):
        """What the optimizer is built over: the net's ``param_groups()`` where it defines
        them (a group's ``lr_factor`` scales the optimizer's learning rate for it, e.g. a
        pretrained backbone's; see :mod:`dlforge.models.pretrained`), else every parameter."""
        groups = getattr(self.net, "param_groups", None)
        return groups() if callable(groups) else self.parameters()


@contextlib.contextmanager
def _native_bincount(device: torch.device) -> Iterator[None]:
    """Let torchmetrics use torch.bincount on the CPU in deterministic mode.

    With deterministic algorithms on, torchmetrics replaces bincount by a
    (batch x classes^2) comparison on every device: 15x slower per step for
    151 classes. CPU bincount is deterministic, so the switch is only needed
    on accelerators.
    """
    if device.type != "cpu" or not torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)


def _metrics(num_classes: int, multi_label: bool) -> dict:
    if multi_label:
        return {"acc": torchmetrics.classification.MultilabelExactMatch(num_labels=num_classes),
                "f1": torchmetrics.classification.MultilabelF1Score(num_labels=num_classes,
                                                                   average="macro")}
    return {"acc": torchmetrics.classification.MulticlassAccuracy(num_classes=num_classes,
                                                                  average="micro"),
            "f1": torchmetrics.classification.MulticlassF1Score(num_classes=num_classes,
                                                                average="macro")}
