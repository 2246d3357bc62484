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
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core import secrets
from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.core.tracking import Tag, finish_run, flatten, process_tags, setup_mlflow
from dlforge.core.urls import redact

log = logging.getLogger(__name__)

INPUT_ATTEMPTS = 4  # a lost insert race needs one more; the rest cover a busy store


def config_hash(cfg: dict) -> str:
    """Hash of everything that determines the trained weights (not paths or run ids)."""
    keys = ("model", "datamodule", "optimizer", "scheduler", "trainer", "seed", "snapshot")
    relevant = {k: cfg.get(k) for k in keys}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def open_run(cfg: DictConfig, frozen: dict, manifest: dict, resume_run: str | None) -> str:
    """Start the training run (or re-open ``resume_run``); return its id.

    ``frozen`` (:func:`as_dict`) is recorded as params, less the paths, its run record
    and :data:`~dlforge.core.secrets.CONNECTION_KEYS`, and as the ``config.yaml``
    artifact; the record's code and config digests are tags (:func:`record_tags`), which
    ``dlforge lineage`` resolves to a commit.
    """
    import mlflow

    experiment_id = setup_mlflow(cfg.tracking)
    client = mlflow.MlflowClient()
    if resume_run:
        client.update_run(resume_run, status="RUNNING")
        client.set_tag(resume_run, Tag.PID, str(os.getpid()))  # the live process now
        for key, value in record_tags(frozen).items():  # what the resumed run trains now
            client.set_tag(resume_run, key, value)
        log.info("resuming MLflow run %s", resume_run)
        return resume_run
    tags = {
        Tag.EXPERIMENT: cfg.experiment_name,
        Tag.STAGE: "train",
        Tag.DATASET: manifest["dataset"],
        Tag.SNAPSHOT: manifest["version"],
        Tag.COMMITS: ",".join(str(c["id"]) for c in manifest["commits"]),
        Tag.CONFIG_HASH: config_hash(frozen),
        **record_tags(frozen),
        **process_tags(),
        **{k: secrets.scrub(str(v)) for k, v in (cfg.tracking.get("tags") or {}).items()},
    }
    run = client.create_run(experiment_id, run_name=cfg.tracking.get("run_name"), tags=tags)
    run_id = run.info.run_id
    params = secrets.params(flatten({k: v for k, v in frozen.items()
                                     if k not in ("paths", "hydra", "hpo", "record")}))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(params)
        log_snapshot_input(manifest, Path(frozen["snapshot_path"]))
        # Named like the file, which replaces it when the run finishes.
        mlflow.log_dict(frozen, ExperimentLayout.from_paths(cfg.paths).train.frozen_config.name)
    client.update_run(run_id, status="RUNNING")  # start_run's exit marked it finished
    log.info("MLflow run %s in experiment %s <tracking.tracking_uri=%s>", run_id,
             cfg.tracking.experiment, redact(cfg.tracking.tracking_uri))
    return run_id


def record_tags(frozen: dict) -> dict[str, str]:
    """The tags of the run record ``frozen`` carries (the train stage's): the digests of
    the project's code and of the training's config section; none without a record."""
    record = frozen.get("record") or {}
    found = {Tag.RECORD_CODE: record.get("code"), Tag.RECORD_CONFIG: record.get("config")}
    return {k: str(v) for k, v in found.items() if v is not None}


def log_snapshot_input(manifest: dict, path: Path) -> None:
    """Record the snapshot as the active run's dataset input (name, version digest, source).

    MLflow stores a dataset once per experiment: it looks the dataset up, then
    inserts it. Runs that start together on one snapshot (sweep workers,
    parallel jobs) can both miss it, and all but one insert then fail on the
    dataset's key. Such a run tries again and finds the dataset stored.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(path.resolve()))
    dataset = MetaDataset(source=source, name=f"{manifest['dataset']}@{manifest['version']}",
                          digest=manifest["version"])
    tags = {"counts": json.dumps(manifest["counts"])}
    for attempt in range(1, INPUT_ATTEMPTS + 1):
        try:
            mlflow.log_input(dataset, context="training", tags=tags)
            return
        except MlflowException as err:
            if attempt == INPUT_ATTEMPTS:
                raise
            log.info("snapshot input not recorded (%s); trying again", str(err)[:200])
            time.sleep(0.2 * attempt)


def end_run(frozen: dict, status: str) -> None:
    """End the frozen config's run and record the outcome in ``run.json``."""
    finish_run(frozen["run_id"], status)
    write_state(ExperimentLayout.from_paths(frozen["paths"]).train.run_state,
                run_id=frozen["run_id"], config_hash=frozen["config_hash"],
                status=status.lower())


def write_state(state_file: Path, **state) -> None:
    write_json_atomic(state_file, state)


def read_state(state_file: Path) -> dict:
    return json.loads(state_file.read_text()) if state_file.is_file() else {}


def as_dict(cfg: DictConfig) -> dict:
    """``cfg`` resolved, to freeze: a value that holds a password is kept as the
    interpolation that gives it (:func:`dlforge.core.secrets.freeze`)."""
    return secrets.freeze(cfg)
