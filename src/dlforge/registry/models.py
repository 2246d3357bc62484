"""Registered models: versions, aliases, promotion and rollback (``dlforge models``).

    dlforge models [--tracking-uri URI] list [NAME] [--json]
    dlforge models [--tracking-uri URI] promote NAME VERSION [--alias champion]
    dlforge models [--tracking-uri URI] rollback NAME [--alias champion]

Models are addressed by alias (``models:/NAME@champion``), never by stage. A
promotion is one alias switch in the registry (blue-green: readers see the
old version or the new one, nothing in between). Every switch is recorded in
the model's ``dlforge.alias_history`` tag, which is how ``rollback`` knows the
previous champion.
"""

from __future__ import annotations

import argparse
import json
import time

from dlforge.errors import DlforgeError, NotFound
from dlforge.train.tracking import add_tracking_uri_option

HISTORY = "dlforge.alias_history"
KEEP = 50  # alias switches kept in the history tag (tag values are size-limited)


def history(client, name: str) -> list[dict]:
    """Alias switches of model ``name``, oldest first."""
    return json.loads(_model(client, name).tags.get(HISTORY, "[]"))


def promote(client, name: str, version: str | int, alias: str = "champion",
            reason: str = "manual") -> dict:
    """Point ``alias`` at ``version`` and record the switch; return the history entry."""
    version = str(version)
    _version(client, name, version)
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    entry = {"alias": alias, "version": version, "previous": previous, "reason": reason,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    entries = (history(client, name) + [entry])[-KEEP:]
    client.set_registered_model_tag(name, HISTORY, json.dumps(entries))
    return entry


def rollback(client, name: str, alias: str = "champion") -> dict:
    """Point ``alias`` back at the version it had before its current one.

    Repeated rollbacks keep going back (v3 -> v2 -> v1), since the target is
    what preceded the current version's own promotion, not the last switch.

    Raises:
        DlforgeError: when there is no earlier version to go back to.
    """
    current = alias_version(client, name, alias)
    if current is None:
        raise DlforgeError(f"model {name} has no '{alias}' alias to roll back. Fix: "
                           f"`dlforge models promote {name} VERSION --alias {alias}`")
    promoted = [e for e in history(client, name)
                if e["alias"] == alias and e["version"] == current and e["reason"] != "rollback"]
    target = promoted[-1]["previous"] if promoted else None
    if target is None:
        raise DlforgeError(f"{name}@{alias} is version {current} and has no earlier version "
                           "in its history to roll back to")
    return promote(client, name, target, alias, reason="rollback")


def list_models(client, name: str | None = None) -> list[dict]:
    """Registered models (or one) with their versions, aliases and key tags."""
    models = [_model(client, name)] if name else client.search_registered_models()
    out = []
    for model in models:
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = _aliases(model)
        out.append({"name": model.name, "aliases": aliases, "versions": [
            {"version": str(v.version), "run_id": v.run_id, "status": v.status,
             "aliases": sorted(a for a, n in aliases.items() if n == str(v.version)),
             "created": v.creation_timestamp,
             "tags": {k: t for k, t in v.tags.items() if k.startswith("dlforge.")}}
            for v in sorted(versions, key=lambda v: int(v.version), reverse=True)]})
    return out


def _model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise NotFound(f"no registered model {name!r}. Fix: see `dlforge models list`, or "
                       "register one with `dlforge register experiment=...`") from None


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise NotFound(f"model {name} has no version {version}. Fix: see "
                       f"`dlforge models list {name}`") from None


def alias_version(client, name: str, alias: str) -> str | None:
    return _aliases(_model(client, name)).get(alias)


def _aliases(model) -> dict[str, str]:
    """Alias -> version, versions as strings (stores differ in what they return)."""
    return {alias: str(version) for alias, version in dict(model.aliases).items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlforge models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tracking_uri_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="registered models, versions and aliases")
    listing.add_argument("name", nargs="?")
    listing.add_argument("--json", action="store_true")
    up = sub.add_parser("promote", help="point an alias (default champion) at a version")
    up.add_argument("name")
    up.add_argument("version")
    up.add_argument("--alias", default="champion")
    back = sub.add_parser("rollback", help="point an alias back at its previous version")
    back.add_argument("name")
    back.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)

    import mlflow

    from dlforge.train.tracking import connect

    connect(args.tracking_uri)
    client = mlflow.MlflowClient()
    if args.command == "promote":
        print(json.dumps(promote(client, args.name, args.version, args.alias), indent=2))
    elif args.command == "rollback":
        print(json.dumps(rollback(client, args.name, args.alias), indent=2))
    elif args.json:
        print(json.dumps(list_models(client, args.name), indent=2))
    else:
        _print_table(list_models(client, args.name))
    return 0


def _print_table(models: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "version", "aliases", "run", "snapshot", "gate metric", box=None)
    for model in models:
        for v in model["versions"]:
            gate = v["tags"].get("dlforge.gate_metric", "")
            value = v["tags"].get(f"dlforge.metric.{gate}", "") if gate else ""
            table.add_row(model["name"], v["version"], ",".join(v["aliases"]),
                          (v["run_id"] or "")[:12], v["tags"].get("dlforge.snapshot", ""),
                          f"{gate}={value}" if gate else "")
    Console(width=160).print(table)
