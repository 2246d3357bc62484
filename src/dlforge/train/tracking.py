"""MLflow tracking of a training run: one run per training, resumable, rank 0 only.

The launcher process opens (or re-opens) the run and passes its id down; only
global rank 0 logs to it. Per-epoch metrics are logged asynchronously, so
tracking does not hold up training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge import __version__

log = logging.getLogger(__name__)


def setup_tracking_uri(tracking: DictConfig) -> None:
    """Point MLflow at ``tracking.tracking_uri`` (a relative SQLite path made absolute)."""
    import mlflow

    uri = _absolute_sqlite(tracking.tracking_uri)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        _create_sqlite_store(uri)


def _create_sqlite_store(uri: str) -> None:
    """Create the SQLite store's tables under a lock: processes starting together on
    a new database (sweep workers, parallel jobs) would otherwise race to create them."""
    import mlflow

    from dlforge.data.fs import file_lock

    path = Path(uri.removeprefix("sqlite:///"))
    if path in _CREATED:
        return
    with file_lock(path.with_name(f".{path.name}.lock")):
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    _CREATED.add(path)


_CREATED: set[Path] = set()


def connect(tracking_uri: str | None = None) -> None:
    """Point MLflow at ``tracking_uri``, or at ``tracking.tracking_uri`` in conf/ (for CLIs)."""
    from dlforge.config import compose

    tracking = compose("runs").tracking if tracking_uri is None \
        else OmegaConf.create({"tracking_uri": tracking_uri})
    setup_tracking_uri(tracking)


def add_tracking_uri_option(parser) -> None:
    """``--tracking-uri`` for the commands that read the tracking store (see :func:`connect`)."""
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: tracking.tracking_uri in conf/)")


def setup_mlflow(tracking: DictConfig) -> str:
    """Point MLflow at the tracking store; create the experiment; return its id."""
    import mlflow

    setup_tracking_uri(tracking)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = tracking.get("artifact_location")
    if location and "://" not in location and _is_server(tracking.tracking_uri):
        location = None  # a tracking server stores (or proxies) artifacts itself
    if location and "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    return mlflow.create_experiment(tracking.experiment, artifact_location=location)


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///rel/path.db`` -> absolute, with the folder created."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def config_hash(cfg: dict) -> str:
    """Hash of everything that determines the trained weights (not paths or run ids)."""
    keys = ("model", "datamodule", "optimizer", "scheduler", "trainer", "seed", "snapshot")
    relevant = {k: cfg.get(k) for k in keys}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def flatten(cfg: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` for MLflow params."""
    from dlforge.config import dotted

    return {name: json.dumps(value) if isinstance(value, list | dict) else str(value)
            for name, value in dotted(cfg, prefix).items()}


def git_state() -> dict[str, str]:
    """Commit of the working tree and whether it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"dlforge.git_commit": "unknown", "dlforge.git_dirty": "unknown"}
    return {"dlforge.git_commit": commit, "dlforge.git_dirty": str(bool(dirty.strip())).lower()}


def open_run(cfg: DictConfig, frozen: dict, manifest: dict, resume_run: str | None) -> str:
    """Start the training run (or re-open ``resume_run``); return its id."""
    import mlflow

    experiment_id = setup_mlflow(cfg.tracking)
    client = mlflow.MlflowClient()
    if resume_run:
        client.update_run(resume_run, status="RUNNING")
        client.set_tag(resume_run, "dlforge.pid", str(os.getpid()))  # the live process now
        log.info("resuming MLflow run %s", resume_run)
        return resume_run
    tags = {
        "dlforge.experiment": cfg.experiment_name,
        "dlforge.stage": "train",
        "dlforge.dataset": manifest["dataset"],
        "dlforge.snapshot": manifest["version"],
        "dlforge.commits": ",".join(str(c["id"]) for c in manifest["commits"]),
        "dlforge.config_hash": config_hash(frozen),
        "dlforge.version": __version__,
        "dlforge.host": socket.gethostname(),
        "dlforge.pid": str(os.getpid()),
        **git_state(),
        **{k: str(v) for k, v in (cfg.tracking.get("tags") or {}).items()},
    }
    run = client.create_run(experiment_id, run_name=cfg.tracking.get("run_name"), tags=tags)
    run_id = run.info.run_id
    params = flatten({k: v for k, v in frozen.items() if k not in ("paths", "hydra", "hpo")})
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(params)
        _log_snapshot_input(manifest, Path(frozen["snapshot_path"]))
        mlflow.log_dict(frozen, "config.yaml")
    client.update_run(run_id, status="RUNNING")  # start_run's exit marked it finished
    log.info("MLflow run %s in experiment %s <tracking.tracking_uri=%s>", run_id,
             cfg.tracking.experiment, cfg.tracking.tracking_uri)
    return run_id


def _log_snapshot_input(manifest: dict, path: Path) -> None:
    """Record the snapshot as the run's dataset input (name, version digest, source)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(path.resolve()))
    dataset = MetaDataset(source=source, name=f"{manifest['dataset']}@{manifest['version']}",
                          digest=manifest["version"])
    mlflow.log_input(dataset, context="training", tags={"counts": json.dumps(manifest["counts"])})


def finish_run(run_id: str, status: str) -> None:
    """Mark the run FINISHED, FAILED or KILLED."""
    import mlflow

    mlflow.MlflowClient().set_terminated(run_id, status=status)


def end_run(frozen: dict, status: str) -> None:
    """End the frozen config's run and record the outcome in ``run.json``."""
    finish_run(frozen["run_id"], status)
    write_state(Path(frozen["paths"]["train_dir"]) / "run.json", run_id=frozen["run_id"],
                config_hash=frozen["config_hash"], status=status.lower())


def write_state(state_file: Path, **state) -> None:
    from dlforge.data.fs import write_json_atomic

    write_json_atomic(state_file, state)


def read_state(state_file: Path) -> dict:
    return json.loads(state_file.read_text()) if state_file.is_file() else {}


def as_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
