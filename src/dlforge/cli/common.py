"""What the command-line tools share: their parser, the tracking-store option."""

from __future__ import annotations

import argparse


def command_parser(command: str, doc: str, tracking: bool = False) -> argparse.ArgumentParser:
    """The parser of ``dlforge COMMAND``, its module docstring as help; ``tracking``
    adds ``--tracking-uri`` for the commands that read the MLflow tracking store."""
    parser = argparse.ArgumentParser(prog=f"dlforge {command}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if tracking:
        parser.add_argument("--tracking-uri",
                            help="MLflow tracking URI (default: tracking.tracking_uri in conf/)")
    return parser
