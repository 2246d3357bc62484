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

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_text_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.core.tracking import finish_run, setup_mlflow, setup_tracking_uri
from dlforge.data.snapshot import Snapshot
from dlforge.train import tracking
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


def check_targets(cfg: DictConfig, snapshot: Snapshot | None = None) -> None:
    """Fail before any work when a _target_ does not import (e.g. a typo in an override)
    or, given the ``snapshot`` to train on, when ``model.net`` breaks the model
    contract (:func:`check_model`)."""
    from hydra.utils import get_object

    groups = {"model.net": cfg.model.net, "model.encoder": cfg.model.encoder,
              "optimizer": cfg.optimizer, "scheduler": cfg.get("scheduler")}
    for key, node in groups.items():
        if node is None:
            continue
        try:
            get_object(node._target_)
        except Exception:
            raise DlforgeError(f"{key}._target_={node._target_} cannot be imported. Fix: pick a "
                               f"config from conf/{key.split('.')[0]}/ or correct the path") \
                from None
    if snapshot is not None:
        check_model(cfg, snapshot)


CHECK_EXAMPLES = 4  # train examples in the one batch the model contract is checked on
CONTRACT = ("the model contract: a torch.nn.Module built with num_classes, the encoder's "
            "inputs and model.net's keys, whose forward maps a batch to logits (B, C)")


def check_model(cfg: DictConfig, snapshot: Snapshot) -> None:
    """Raise naming the key and the fix when ``model.net`` is not a ``torch.nn.Module``
    class, rejects its arguments, or does not map a batch to logits ``(B, C)``.

    Cheap: the encoder is fitted on the first train examples, which are encoded and
    collated as training does, and go through one forward pass in eval mode without
    gradients. Training's random streams are left as they were.
    """
    import torch
    from hydra.utils import get_object, instantiate

    from dlforge.models.source import class_path

    target = cfg.model.net._target_
    built = get_object(target)
    if not (isinstance(built, type) and issubclass(built, torch.nn.Module)):
        raise DlforgeError(f"model.net._target_={target} is {type(built).__name__} "
                           f"{built!r}, not a torch.nn.Module subclass. Fix: name a class that "
                           f"subclasses torch.nn.Module ({CONTRACT})")
    class_path(built)  # one a package can name again
    inputs = snapshot.inputs("train")[:CHECK_EXAMPLES]
    if not inputs:
        return  # nothing to run; the datamodule reports an empty split
    encoder = instantiate(cfg.model.encoder).fit(inputs)
    given = {"num_classes": len(snapshot.labels), **encoder.model_inputs}
    batch = encoder.collate([encoder.encode(x) for x in inputs])
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        net = _build_net(cfg.model.net, built, given)
        net.eval()
        try:
            logits = net(batch)
        except Exception as err:
            raise DlforgeError(f"model.net._target_={target}: the forward pass on a batch of "
                               f"{len(inputs)} train examples ({_shape(batch)}) raised "
                               f"{type(err).__name__}: {err}. Fix: make forward take the "
                               f"encoder's batch ({CONTRACT})") from None
    expected = (len(inputs), given["num_classes"])
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        raise DlforgeError(f"model.net._target_={target}: the forward pass on a batch of "
                           f"{len(inputs)} train examples ({_shape(batch)}) returned "
                           f"{_shape(logits)}, not logits of shape (B, C) = {expected} "
                           f"(num_classes={expected[1]}). Fix: return one score per class "
                           f"for each example ({CONTRACT})")


def _build_net(node: DictConfig, built: type, given: dict):
    """``model.net`` built as training builds it (Hydra, with ``given``)."""
    import inspect

    from hydra.utils import instantiate

    keys = {k: v for k, v in node.items() if not (k.startswith("_") and k.endswith("_"))}
    arguments = ", ".join([*(f"{k}={v}" for k, v in given.items()),
                           *(f"{k}={v} (model.net.{k})" for k, v in keys.items())])
    target = node._target_
    try:
        inspect.signature(built).bind(**{**keys, **given})
    except TypeError as err:
        raise DlforgeError(_argument_problem(target, err, given, arguments, built)) from None
    except ValueError:  # no signature to check: the call below tells
        pass
    try:
        return instantiate(node, **given)
    except Exception as err:
        cause = err.__cause__ or err  # Hydra wraps what the constructor raised
        raise DlforgeError(f"model.net._target_={target} rejects its arguments "
                           f"({type(cause).__name__}: {cause}); it was given {arguments}. Fix: "
                           f"correct those keys under model.net or the class's __init__ "
                           f"({CONTRACT})") from None


def _argument_problem(target: str, err: TypeError, given: dict, arguments: str,
                      built: type) -> str:
    """The message for arguments the constructor's signature does not take, naming the key
    (and, for a key it does not take, the nearest one it does)."""
    import difflib
    import inspect
    import re

    message = str(err)
    name = re.search(r"'(\w+)'", message)
    key = f"model.net.{name[1]}" if name else "model.net"
    hint = ""
    if name and name[1] in given:
        fix = (f"accept {name[1]} in {target}.__init__: every model is given num_classes "
               f"and the encoder's inputs (here {', '.join(given)})")
    elif "unexpected" in message:
        fix = f"remove {key} or add {name[1] if name else 'it'} to {target}.__init__"
        taken = [p for p in inspect.signature(built).parameters if p not in given]
        near = difflib.get_close_matches(name[1], taken, n=1) if name else []
        hint = f" Did you mean model.net.{near[0]}?" if near else ""
    else:
        fix = f"set {key} (e.g. `{key}=...` on the command line or in conf/model/)"
    return (f"{key}: {target} rejects its arguments ({message}); it was given {arguments}."
            f"{hint} Fix: {fix}")


def _shape(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, {value.dtype}"
    return type(value).__name__


def _clear_checkpoints(folder: Path) -> None:
    for path in folder.glob("*.ckpt") if folder.is_dir() else []:
        path.unlink()
