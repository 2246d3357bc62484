"""The Optuna study behind a sweep: settings, storage, sampler, pruner, budgets.

A study lives in shared storage, so any number of worker processes (on one
machine with the journal file, on several with an RDB URL) cooperate on it:
each claims a trial with ``ask``, trains it and ``tell``s the outcome. On RDB
storage a running trial beats (``hpo.heartbeat_interval``); one silent for
``hpo.grace_period`` is failed by whichever worker looks first and its
parameters are queued again (:class:`RetryStale`). The study name carries a
hash of the search space and the training config, so a changed config starts a
fresh study and a re-run continues the same one.

Two budgets stop a study from starting trials: ``hpo.n_trials`` (finished or
running trials) and ``hpo.budget`` (their cost, recorded on each trial where
every worker reads it). Trials already running finish either way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import socket
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.settings import Settings, above, at_least, one_of
from dlforge.hpo.space import Param, grid_space
from dlforge.hpo.storage import (  # noqa: F401 - claim_lock, redact: used as s.claim_lock
    claim_lock,
    open_storage,
    quiet_optuna,
    redact,
    shared_lock,
)

log = logging.getLogger(__name__)

# Trial user attributes dlforge keeps (optuna-dashboard shows them).
HOST, PID, WORKER, DIR = "dlforge.host", "dlforge.pid", "dlforge.worker", "dlforge.dir"
RUN_ID, EPOCHS, ERROR = "dlforge.run_id", "dlforge.epochs", "dlforge.error"
INTERRUPTED, PRUNED_AT = "dlforge.interrupted", "dlforge.pruned_epoch"
RETRY_OF = "dlforge.retry_of"  # the number of the lost trial whose parameters it retries
MAX_RETRIES = 3  # a trial that keeps killing its worker is not retried for ever
PARENT_RUN = "dlforge.mlflow_parent"  # a study attribute: the sweep's MLflow run
# What a trial cost (dlforge.train.cost); while it runs, as of its last epoch.
COST = "dlforge.cost"
HPO_SOURCE = "the hpo config (conf/hpo/, the experiment)"


@dataclass(frozen=True)
class Budget(Settings):
    """``hpo.budget``: what the study's trials may cost in all (null: no limit).

    Built with :meth:`Budget.read`, which also refuses a key that is no budget.
    """

    SOURCE = HPO_SOURCE

    cpu_seconds: float | None = field(default=None, metadata=above(0))
    gpu_seconds: float | None = field(default=None, metadata=above(0))

    @classmethod
    def read(cls, node: Any, prefix: str = "hpo.budget") -> Budget:
        names = [f.name for f in fields(cls)]
        for key in node or {}:
            if key not in names:
                raise DlforgeError(f"{prefix}.{key} in {cls.SOURCE}: not a cost a budget "
                                   f"limits. Fix: limit {' or '.join(names)} (null: no "
                                   "limit)")
        return cls.from_config(node or {}, prefix)

    @property
    def limits(self) -> dict[str, float]:
        """The limits that are set."""
        return {k: v for k, v in self.as_dict().items() if v is not None}

    def reached(self, spent: dict) -> dict[str, tuple[float, float]]:
        """``{name: (spent, limit)}`` for each limit ``spent`` has reached."""
        return {k: (spent.get(k, 0.0), v) for k, v in self.limits.items()
                if spent.get(k, 0.0) >= v}


@dataclass(frozen=True)
class SweepSettings(Settings):
    """``hpo`` settings other than the space, sampler and pruner, checked.

    Built with ``SweepSettings.from_config(cfg.hpo, "hpo")``; every error names
    the ``hpo.*`` key and the fix.
    """

    SOURCE = HPO_SOURCE

    study_name: str
    storage: str
    metric: str
    direction: str = field(metadata=one_of("maximize", "minimize"))
    n_trials: int = field(metadata=at_least(1))
    timeout: float | None = field(metadata=above(0))
    n_workers: int = field(metadata=at_least(1))
    threads_per_worker: int | None = field(default=None, metadata=at_least(1))
    heartbeat_interval: int | None = field(default=60, metadata=at_least(1))
    grace_period: int | None = field(default=120, metadata=at_least(1))
    budget: dict | None = None  # hpo.budget, checked as a Budget

    def check(self, prefix: str) -> None:
        Budget.read(self.budget, f"{prefix}.budget")
        if not self.metric.startswith("val/"):
            raise self.invalid(prefix, "metric", "trials are judged and pruned on a "
                               "validation metric", "use val/acc, val/f1 or val/loss")
        if (self.heartbeat_interval is not None and self.grace_period is not None
                and self.grace_period <= self.heartbeat_interval):
            raise self.invalid(prefix, "grace_period", "a live trial would be failed "
                               f"between two heartbeats (hpo.heartbeat_interval="
                               f"{self.heartbeat_interval})", "set it to at least twice "
                               "hpo.heartbeat_interval")

    @property
    def cost_budget(self) -> Budget:
        """``hpo.budget``."""
        return Budget.read(self.budget)

    @property
    def heartbeats(self) -> bool:
        """Whether running trials beat: RDB storage with ``hpo.heartbeat_interval`` set."""
        return self.heartbeat_interval is not None and _rdb(self.storage)


def study_name(name: str, params: list[Param], settings: SweepSettings,
               training_hash: str) -> str:
    """``name-<hash>``: the hash covers what makes trials comparable."""
    identity = {"space": [p.__dict__ for p in params], "metric": settings.metric,
                "direction": settings.direction, "training": training_hash}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{name}-{digest.hexdigest()[:8]}"


def _rdb(storage: str) -> bool:
    return "://" in storage and not storage.startswith("redis://")


def study_storage(settings: SweepSettings):
    """The storage of ``hpo.storage``, with heartbeats and their retry on RDB."""
    if not settings.heartbeats:
        return open_storage(settings.storage)
    return open_storage(settings.storage, settings.heartbeat_interval, settings.grace_period,
                        RetryStale())


def open_study(name: str, settings: SweepSettings, sampler=None, pruner=None):
    import optuna

    # Optuna's records go through dlforge's log handlers; its per-call notices
    # ("Using an existing study") are left out.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=study_storage(settings),
                               direction=settings.direction, sampler=sampler, pruner=pruner,
                               load_if_exists=True)


def build_sampler(node: DictConfig, params: list[Param], seed_offset: int):
    """The configured sampler; ``seed_offset`` keeps workers (and re-runs) apart.

    Samplers with one seed in two workers would propose the same parameters.
    """
    from hydra.utils import get_object, instantiate
    from optuna.samplers import GridSampler

    options: dict[str, Any] = {}
    if node.get("seed") is not None:
        options["seed"] = int(node.seed) + seed_offset
    if get_object(node._target_) is GridSampler:
        options.update(search_space=grid_space(params), _target_="dlforge.hpo.samplers.Grid")
    return instantiate(node, **options)


def check_target(node: DictConfig, key: str) -> None:
    from hydra.utils import get_object

    try:
        get_object(node._target_)
    except Exception:
        raise DlforgeError(f"{key}._target_={node._target_} cannot be imported. Fix: pick a "
                           f"config from conf/{key.replace('.', '/')}/") from None


def grid_size(params: list[Param]) -> int:
    size = 1
    for values in grid_space(params).values():
        size *= len(values)
    return size


def budget_used(study) -> int:
    """Trials that count towards ``n_trials``: finished or running.

    A trial lost with its worker (killed, or silent past ``hpo.grace_period``)
    does not count: it is retried. One that raised (a diverging configuration)
    does.
    """
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and not lost(t)))


def spent(study) -> dict:
    """What the study's trials cost in all, as recorded (a running trial's as of its
    last epoch; a trial lost with its worker's as far as it got)."""
    from dlforge.train.cost import add_up

    return add_up(t.user_attrs[COST] for t in study.get_trials(deepcopy=False)
                  if COST in t.user_attrs)


