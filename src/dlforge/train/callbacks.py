"""Per-epoch metric history: kept in checkpoints, logged to MLflow asynchronously."""

from __future__ import annotations

import lightning as L


class EpochHistory(L.Callback):
    """Collects each epoch's train/val metrics; rank 0 sends them to MLflow.

    The history is part of the checkpoint (``state_dict``), so a resumed run
    still has its earlier epochs for the final plots and metrics.
    """

    def __init__(self, run_id: str | None = None):
        self.run_id = run_id
        self.history: list[dict] = []
        self.epochs_run = 0  # in this process (a resumed run restores the earlier history)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """On resume, log the restored epochs that MLflow lacks: a kill between a
        checkpoint and the asynchronous log of its epoch lost them there, and the
        resumed run starts at the next epoch."""
        if not (self.run_id and self.history and trainer.is_global_zero):
            return
        import mlflow

        key = next(k for k in self.history[-1] if k != "epoch")
        logged = {m.step for m in mlflow.MlflowClient().get_metric_history(self.run_id, key)}
        for row in self.history:
            if row["epoch"] not in logged:
                self._log(row)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after validation in Lightning 2, so train/* and val/* are both final.
        row = {"epoch": trainer.current_epoch,
               **{k: float(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith(("train/", "val/"))}}
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        self.history.append(row)
        self.epochs_run += 1
        if self.run_id and trainer.is_global_zero:
            self._log(row)

    def _log(self, row: dict) -> None:
        import mlflow

        metrics = {k: v for k, v in row.items() if k != "epoch"}
        mlflow.log_metrics(metrics, step=row["epoch"], run_id=self.run_id, synchronous=False)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
