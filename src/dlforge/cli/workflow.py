"""``dlforge workflow dvc``: regenerate dvc.yaml and params.yaml (per experiment) from conf/.

    dlforge workflow dvc
"""

from __future__ import annotations

from dlforge.cli.common import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("workflow", __doc__)
    parser.add_argument("target", choices=["dvc"], help="what to write: dvc.yaml and params.yaml")
    parser.parse_args(argv)

    from dlforge.stages.params import write_params_file
    from dlforge.stages.workflow import experiments, write_dvc_yaml

    print(write_dvc_yaml())
    print(write_params_file(experiments()))
    return 0