def budget_reached(study, settings: SweepSettings) -> dict[str, tuple[float, float]]:
    """``{name: (spent, limit)}`` for each ``hpo.budget`` limit the study has reached;
    empty while it may start trials. Call it holding :func:`claim_lock`, with the
    count of ``n_trials``: then workers overshoot by at most the trials running."""
    budget = settings.cost_budget
    return budget.reached(spent(study)) if budget.limits else {}


def lost(trial) -> bool:
    """A failed trial that is no result: its worker was killed (:func:`mark_failed`) or
    stopped beating. A trial that raised, or whose metric was not finite, has its
    error recorded."""
    return bool(trial.user_attrs.get(INTERRUPTED)) or ERROR not in trial.user_attrs


def running(study) -> int:
    """Running trials. With heartbeats, a worker that holds none waits for the
    others' before it leaves a full study: one of them may yet go stale and be
    retried."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def interrupted_trials(study, storage: str) -> list:
    """Running trials whose process on this machine is gone (killed).

    Call it holding :func:`claim_lock`: a trial whose owner is not recorded yet,
    or only in part (its host but not its pid: each is a write of its own), was
    then claimed by a process killed between ``ask`` and recording itself (where
    the lock is shared by every worker; see :func:`~dlforge.hpo.storage.shared_lock`).
    """
    from optuna.trial import TrialState

    from dlforge.core.process import pid_alive

    host, shared = socket.gethostname(), shared_lock(storage)

    def interrupted(owner: dict) -> bool:
        if PID not in owner:
            return shared
        return owner.get(HOST) == host and not pid_alive(int(owner[PID]))

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if interrupted(t.user_attrs)]


def mark_failed(study, trial, reason: str) -> None:
    """Fail a trial left running by a killed process; queue its parameters again."""
    import optuna
    from optuna.trial import TrialState

    live = optuna.trial.Trial(study, trial._trial_id)
    live.set_user_attr(INTERRUPTED, True)
    live.set_user_attr(ERROR, reason)
    study.tell(trial.number, state=TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


class RetryStale:
    """Optuna's heartbeat callback: queue a stale trial's parameters again.

    Optuna's own retry callback (``RetryHeartbeatStaleTrialCallback``, formerly
    ``RetryFailedTrialCallback``) adds the retry, at most :data:`MAX_RETRIES`
    times; the retry leaves the lost worker's attributes behind and records
    which trial it retries (:data:`RETRY_OF`).
    """

    def __init__(self, max_retry: int = MAX_RETRIES):
        import optuna

        retry = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                 or optuna.storages.RetryFailedTrialCallback)
        with quiet_optuna():
            self._retry = retry(max_retry=max_retry)

    def __call__(self, study, trial) -> None:
        log.warning("trial %d went stale: no heartbeat from %s (pid %s) within "
                    "hpo.grace_period; queueing its parameters again", trial.number,
                    trial.user_attrs.get(HOST, "its worker"), trial.user_attrs.get(PID, "?"))
        retry = copy.deepcopy(trial)
        retry.user_attrs = {RETRY_OF: trial.number}
        with quiet_optuna():
            self._retry(study, retry)


def fail_stale(study) -> list:
    """Fail the running trials whose heartbeat stopped (on any host); their retries
    are queued by :class:`RetryStale`. Returns the trials failed here.

    Call it holding :func:`claim_lock`.
    """
    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    if not before:
        return []
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.number in before and lost(t)]
