"""A model version's lineage: training run (and its cost) -> snapshot -> commits -> raw sources.

The version's attestation (its ``dlforge.verify.*`` tags, :func:`attestation`) comes with it.

Read from the MLflow tracking store alone (the snapshot manifest is logged
with the model), so any machine that reaches the store can follow it; the
``dlforge lineage`` command prints it.

The commit of the training (``run.commit``, :func:`commit_of`) is resolved in the
project's git repository (the current folder) from the run's record: the first
commit whose ``src/`` and committed training config section have the digests the
run recorded (``dlforge.record.code``, ``dlforge.record.config``), or none
("uncommitted"). The commit checked out when it trained (``run.git_commit``) may
have held other code: uncommitted edits are never credited to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.layout import ExperimentLayout
from dlforge.core.tracking import Tag

URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")
# The training run's cost metrics (dlforge.train.cost.METRIC_PREFIX; serving reads
# lineage, and never imports the training package).
COST_PREFIX = "cost."
RUN_PARAMS = ("model.net._target_", "optimizer._target_", "optimizer.lr", "trainer.max_epochs",
              "datamodule.batch_size", "seed")


def resolve(client, uri: str) -> tuple[str, str]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> (name, version)."""
    from mlflow.exceptions import MlflowException

    match = URI.fullmatch(uri)
    if not match:
        raise DlforgeError(f"{uri!r} is not a model URI. Fix: use models:/NAME/VERSION or "
                           "models:/NAME@ALIAS (see `dlforge models list`)")
    name = match["name"]
    try:
        if match["alias"]:
            return name, str(client.get_model_version_by_alias(name, match["alias"]).version)
        client.get_model_version(name, match["version"])
    except MlflowException:
        raise NotFound(f"{uri} does not exist. Fix: see `dlforge models list {name}`") from None
    return name, match["version"]


def lineage(client, uri: str) -> dict:
    """The chain behind ``uri`` as one dict."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout is data
    name, version = resolve(client, uri)
    model = client.get_model_version(name, version)
    run = client.get_run(model.run_id)
    try:
        manifest = mlflow.artifacts.load_dict(
            f"runs:/{model.run_id}/lineage/snapshot_manifest.json")
    except (MlflowException, OSError):
        raise DlforgeError(f"run {model.run_id} of {uri} has no lineage/snapshot_manifest.json"
                           ": it was not registered by `dlforge register`") from None
    tags = run.data.tags
    return {
        "model": {"name": name, "version": version, "aliases": list(model.aliases),
                  "source": model.source, "created": model.creation_timestamp,
                  "tags": {k: v for k, v in model.tags.items() if k.startswith("dlforge.")}},
        "attestation": attestation(model.tags),
        "run": {"run_id": run.info.run_id, "status": run.info.status,
                "experiment": tags.get("dlforge.experiment"),
                "commit": commit_of(model.run_id, tags),
                "git_commit": tags.get("dlforge.git_commit"),
                "git_dirty": tags.get("dlforge.git_dirty"),
                "config_hash": tags.get("dlforge.config_hash"),
                "dlforge_version": tags.get("dlforge.version"),
                "started": run.info.start_time, "ended": run.info.end_time,
                "params": dict(sorted(run.data.params.items())),
                "metrics": dict(sorted(run.data.metrics.items())),
                "cost": _cost(run.data.metrics)},
        "snapshot": {k: manifest.get(k) for k in ("dataset", "version", "type", "created_at",
                                                  "counts", "split", "labels", "multi_label")
                     if k in manifest} | {"label_count": len(manifest.get("labels", [])),
                                          "label_counts": _label_counts(manifest)},
        "commits": [{k: c.get(k) for k in ("id", "message", "tags", "created_at", "rows",
                                           "digest")} for c in manifest["commits"]],
        "sources": [{"commit": c["id"], **c["source"]} for c in manifest["commits"]],
    }


def commit_of(run_id: str, tags: dict) -> dict:
    """The commit that holds run ``run_id``'s recorded code and config, in the repository
    of the current folder: ``{"id", "status", "searched", "truncated"}``, the status
    ``committed``, ``uncommitted``, ``unrecorded`` (a run made before runs carried a
    record) or ``no repository`` (outside one, or the run's outputs lie outside it)."""
    from dlforge.core import gitrepo
    from dlforge.core.commits import find_commit

    config = tags.get(Tag.RECORD_CONFIG)
    if config is None:
        return {"id": None, "status": "unrecorded"}
    section = _section_path(run_id, tags)
    if not gitrepo.inside_repository() or Path(section).parts[:1] == (os.pardir,):
        return {"id": None, "status": "no repository"}  # not this project's run
    found = find_commit(tags.get(Tag.RECORD_CODE), config, section)
    return {"id": found.commit, "status": "committed" if found.commit else "uncommitted",
            "searched": found.searched, "truncated": found.truncated}


def _section_path(run_id: str, tags: dict) -> str:
    """Where the run's training config section is committed, relative to the current
    folder: by the paths of its frozen config, else the default layout."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    try:
        frozen = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
        path = ExperimentLayout.from_paths(frozen["paths"]).config_section("train")
    except (MlflowException, OSError, yaml.YAMLError, KeyError, TypeError):
        path = Path("outputs", str(tags.get(Tag.EXPERIMENT)), "config", "train.json")
    return os.path.relpath(path) if path.is_absolute() else os.path.normpath(path)


def _label_counts(manifest: dict) -> dict[str, dict[str, int]]:
    """Examples per label in each split (``{"train": {"weather": 115, ...}, ...}``)."""
    return {split: stats.get("label_counts", {})
            for split, stats in manifest.get("stats", {}).items()}


def _cost(metrics: dict) -> dict[str, float]:
    """What the training run cost (its ``cost.*`` metrics, :mod:`dlforge.train.cost`)."""
    return {k.removeprefix(COST_PREFIX): v for k, v in sorted(metrics.items())
            if k.startswith(COST_PREFIX)}


def attestation(tags: dict) -> dict[str, str]:
    """The version's last ``dlforge verify`` (its ``dlforge.verify.*`` tags, without the
    prefix: verdict, compared, details, torch, cuda, device, date); {} when never verified."""
    return {k.removeprefix(Tag.VERIFY): v for k, v in sorted(tags.items())
            if k.startswith(Tag.VERIFY)}
