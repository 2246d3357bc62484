"""``dlforge review``: what a change did to each experiment, from the results in git.

    dlforge review                          # the working tree against the merge base
    dlforge review --base HEAD~1            # ... against the previous commit
    dlforge review --format json            # for machines
    dlforge review --experiment intent      # one experiment only
    dlforge review --check                  # exit 1 on stale results or a regression

Run it from the project's root. The Markdown fits a pull-request comment; its first
line is the verdict (pass, stale, regression). With --check the exit status is the
verdict: 0 pass, 1 stale results (not made from the head's config, code or data) or
a regression past the tolerance of conf/review.yaml, 2 an error. Without it the
review reports and exits 0.

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
ERROR = 2  # the exit status of --check when the review itself fails


def main(argv: list[str]) -> int:
    parser = command_parser("review", __doc__)
    parser.add_argument("--base", help="the revision to compare with (default: the merge "
                                       "base with the default branch)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--experiment", action="append", dest="experiments",
                        help="review only this experiment (repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 on stale results or a regression past the declared "
                             "tolerance (conf/review.yaml), 2 on an error")
    args = parser.parse_args(argv)

    try:
        from dlforge.stages.review import review, to_markdown
        from dlforge.stages.verdict import failed

        report = review(args.base, args.experiments)
    except ModuleNotFoundError as err:
        raise _for_check(missing_module(err), args.check) from None
    except DlforgeError as err:
        raise _for_check(err, args.check) from None
    print(json.dumps(report, indent=2) if args.format == "json" else to_markdown(report))
    return int(args.check and failed(report["verdict"]))


def _for_check(err: DlforgeError, check: bool) -> DlforgeError:
    """``err``, exiting with :data:`ERROR` under --check (where 1 is a verdict)."""
    if check:
        err.exit_code = ERROR
    return err


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
