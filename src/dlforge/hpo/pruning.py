"""The Lightning callback that reports a trial's metric to Optuna and prunes it.

It is part of the trial's frozen config (``callbacks.pruning``), so every rank
of a distributed trial builds it. Only global rank 0 talks to the study; its
decision is broadcast, and every rank stops at the same epoch (a rank that
raised alone would leave the others waiting in a collective). Rank 0 also
records what the trial has cost so far (its own processes and GPU, from the
start of fitting), so a study's ``hpo.budget`` counts running trials.
"""

from __future__ import annotations

import lightning as L

from dlforge.core.errors import DlforgeError


class OptunaPruning(L.Callback):
    """Report ``monitor`` after each validation; stop training when the pruner says so.

    Args:
        storage: the study's storage (journal file path or RDB URL).
        study_name: the study.
        trial_id: Optuna's id of the trial (not its number).
        monitor: the validation metric, e.g. ``val/acc``.
        pruner: the study's pruner (built from ``hpo.pruner``).
    """

    def __init__(self, storage: str, study_name: str, trial_id: int, monitor: str, pruner):
        self.storage, self.study_name, self.trial_id = storage, study_name, trial_id
        self.monitor, self.pruner = monitor, pruner
        self.pruned_epoch: int | None = None
        self._trial = None
        self._meter = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            from dlforge.train.cost import CostMeter

            self._meter = CostMeter(reset_peak=False)  # the run's own meter reset it

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)  # synced: the same on every rank
        if value is None:
            raise DlforgeError(f"hpo.metric={self.monitor} is not logged by training; logged: "
                               f"{sorted(trainer.callback_metrics)}")
        prune = False
        if trainer.is_global_zero:
            trial = self.trial()
            trial.report(float(value), step=trainer.current_epoch)
            self._record_cost(trial, trainer)
            prune = trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            if trainer.is_global_zero:
                from dlforge.hpo.study import PRUNED_AT

                self.trial().set_user_attr(PRUNED_AT, trainer.current_epoch)

    def _record_cost(self, trial, trainer: L.Trainer) -> None:
        from dlforge.hpo.study import COST
        from dlforge.train.cost import device_usage

        if self._meter is not None:
            trial.set_user_attr(COST, self._meter.read([device_usage(trainer)]))

    def trial(self):
        """The running trial, re-attached from storage (this may be another process)."""
        if self._trial is None:
            import optuna

            from dlforge.hpo.study import open_storage

            study = optuna.load_study(study_name=self.study_name, pruner=self.pruner,
                                      storage=open_storage(self.storage))
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial
