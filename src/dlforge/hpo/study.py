"""The Optuna study behind a sweep: settings, storage, sampler, pruner, budget.

A study lives in shared storage, so any number of worker processes (on one
machine with the journal file, on several with an RDB URL) cooperate on it:
each claims a trial with ``ask``, trains it and ``tell``s the outcome. The
study name carries a hash of the search space and the training config, so a
changed config starts a fresh study and a re-run continues the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.io import file_lock
from dlforge.core.settings import Settings, above, at_least, one_of
from dlforge.hpo.space import Param, grid_space

# Trial user attributes dlforge keeps (optuna-dashboard shows them).
HOST, PID, WORKER, DIR = "dlforge.host", "dlforge.pid", "dlforge.worker", "dlforge.dir"
RUN_ID, EPOCHS, ERROR = "dlforge.run_id", "dlforge.epochs", "dlforge.error"
INTERRUPTED, PRUNED_AT = "dlforge.interrupted", "dlforge.pruned_epoch"
PARENT_RUN = "dlforge.mlflow_parent"  # a study attribute: the sweep's MLflow run


@dataclass(frozen=True)
class SweepSettings(Settings):
    """``hpo`` settings other than the space, sampler and pruner, checked.

    Built with ``SweepSettings.from_config(cfg.hpo, "hpo")``; every error names
    the ``hpo.*`` key and the fix.
    """

    SOURCE = "the hpo config (conf/hpo/, the experiment)"

    study_name: str
    storage: str
    metric: str
    direction: str = field(metadata=one_of("maximize", "minimize"))
    n_trials: int = field(metadata=at_least(1))
    timeout: float | None = field(metadata=above(0))
    n_workers: int = field(metadata=at_least(1))
    threads_per_worker: int | None = field(default=None, metadata=at_least(1))

    def check(self, prefix: str) -> None:
        if not self.metric.startswith("val/"):
            raise self.invalid(prefix, "metric", "trials are judged and pruned on a "
                               "validation metric", "use val/acc, val/f1 or val/loss")


def study_name(name: str, params: list[Param], settings: SweepSettings,
               training_hash: str) -> str:
    """``name-<hash>``: the hash covers what makes trials comparable."""
    identity = {"space": [p.__dict__ for p in params], "metric": settings.metric,
                "direction": settings.direction, "training": training_hash}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{name}-{digest.hexdigest()[:8]}"


def open_storage(spec: str):
    """A journal file for a path; RDB storage (or a Redis journal) for a URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if spec.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(spec))
    if "://" in spec:
        return _rdb_storage(spec)
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(url: str, attempts: int = 5):
    """RDB storage; retried, since processes starting together on a new database
    race to create its schema (one wins, the others find it on the next try)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(name: str, settings: SweepSettings, sampler=None, pruner=None):
    import optuna

    # Optuna's records go through dlforge's log handlers; its per-call notices
    # ("Using an existing study") are left out.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=open_storage(settings.storage),
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

    A trial failed because its process was killed does not count: it is
    retried. One that raised (a diverging configuration) does.
    """
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED)))


@contextlib.contextmanager
def claim_lock(storage: str) -> Iterator[None]:
    """Serialise ``count, ask`` between local workers so the study stops at n_trials.

    With an RDB URL (workers on several machines) there is no common lock and a
    study can overshoot by at most one trial per extra worker.
    """
    if "://" in storage:
        yield
        return
    with file_lock(Path(f"{storage}.claim")):
        yield


def interrupted_trials(study, storage: str) -> list:
    """Running trials whose process on this machine is gone (killed).

    Call it holding :func:`claim_lock`: a journal-file trial with no owner yet
    was then claimed by a process killed between ``ask`` and recording itself.
    """
    from optuna.trial import TrialState

    from dlforge.core.process import pid_alive

    host, local = socket.gethostname(), "://" not in storage
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if (t.user_attrs.get(HOST) == host and not pid_alive(int(t.user_attrs[PID])))
            or (local and HOST not in t.user_attrs)]


def mark_failed(study, trial, reason: str) -> None:
    """Fail a trial left running by a killed process; queue its parameters again."""
    import optuna
    from optuna.trial import TrialState

    live = optuna.trial.Trial(study, trial._trial_id)
    live.set_user_attr(INTERRUPTED, True)
    live.set_user_attr(ERROR, reason)
    study.tell(trial.number, state=TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"dlforge.retry_of": trial.number})


def redact(url: str) -> str:
    """A storage URL without its password, for logs and tags."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


