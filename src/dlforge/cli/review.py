"""``dlforge review``: what a change did to each experiment, from the results in git.

    dlforge review                          # the working tree against the merge base
    dlforge review --base HEAD~1            # ... against the previous commit
    dlforge review --format json            # for machines
    dlforge review --experiment intent      # one experiment only

Run it from the project's root. The Markdown fits a pull-request comment.
"""

from __future__ import annotations

import json

from dlforge.cli.common import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("review", __doc__)
    parser.add_argument("--base", help="the revision to compare with (default: the merge "
                                       "base with the default branch)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--experiment", action="append", dest="experiments",
                        help="review only this experiment (repeatable)")
    args = parser.parse_args(argv)

    from dlforge.stages.review import review, to_markdown

    report = review(args.base, args.experiments)
    print(json.dumps(report, indent=2) if args.format == "json" else to_markdown(report))
    return 0
