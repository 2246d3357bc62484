"""``dlforge lineage MODEL_URI [--json]``: where a model, and so its predictions, came from.

    dlforge lineage models:/intent@champion
    dlforge lineage models:/intent/3 --json

Model version (and its last ``dlforge verify``) -> training run (params, metrics,
cost, commit, config hash) -> snapshot version -> commits (ids, messages,
tags, timestamps) -> raw sources (paths, content hashes). Everything is read
from the MLflow tracking store (the snapshot manifest is logged with the
model), so the chain is reachable from any machine that can reach the store,
e.g. from the model version a served prediction logged.

The run's commit is found in the git repository of the current folder (run it
from the project's root): the first commit, oldest first among the last 500,
whose src/ and committed config section (outputs/<exp>/config/train.json) are
what the run recorded; "uncommitted" where none is.
"""

from __future__ import annotations

import json

from dlforge.cli.common import command_parser
from dlforge.registry.lineage import RUN_PARAMS, lineage


def main(argv: list[str]) -> int:
    parser = command_parser("lineage", __doc__, tracking=True)
    parser.add_argument("uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import mlflow

    from dlforge.core.tracking import connect

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
    if chain["attestation"]:
        tree.add(_attested(chain["attestation"]))
    node = tree.add(f"[bold]run[/] {run['run_id']} ({run['status'].lower()}) experiment "
                    f"{run['experiment']} {commit_text(run['commit'])} config "
                    f"{(run['config_hash'] or '')[:12]}")
    node.add("params: " + ", ".join(f"{k}={run['params'][k]}" for k in RUN_PARAMS
                                    if k in run["params"]))
    node.add("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in run["metrics"].items()
                                     if k.startswith(("test/", "eval/"))))
    if run["cost"]:
        node.add("cost: " + _cost_text(run["cost"]))
    snapshot = node.add(f"[bold]snapshot[/] {snap['dataset']}@{snap['version']} "
                        f"{snap.get('counts', {})}")
    for commit, source in zip(chain["commits"], chain["sources"], strict=True):
        branch = snapshot.add(f"[bold]commit[/] {commit['id']} {commit['created_at']} "
                              f"{commit['message']!r} {commit['tags']}")
        branch.add(f"[bold]source[/] {source['path']} sha256:{source['digest'][:16]}")
    Console(width=160).print(tree)


def commit_text(commit: dict) -> str:
    """``commit 3f2a1b…``, or why there is none."""
    if commit["id"]:
        return f"commit {commit['id'][:12]}"
    if commit["status"] == "uncommitted":
        scope = (f"the last {commit['searched']} commits (history searched no further)"
                 if commit["truncated"] else f"the {commit['searched']} commits of HEAD")
        return f"uncommitted (no commit among {scope} holds the trained code and config)"
    if commit["status"] == "unrecorded":
        return "commit unknown (trained before runs carried a record)"
    return "commit unknown (not run in the project's git repository)"


def _attested(found: dict) -> str:
    """``verified identical (weights) on cpu, torch 2.13.0, 2026-...: ...``: the version's
    last ``dlforge verify``."""
    return (f"[bold]verified[/] {found.get('verdict')} ({found.get('compared') or '-'}) on "
            f"{found.get('device')}, torch {found.get('torch')}, {found.get('date')}: "
            f"{found.get('details', '')}")


# The cost figures shown in the tree (all are in --json): name -> (label, unit, scale)
COST_SHOWN = {"cpu_seconds": ("CPU", "s", 1), "wall_seconds": ("wall", "s", 1),
              "peak_rss_bytes": ("peak RSS", "MiB", 2**20), "gpu_seconds": ("GPU", "s", 1),
              "gpu_peak_memory_bytes": ("GPU peak memory", "MiB", 2**20),
              "energy_joules": ("energy", "J", 1)}


def _cost_text(cost: dict) -> str:
    """``CPU 41.2 s, wall 18.7 s, peak RSS 612 MiB``: the figures the run has."""
    return ", ".join(f"{label} {cost[name] / scale:.1f} {unit}"
                     for name, (label, unit, scale) in COST_SHOWN.items() if name in cost)
