"""``dlforge init PATH``: scaffold a new project (see :mod:`dlforge.stages.project`).

    dlforge init myproj                    # your CSV dataset, your network in src/myproj/
    dlforge init myproj --type image       # your folder of images per label, your CNN
    dlforge init myproj --example intent   # the CLINC150 intent sample, with its data
    dlforge init myproj --example digits   # scikit-learn's handwritten digits
"""

from __future__ import annotations

import json
from pathlib import Path

from dlforge.cli.common import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("init", __doc__)
    parser.add_argument("path", type=Path, help="the new project's folder (new or empty); "
                                                "its name names the project and src/<name>/")
    parser.add_argument("--type", dest="kind", choices=["text", "image"],
                        help="the project's inputs: text (a CSV of text,label rows; the "
                             "default) or image (a folder of images per label); an "
                             "--example has its own")
    parser.add_argument("--example", choices=["intent", "digits"],
                        help="fill in a working sample: its dataset, experiment and data")
    args = parser.parse_args(argv)

    from dlforge.stages.project import init

    print(json.dumps(init(args.path, args.example, args.kind), indent=2))
    return 0
