"""Fit, test, package and track one model.

    run_training(cfg, snapshot)   freeze the config, open the MLflow run (or
                                  re-open an interrupted one), then fit in this
                                  process or launch the DDP ranks from the
                                  frozen config; what ``dlforge train`` and
                                  every sweep trial run
    fit(frozen)                   what every rank runs; rank 0 writes the outputs

Outputs under ``paths.train_dir``: config.yaml (frozen), metrics.json,
history.csv, curves.png, model/ (the package), checkpoints/, run.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.io import write_text_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.core.tracking import finish_run, setup_mlflow, setup_tracking_uri
from dlforge.data.snapshot import Snapshot
from dlforge.train import tracking
from dlforge.train.contract import check_targets
from dlforge.train.cost import CostMeter, device_usage, reset_device_peak

log = logging.getLogger(__name__)


def run_training(cfg: DictConfig, snapshot: Snapshot, cost: dict | None = None) -> dict:
    """Train one model from a composed config on ``snapshot``. Returns its metrics,
    with what the run cost under ``cost`` (:mod:`dlforge.train.cost`).

    ``cost``, when given, receives the run's cost, also when training fails. With
    ``launch=false`` nothing is trained: the config is frozen, the MLflow run
    opened, and the worker command to start on every node is returned.
    """
    from dlforge.train.augment import check_augment
    from dlforge.train.launch import check_launch, launch, worker_command, world_size
    from dlforge.train.outputs import record_cost

    check_targets(cfg, snapshot)
    check_launch(cfg.trainer, cfg.launch)
    check_augment(cfg)
    frozen, frozen_path = _prepare(cfg, snapshot)
    if not cfg.launch:
        return {"run_id": frozen["run_id"], "config": str(frozen_path),
                "worker": " ".join(worker_command(frozen_path))}
    cost = {} if cost is None else cost
    meter, report = CostMeter(), {}
    try:
        metrics = (launch(frozen_path, cfg.trainer) if world_size(cfg.trainer) > 1
                   else fit(frozen, report))
    except BaseException as err:
        cost.update(meter.read())
        _log_failed_cost(frozen, cost)
        tracking.end_run(frozen, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    cost.update(meter.read(_device_usage(frozen, report)))
    record_cost(frozen, cost)
    return {**metrics, "cost": dict(cost)}


def _device_usage(frozen: dict, report: dict) -> list[dict]:
    """The GPUs the ranks trained on: this process's report, or the ranks' files."""
    if report:
        return [report["usage"]]
    files = ExperimentLayout.from_paths(frozen["paths"]).train
    return [json.loads(p.read_text()).get("usage", {}) for p in files.rank_reports()]


def _log_failed_cost(frozen: dict, cost: dict) -> None:
    """Log a failed run's cost (what was measured: no GPU figures, the ranks did not
    report); a failure to log it never hides the training's own error."""
    from dlforge.train.outputs import log_cost

    try:
        log_cost(frozen["run_id"], cost)
    except Exception as err:  # noqa: BLE001
        log.warning("the cost of run %s is not recorded: %s", frozen["run_id"], err)


def _prepare(cfg: DictConfig, snapshot: Snapshot) -> tuple[dict, Path]:
    """Decide fresh start or resume, open the MLflow run, write the frozen config."""
    frozen = tracking.as_dict(cfg)
    frozen.pop("hydra", None)
    frozen.update(snapshot=snapshot.version, snapshot_path=str(snapshot.path))
    digest = tracking.config_hash(frozen)
    files = ExperimentLayout.from_paths(cfg.paths).train
    state = tracking.read_state(files.run_state)
    last = (Path(cfg.callbacks.checkpoint.dirpath) / "last.ckpt"
            if "checkpoint" in cfg.callbacks else None)
    resumable = (cfg.resume and state.get("status") == "running"
                 and state.get("config_hash") == digest and last is not None and last.is_file())
    if state.get("status") == "running" and not resumable:
        log.info("ending interrupted run %s: config changed or no checkpoint <resume=%s>",
                 state["run_id"], cfg.resume)
        setup_mlflow(cfg.tracking)
        finish_run(state["run_id"], "KILLED")
    if not resumable and last is not None:
        _clear_checkpoints(last.parent)
    resume_run = state["run_id"] if resumable else None
    run_id = tracking.open_run(cfg, frozen, snapshot.manifest, resume_run)
    frozen.update(run_id=run_id, config_hash=digest,
                  resume_from=str(last) if resumable else None)
    tracking.write_state(files.run_state, run_id=run_id,
                         config_hash=digest, status="running")
    write_text_atomic(files.frozen_config, OmegaConf.to_yaml(OmegaConf.create(frozen)))
    return frozen, files.frozen_config


