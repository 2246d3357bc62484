"""``dlforge lineage MODEL_URI [--json]``: where a model, and so its predictions, came from.

    dlforge lineage models:/intent@champion
    dlforge lineage models:/intent/3 --json

Model version -> training run (params, metrics, code version, config hash)
-> snapshot version -> commits (ids, messages, tags, timestamps) -> raw
sources (paths, content hashes). Everything is read from the MLflow tracking
store (the snapshot manifest is logged with the model), so the chain is
reachable from any machine that can reach the store, e.g. from the model
version a served prediction logged.
"""

from __future__ import annotations

import argparse
import json
import os
import re

from dlforge.errors import DlforgeError, NotFound
from dlforge.train.tracking import add_tracking_uri_option

URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")
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
        "run": {"run_id": run.info.run_id, "status": run.info.status,
                "experiment": tags.get("dlforge.experiment"),
                "git_commit": tags.get("dlforge.git_commit"),
                "git_dirty": tags.get("dlforge.git_dirty"),
                "config_hash": tags.get("dlforge.config_hash"),
                "dlforge_version": tags.get("dlforge.version"),
                "started": run.info.start_time, "ended": run.info.end_time,
                "params": dict(sorted(run.data.params.items())),
                "metrics": dict(sorted(run.data.metrics.items()))},
        "snapshot": {k: manifest.get(k) for k in ("dataset", "version", "type", "created_at",
                                                  "counts", "split", "labels")
                     if k in manifest} | {"label_count": len(manifest.get("labels", []))},
        "commits": [{k: c.get(k) for k in ("id", "message", "tags", "created_at", "rows",
                                           "digest")} for c in manifest["commits"]],
        "sources": [{"commit": c["id"], **c["source"]} for c in manifest["commits"]],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlforge lineage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--json", action="store_true")
    add_tracking_uri_option(parser)
    args = parser.parse_args(argv)

    import mlflow

    from dlforge.train.tracking import connect

    connect(args.tracking_uri)
    chain = lineage(mlflow.MlflowClient(), args.uri)
    if args.json:
        print(json.dumps(chain, indent=2, default=str))
    else:
        _print_tree(chain)
    return 0


def _print_tree(chain: dict) -> None:
    from rich.console import Console
    from rich.tree import Tree

    model, run, snap = chain["model"], chain["run"], chain["snapshot"]
    tree = Tree(f"[bold]model[/] {model['name']} v{model['version']} "
                f"{' '.join('@' + a for a in model['aliases'])}")
    node = tree.add(f"[bold]run[/] {run['run_id']} ({run['status'].lower()}) experiment "
                    f"{run['experiment']} code {run['git_commit']}"
                    f"{' (dirty)' if run['git_dirty'] == 'true' else ''} config "
                    f"{(run['config_hash'] or '')[:12]}")
    node.add("params: " + ", ".join(f"{k}={run['params'][k]}" for k in RUN_PARAMS
                                    if k in run["params"]))
    node.add("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in run["metrics"].items()
                                     if k.startswith(("test/", "eval/"))))
    snapshot = node.add(f"[bold]snapshot[/] {snap['dataset']}@{snap['version']} "
                        f"{snap.get('counts', {})}")
    for commit, source in zip(chain["commits"], chain["sources"], strict=True):
        branch = snapshot.add(f"[bold]commit[/] {commit['id']} {commit['created_at']} "
                              f"{commit['message']!r} {commit['tags']}")
        branch.add(f"[bold]source[/] {source['path']} sha256:{source['digest'][:16]}")
    Console(width=160).print(tree)
