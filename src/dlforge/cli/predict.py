"""``dlforge predict MODEL_URI --input FILE --output FILE``: offline batch inference.

    dlforge predict models:/intent@champion --input texts.csv --output predictions.parquet
    dlforge predict models:/digits/3 --input images/ --output predictions.parquet
    dlforge predict outputs/intent/train/model --input texts.parquet --output out.parquet

The same model package serving uses, over a large input in batches: a CSV,
parquet or JSON-lines (``.jsonl``) file of texts (column ``--column``, default the
first), a text file (``.txt``) of one text a line, or a folder of images
(searched recursively). A CSV is read as ingest reads it: line 1 is a header only
when it names the columns (``text,label``, ``utterance``, ...) or holds the
``--column`` named; ``--header``/``--no-header`` say so instead. Every other line
is an input. Input is read and output written one batch at a time, so memory
stays flat however large the input. The output parquet has one row per input:
``input`` (the text or image path), ``label``, ``score``, ``top_k`` (JSON),
``model`` and ``version``. It is written to a temporary file and renamed at the
end: an interrupted run leaves no partial output. The JSON summary's ``rows`` is
the number of inputs read, each with its prediction.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dlforge.cli.common import command_parser
from dlforge.cli.stage import add_project_code
from dlforge.core.errors import DlforgeError
from dlforge.serve.batch import load, predict_file


def main(argv: list[str]) -> int:
    parser = command_parser("predict", __doc__, tracking=True)
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a folder")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--column", help="text column (default: the first)")
    parser.add_argument("--header", action=argparse.BooleanOptionalAction,
                        help="whether line 1 of a CSV or text file names the columns "
                        "(default: decided from line 1)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    add_project_code()  # as the stages do (a package also carries the code it needs)
    if not args.input.exists():
        raise DlforgeError(f"{args.input} does not exist")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from dlforge.core.config import compose

    cache = Path(compose("runs").paths.output_dir) / ".models"
    model, name, version = load(args.model, args.tracking_uri, cache)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(f"{name} v{version}", total=None)
        rows = predict_file(model, args.input, args.output, name, version, args.column,
                            args.batch_size, args.top_k, header=args.header,
                            progress=lambda n: bar.advance(task, n))
    print(json.dumps({"model": name, "version": version, "rows": rows,
                      "output": str(args.output)}))
    return 0