def fit(frozen: dict, report: dict | None = None) -> dict:
    """Fit and test on this process (one rank); rank 0 writes outputs and artifacts.

    ``report``, when given, receives this rank's number, final metrics, its GPU
    (:func:`dlforge.train.cost.device_usage`) and, with several ranks, a digest of
    its weights (data-parallel ranks must end identical).
    """
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_only

    from dlforge.train.callbacks import EpochHistory
    from dlforge.train.data import SnapshotDataModule
    from dlforge.train.module import Classifier

    cfg = OmegaConf.create(frozen)
    _quiet_lightning()
    L.seed_everything(cfg.seed, workers=True)
    if rank_zero_only.rank == 0:  # from the launcher's environment; other ranks never use MLflow
        setup_tracking_uri(cfg.tracking)
    data = SnapshotDataModule(Snapshot.open(cfg.snapshot_path, store=cfg.paths.store_dir),
                              instantiate(cfg.model.encoder),
                              seed=cfg.seed, **cfg.datamodule)
    data.setup()
    net = instantiate(cfg.model.net, num_classes=data.num_classes, **data.encoder.model_inputs)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = Classifier(net, data.num_classes, data.multi_label, instantiate(cfg.optimizer),
                        scheduler)
    history = EpochHistory(cfg.run_id)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [history]
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(trainer_args.get("strategy"), dict):
        trainer_args["strategy"] = instantiate(cfg.trainer.strategy)
    trainer = L.Trainer(**trainer_args, callbacks=callbacks, logger=False,
                        default_root_dir=cfg.paths.train_dir)
    reset_device_peak(trainer)
    started = time.perf_counter()
    trainer.fit(module, data, ckpt_path=cfg.resume_from)
    seconds = time.perf_counter() - started
    epochs = list(history.history)  # testing from a checkpoint restores an older history
    checkpoint = trainer.checkpoint_callback
    best = "best" if checkpoint and checkpoint.best_model_path else None
    test = trainer.test(module, data, ckpt_path=best, verbose=False)[0]
    weights = network_weights(trainer)  # on every rank: gathering FSDP shards is collective
    if report is not None:
        report.update(rank=trainer.global_rank, metrics={**epochs[-1], **test},
                      usage=device_usage(trainer))
        if trainer.world_size > 1:
            report["weights_sha256"] = weights_digest(weights)
    if not trainer.is_global_zero:
        return {}
    from dlforge.train.outputs import write_outputs

    samples = len(data.splits["train"]) * history.epochs_run
    metrics = write_outputs(cfg, trainer, weights, data, epochs, test, seconds, samples)
    tracking.end_run(frozen, "FINISHED")
    return metrics


def _quiet_lightning() -> None:
    """Let Lightning's log records go through our handlers only (not printed twice)."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True


def network_weights(trainer) -> dict:
    """The network's full state dict, whatever the strategy (FSDP shards are gathered)."""
    state = trainer.strategy.lightning_module_state_dict()
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def weights_digest(weights: dict) -> str:
    """sha256 over a state dict's tensors, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(weights.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _clear_checkpoints(folder: Path) -> None:
    for path in folder.glob("*.ckpt") if folder.is_dir() else []:
        path.unlink()
