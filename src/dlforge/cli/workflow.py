"""``dlforge workflow``: the workflow's own files, from conf/ and workflow/config.yaml.

    dlforge workflow dvc      regenerate dvc.yaml, params.yaml and the config sections
    dlforge workflow config   bring the config sections and params.yaml up to date with
                              conf/ (DVC's first stage; Snakemake does it itself)
"""

from __future__ import annotations

from dlforge.cli.common import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("workflow", __doc__)
    parser.add_argument("target", choices=["dvc", "config"],
                        help="dvc: dvc.yaml, params.yaml and the config sections, "
                             "regenerated; config: what changed in conf/, written")
    args = parser.parse_args(argv)

    from dlforge.stages.dvcfiles import config_step, regenerate

    for path in regenerate() if args.target == "dvc" else config_step():
        print(path)
    return 0
