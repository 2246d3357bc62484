"""dlforge command line.

Usage:
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
    dlforge predict MODEL_URI --input F --output F    batch predictions to parquet
    dlforge serve [overrides...]                      the LitServe prediction server
    dlforge workflow dvc                              regenerate dvc.yaml and params.yaml

Stage commands are Hydra applications: they take overrides (``split.train=0.7``),
``--cfg job`` prints the resolved config, ``--help`` lists the config groups.
Results go to stdout as JSON, logs to stderr. Importing this module is cheap;
each command imports what it needs.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib import import_module

from dlforge import __version__
from dlforge.core.errors import DlforgeError

log = logging.getLogger("dlforge")

# stage name -> "module:function" taking the composed config, returning a summary
STAGES = {
    "ingest": "dlforge.stages.data:ingest",
    "snapshot": "dlforge.stages.data:snapshot",
    "sweep": "dlforge.hpo.sweep:sweep",
    "train": "dlforge.train.fit:train",
    "evaluate": "dlforge.registry.evaluate:evaluate",
    "register": "dlforge.registry.register:register",
    "monitor": "dlforge.monitor.report:monitor",
    "serve": "dlforge.serve.server:serve",
}
# command -> module whose main(argv) implements it
TOOLS = {
    "data": "dlforge.cli.data",
    "runs": "dlforge.cli.runs",
    "models": "dlforge.cli.models",
    "lineage": "dlforge.cli.lineage",
    "predict": "dlforge.cli.predict",
    "workflow": "dlforge.cli.workflow",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else "--help"
    try:
        if command in TOOLS:
            return import_module(TOOLS[command]).main(argv[1:])
        if command in STAGES:
            return run_stage(command, argv[1:])
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


def run_stage(name: str, overrides: list[str]) -> int:
    """Run stage ``name`` as a Hydra app over ``conf/<name>.yaml``."""
    import hydra

    from dlforge.core.config import conf_dir
    from dlforge.stages import params

    if name in params.STAGES:
        overrides = [*_tracked_params(name, overrides), *overrides]  # the command line wins
    module, attr = STAGES[name].split(":")
    function = getattr(import_module(module), attr)
    status = {"code": 0}

    def task(cfg) -> None:
        try:
            print(json.dumps(function(cfg), indent=2))
        except DlforgeError as err:
            log.error("%s", err)
            status["code"] = err.exit_code

    task.__module__ = module  # Hydra names the job and its log after it
    app = hydra.main(config_path=str(conf_dir()), config_name=name, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [f"dlforge {name}", *overrides]
    try:
        app()
    finally:
        sys.argv = saved
    return status["code"]


def _tracked_params(name: str, overrides: list[str]) -> list[str]:
    """What ``dvc exp run -S`` set in params.yaml, for the keys this experiment has."""
    from dlforge.core.config import compose, has_key
    from dlforge.stages import params

    tracked = params.overrides()
    if not tracked:
        return []
    cfg = compose(name, overrides)
    kept = [o for o in tracked if has_key(cfg, o.split("=", 1)[0])]
    log.info("from %s: %s <dvc exp run -S>", params.PARAMS_FILE, " ".join(kept) or "nothing")
    return kept
