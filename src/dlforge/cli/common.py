"""What the command-line tools share: the tracking-store option, tables, JSON."""

from __future__ import annotations


def add_tracking_uri_option(parser) -> None:
    """``--tracking-uri`` for the commands that read the tracking store."""
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: tracking.tracking_uri in conf/)")
