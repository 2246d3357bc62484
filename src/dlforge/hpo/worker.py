"""Sweep workers: claim a trial, train it, tell the study; repeat until the study is full.

Workers are asynchronous: each starts its next trial as soon as its own ends.
``dlforge sweep`` runs one worker in its own process, or starts
``hpo.n_workers`` of them as

    python -m dlforge.hpo.worker SWEEP_CONFIG WORKER_INDEX

each with its share of the CPU threads and, where there are GPUs, one GPU.
A worker dies with the ``dlforge sweep`` that started it (even on SIGKILL), so
a killed sweep leaves no orphans; its running trials are failed and retried
when the sweep runs again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

from omegaconf import OmegaConf

from dlforge.core import secrets
from dlforge.core.io import write_text_atomic
from dlforge.core.layout import StudyFiles
from dlforge.core.process import die_with_parent, preload
from dlforge.hpo import study as s
from dlforge.hpo.recovery import recover
from dlforge.hpo.space import Param
from dlforge.hpo.storage import first_beat, heartbeat, quiet_optuna
from dlforge.train.worker import TRAINING_LIBRARIES

log = logging.getLogger(__name__)

WAIT_POLL = 5  # seconds between looks at a full study's running trials


def run_worker(frozen: dict, worker: int) -> int:
    """Run trials until the study has ``n_trials``, its cost reached ``hpo.budget`` or the
    deadline passed; return how many.

    With heartbeats (RDB storage) a worker leaves a full study only when no trial
    is running any more: a running one may belong to a worker that died, and is
    then failed after ``hpo.grace_period`` and retried here.
    """
    from dlforge.hpo.trial import run_trial

    sweep = frozen["sweep"]
    settings = s.SweepSettings(**sweep["settings"])
    params = [Param(**p) for p in sweep["params"]]
    tracking = OmegaConf.create(frozen["train"]).tracking  # lost trials' MLflow runs
    study, done, waiting = None, 0, False
    while True:
        with s.claim_lock(settings.storage, sweep["study"]):
            if study is None:  # seeded under the lock: it counts a neighbour's first trial
                study = _open(frozen, worker, settings, params)
            recover(study, settings, tracking)
            if sweep["deadline"] is not None and time.time() > sweep["deadline"]:
                log.info("no new trial: past hpo.timeout <hpo.timeout=%s>", settings.timeout)
                break
            if reached := s.budget_reached(study, settings):
                _log_budget_spent(reached)
                break
            trial = None
            if s.budget_used(study) < sweep["n_trials"]:
                trial = _claim(study, settings, worker)
            elif not settings.heartbeats or not (running := s.running(study)):
                break
            elif not waiting:
                log.info("the study is full; waiting for %d running trial(s) of other "
                         "workers (one silent for %d s is retried here) "
                         "<hpo.grace_period=%s>", running, settings.grace_period,
                         settings.grace_period)
        waiting = trial is None
        if waiting:
            time.sleep(min(settings.heartbeat_interval, WAIT_POLL))
            continue
        with heartbeat(s.study_storage(settings), trial._trial_id):
            run_trial(study, trial, frozen, params)
        done += 1
    return done


def _log_budget_spent(reached: dict[str, tuple[float, float]]) -> None:
    spent = ", ".join(f"{name} {used:g} of {limit:g}" for name, (used, limit) in reached.items())
    keys = " ".join(f"hpo.budget.{name}={limit:g}" for name, (_, limit) in reached.items())
    log.info("no new trial: the study's budget is spent (%s); running trials finish <%s>",
             spent, keys)


def _open(frozen: dict, worker: int, settings: s.SweepSettings, params: list[Param]):
    """The worker's study, with its own sampler and the pruner."""
    from hydra.utils import instantiate

    sweep = frozen["sweep"]
    hpo = OmegaConf.create(frozen["train"]).hpo  # interpolations (seed, epochs) resolve
    existing = len(s.open_study(sweep["study"], settings).get_trials(deepcopy=False))
    offset = _seed_offset(worker, existing, settings.storage)
    sampler = s.build_sampler(hpo.sampler, params, seed_offset=offset)
    return s.open_study(sweep["study"], settings, sampler, instantiate(hpo.pruner))


