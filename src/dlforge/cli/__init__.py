"""dlforge command line.

Usage:
    dlforge init PATH [--type text|image] [--example intent|digits]   a new project (git, DVC)
    dlforge data {create,commit,list,show,snapshot,fetch,verify} ...   the dataset manager
    dlforge ingest experiment=NAME [overrides...]     commit the experiment's sources
    dlforge snapshot experiment=NAME [overrides...]   build its training snapshot
    dlforge sweep experiment=NAME [overrides...]      Optuna study: outputs/NAME/sweep/best.yaml
    dlforge train experiment=NAME [overrides...]      train, test and package a model
    dlforge evaluate experiment=NAME [overrides...]   test-split metrics and plots
    dlforge register experiment=NAME [overrides...]   register in MLflow, gate, promote
    dlforge monitor experiment=NAME [overrides...]    drift and quality of the served model
    dlforge runs {list,show} ...                      training runs: status, metrics
    dlforge models {list,promote,rollback} ...        registered models and their aliases
    dlforge lineage MODEL_URI [--json]                model -> run -> snapshot -> commits -> sources
    dlforge verify MODEL_URI|experiment=NAME          train again from the record, attest the result
    dlforge predict MODEL_URI --input F --output F    batch predictions to parquet
    dlforge serve [overrides...]                      the LitServe prediction server
    dlforge workflow dvc                              regenerate dvc.yaml and params.yaml
    dlforge review [--base REV] [--format F] [--check] what a change did; --check gates on it

Stage commands are Hydra applications: they take overrides (``split.train=0.7``),
``--cfg job`` prints the resolved config, ``--help`` lists the config groups.
Results go to stdout as JSON, logs to stderr. Importing this module is cheap;
each command imports what it needs.
"""

from __future__ import annotations

import sys
from importlib import import_module

from dlforge import __version__
from dlforge.core.errors import DlforgeError

# stage name -> "module:function" taking the composed config, returning a summary
STAGES = {
    "ingest": "dlforge.stages.data:ingest",
    "snapshot": "dlforge.stages.data:snapshot",
    "sweep": "dlforge.stages.sweep:sweep",
    "train": "dlforge.stages.train:train",
    "evaluate": "dlforge.stages.evaluate:evaluate",
    "register": "dlforge.stages.register:register",
    "monitor": "dlforge.stages.monitor:monitor",
    "serve": "dlforge.stages.serve:serve",
}
# command -> module whose main(argv) implements it
TOOLS = {
    "init": "dlforge.cli.init",
    "data": "dlforge.cli.data",
    "runs": "dlforge.cli.runs",
    "models": "dlforge.cli.models",
    "lineage": "dlforge.cli.lineage",
    "verify": "dlforge.cli.verify",
    "predict": "dlforge.cli.predict",
    "workflow": "dlforge.cli.workflow",
    "review": "dlforge.cli.review",
}


def main(argv: list[str] | None = None) -> int:
    """The ``dlforge`` command on ``argv``; without it, the program (the console
    script, ``python -m dlforge``) on this process's arguments, which may also tune
    the process (:func:`dlforge.cli.stage.run_stage`). Returns the exit code."""
    program = argv is None
    argv = sys.argv[1:] if program else list(argv)
    command = argv[0] if argv else "--help"
    try:
        if command in TOOLS:
            return import_module(TOOLS[command]).main(argv[1:])
        if command in STAGES:
            from dlforge.cli.stage import run_stage

            return run_stage(command, STAGES[command], argv[1:], program=program)
    except DlforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if command in ("--version", "-V"):
        print(f"dlforge {__version__}")
        return 0
    print(__doc__.strip(), file=sys.stdout if command in ("-h", "--help") else sys.stderr)
    if command in ("-h", "--help"):
        return 0
    print(f"\nerror: unknown command {command!r}", file=sys.stderr)
    return 2
