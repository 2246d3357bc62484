"""``dlforge verify MODEL_URI | experiment=X [--evaluate-only] [--json] [overrides...]``:
train a model again from its record and attest whether it is the registered one.

    dlforge verify models:/digits@champion
    dlforge verify models:/digits/3 --evaluate-only     # no training: for CI
    dlforge verify experiment=digits verify.tolerance=0.01

The snapshot is recreated by id (rebuilt from the store when absent), the frozen
config trained again in a scratch folder with its seed, the package's own code for
a project's model. On CPU the weights are compared bit for bit; a model trained on
a GPU or in several processes is compared on each test metric within
``verify.tolerance`` (conf/verify.yaml). ``--evaluate-only`` scores the registered
package again on the test split and compares it with its recorded evaluation.
The result is written on the model version as ``dlforge.verify.*`` tags (shown by
``dlforge lineage`` and the model card); nothing else of the version changes.

Exit status: 0 identical or within tolerance, 1 differs (a package changed after
registration says "integrity check failed", a re-run that gives other weights
"re-run differs"), 2 the inputs are unavailable (the message names what is
missing and the fix, e.g. ``dvc pull``) or the record cannot be read.
"""

from __future__ import annotations

import json
import logging
import sys

from dlforge.cli.common import command_parser
from dlforge.core.errors import DlforgeError

EXIT_UNAVAILABLE = 2


def main(argv: list[str]) -> int:
    parser = command_parser("verify", __doc__, tracking=True)
    parser.add_argument("target", help="models:/NAME/VERSION, models:/NAME@ALIAS or "
                                       "experiment=NAME")
    parser.add_argument("overrides", nargs="*", help="overrides of conf/verify.yaml "
                                                     "(verify.tolerance=0.01, paths.root=...)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score the package again instead of training it again")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_intermixed_args(argv)  # flags may follow the overrides
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = _verify(args)
    except DlforgeError as err:  # no verdict: the record could not be read
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(summary, indent=2) if args.json else to_text(summary))
    return summary["exit_code"]


def _verify(args) -> dict:
    from dlforge.core.config import compose
    from dlforge.core.secrets import to_environment
    from dlforge.stages.verify import verify

    overrides = list(args.overrides)
    if args.target.startswith("experiment="):
        overrides.insert(0, f"experiment_name={args.target.split('=', 1)[1]}")
    if args.tracking_uri:
        overrides.append(f"tracking.tracking_uri={args.tracking_uri}")
    cfg = compose("verify", to_environment(overrides))
    return verify(cfg, args.target, args.evaluate_only)


def to_text(summary: dict) -> str:
    """The summary for a person: the verdict and why, the metrics compared, where."""
    lines = [f"{summary['target']}: {summary['verdict']} ({summary['compared'] or '-'})",
             f"  {summary['details']}"]
    for name, row in summary["differences"].items():
        lines.append(f"  {name:<24} recorded {row['recorded']:<10.6g} re-run "
                     f"{row['rerun']:<10.6g} difference {row['difference']:.6g}")
    where = summary["environment"]
    took = f"in {summary['seconds']:.1f} s"
    if summary["recorded_seconds"] is not None:
        took += f" (the recorded training took {summary['recorded_seconds']:.1f} s)"
    lines.append(f"  verified on {where['device']}, torch {where['torch']}, {took}")
    lines.append("  attested on " + (", ".join(summary["attested"]) if summary["attested"]
                                     else "no model version (none took the tags)"))
    return "\n".join(lines)