def _claim(study, settings: s.SweepSettings, worker: int):
    """Ask for a trial and record its owner (under the claim lock).

    The first heartbeat comes before the owner: a trial with an owner always has
    one, and a trial without one under the lock was claimed by a killed worker.
    """
    with quiet_optuna():
        trial = study.ask()
    first_beat(s.study_storage(settings), trial._trial_id)
    trial.set_user_attr(s.HOST, socket.gethostname())
    trial.set_user_attr(s.PID, os.getpid())
    trial.set_user_attr(s.WORKER, worker)
    return trial


def _seed_offset(worker: int, existing: int, storage: str) -> int:
    """Keep samplers apart: equal seeds would propose the same parameters.

    Workers of one sweep differ by index, re-runs by the trials already in the
    study. Separately started sweeps (cluster jobs, all worker 0) on an RDB URL
    may count the same trials (on a database without a common claim lock), so
    host and pid count too.
    """
    offset = 7919 * worker + existing
    if "://" in storage:
        offset += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_003
    return offset


def run_workers(frozen_path: Path, frozen: dict) -> None:
    """Run ``n_workers`` workers: this process for one, child processes for more.

    Raises:
        RuntimeError: when a worker process crashed (a failing trial does not).
    """
    settings = s.SweepSettings(**frozen["sweep"]["settings"])
    if settings.n_workers == 1:
        _set_threads(settings.threads_per_worker)
        run_worker(frozen, 0)
        return
    threads = settings.threads_per_worker or max(1, (os.cpu_count() or 1) // settings.n_workers)
    gpus = _gpus()
    procs = []
    for index in range(settings.n_workers):
        env = {**os.environ, "DLFORGE_WORKER_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        command = [sys.executable, "-m", "dlforge.hpo.worker", str(frozen_path), str(index)]
        procs.append(subprocess.Popen(command, env=env))
    log.info("started %d sweep workers, %d torch threads each%s <hpo.n_workers=%d>",
             len(procs), threads, f", GPUs {gpus}" if gpus else "", settings.n_workers)
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:  # an interrupt or error here: take the workers down too
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
    if any(codes):
        raise RuntimeError(f"sweep worker(s) exited with codes {codes}; see their log above")


def _gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def write_sweep_config(path: Path, frozen: dict) -> None:
    """Write the sweep's frozen config for its workers, holding no password: the
    training config as given (:func:`dlforge.core.secrets.freeze`), the study's
    storage with its password hidden (a worker resolves it from ``train.hpo.storage``)."""
    written = {"train": secrets.freeze(OmegaConf.create(frozen["train"]), resolve=False),
               "sweep": secrets.scrub(frozen["sweep"])}
    write_text_atomic(path, OmegaConf.to_yaml(OmegaConf.create(written)))


def read_sweep_config(path: Path) -> dict:
    """The sweep's frozen config (:func:`write_sweep_config`), its storage resolved here."""
    frozen = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    hpo = OmegaConf.create(frozen["train"]).hpo
    frozen["sweep"]["storage"] = secrets.resolved(hpo, "storage", "hpo.storage")
    frozen["sweep"]["settings"]["storage"] = frozen["sweep"]["storage"]
    return frozen


def main(argv: list[str]) -> int:
    die_with_parent()
    path, index = Path(argv[0]), int(argv[1])
    frozen = read_sweep_config(path)
    log_file = StudyFiles(Path(frozen["sweep"]["folder"])).worker_log(index)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(log_file)]
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format=f"[%(asctime)s][worker {index}][%(name)s][%(levelname)s] "
                               "%(message)s")
    for name in ("lightning.pytorch", "lightning.fabric"):  # per-trial banners: noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    _set_threads(int(os.environ.get("DLFORGE_WORKER_THREADS", "0")) or None)
    try:
        run_worker(frozen, index)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    preload(TRAINING_LIBRARIES)  # a process of its own
    sys.exit(main(sys.argv[1:]))
