"""``dlforge review``: what a change did to each experiment, from the results in git.

    dlforge review                          # the working tree against the merge base
    dlforge review --base HEAD~1            # ... against the previous commit
    dlforge review --format json            # for machines
    dlforge review --experiment intent      # one experiment only

Run it from the project's root. The Markdown fits a pull-request comment.

The review needs only what dlforge's ``review`` extra lists (PyYAML, numpy,
Hydra, SQLAlchemy's URL parsing): installed as ``pip install --no-deps dlforge``
plus those, it runs without torch, Lightning or MLflow.
"""

from __future__ import annotations

import json
import shlex

from dlforge.cli.common import command_parser
from dlforge.core.errors import DlforgeError

EXTRA = "review"


def main(argv: list[str]) -> int:
    parser = command_parser("review", __doc__)
    parser.add_argument("--base", help="the revision to compare with (default: the merge "
                                       "base with the default branch)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--experiment", action="append", dest="experiments",
                        help="review only this experiment (repeatable)")
    args = parser.parse_args(argv)

    try:
        from dlforge.stages.review import review, to_markdown

        report = review(args.base, args.experiments)
    except ModuleNotFoundError as err:
        raise missing_module(err) from None
    print(json.dumps(report, indent=2) if args.format == "json" else to_markdown(report))
    return 0


def missing_module(err: ModuleNotFoundError) -> DlforgeError:
    """The error for a module the review imports that is not installed (dlforge
    installed with ``--no-deps`` and without its ``review`` extra's requirements)."""
    needed = extra_requirements(EXTRA)
    fix = (f"pip install {' '.join(shlex.quote(r) for r in needed)}" if needed
           else "pip install dlforge with its dependencies")
    return DlforgeError(f"dlforge review needs the module {err.name!r}, which is not "
                        f"installed. Fix: {fix}")


def extra_requirements(extra: str) -> list[str]:
    """The requirements of dlforge's ``extra`` as the installed package declares them
    (empty where it declares none)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("dlforge") or []
    except PackageNotFoundError:
        return []
    marker = f'extra == "{extra}"'
    return [r.split(";")[0].strip() for r in declared if r.split(";")[-1].strip() == marker]
