"""``dlforge runs list|show``: the status of training runs (the book's GetTrainingStatus).

    dlforge runs [--tracking-uri URI] list [--experiment NAME] [--json]
    dlforge runs [--tracking-uri URI] show RUN_ID [--json]

A run is running, finished, failed or killed; a run whose process died
without ending it (kill -9, a lost machine) shows as ``interrupted``: running
the same ``dlforge train`` again resumes it.
"""

from __future__ import annotations

import json

from dlforge.cli.common import command_parser
from dlforge.train.runs import SHOWN_METRICS, list_runs, show_run


def main(argv: list[str]) -> int:
    parser = command_parser("runs", __doc__, tracking=True)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="training runs, newest first")
    listing.add_argument("--experiment")
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one run: status, metrics, params, lineage tags")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from dlforge.core.tracking import connect

    connect(args.tracking_uri)
    if args.command == "show":
        run = show_run(args.run_id)
        print(json.dumps(run, indent=2))
        return 0
    runs = list_runs(args.experiment)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    _print_table(runs)
    return 0


def _print_table(runs: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "status", "experiment", "snapshot", "started", "duration",
                  *SHOWN_METRICS, box=None)
    for run in runs:
        table.add_row(run["run_id"][:12], run["status"], run["experiment"] or "",
                      run["snapshot"] or "", run["started"], f"{run['duration_s']:.0f}s",
                      *(f"{run['metrics'][m]:.4f}" if m in run["metrics"] else "-"
                        for m in SHOWN_METRICS))
    Console(width=180).print(table)
