"""``dlforge models list|promote|rollback``: registered models and their aliases.

    dlforge models [--tracking-uri URI] list [NAME] [--json]
    dlforge models [--tracking-uri URI] promote NAME VERSION [--alias champion]
    dlforge models [--tracking-uri URI] rollback NAME [--alias champion]

How promotions stay safe under concurrency: :mod:`dlforge.registry.models`.
"""

from __future__ import annotations

import json

from dlforge.cli.common import command_parser
from dlforge.registry.models import list_models, promote, rollback


def main(argv: list[str]) -> int:
    parser = command_parser("models", __doc__, tracking=True)
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

    from dlforge.core.tracking import connect

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
