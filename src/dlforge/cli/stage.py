"""The stage commands (``dlforge train experiment=X ...``) as Hydra applications.

Hydra composes the stage's config (``conf/<stage>.yaml``) from the overrides
that :func:`dlforge.stages.config.stage_overrides` gives (params.yaml's
tracked values, then the command line), sets up logging and the run folder,
and the stage function gets the composed config. Its summary goes to stdout as
JSON; a :class:`DlforgeError` is logged and sets the exit code.

A value given with a password (``hpo.storage=postgresql://user:PW@host/db``)
reaches Hydra as ``${oc.env:DLFORGE_SECRET_HPO_STORAGE}``, the password in this
process's environment (:func:`dlforge.core.secrets.to_environment`): Hydra's
records of the run (``.hydra/``) and every config frozen after hold no password.

The project's own code (``src/<name>/`` under the working directory, the
project root) is importable by every stage: ``model.net._target_`` may name
``<name>.nets.MyNet`` without the project being installed.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from importlib import import_module
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.process import preload

log = logging.getLogger("dlforge")


# The libraries a stage imports as it works, loaded before it starts where the stage
# is the process (`dlforge train`): see run_stage. Not Lightning for a sweep, whose
# trials may all run in worker processes (hpo.n_workers), which load it themselves.
LIBRARIES = {
    "sweep": ("mlflow", "optuna"),
    "train": ("lightning.pytorch", "mlflow"),
    "evaluate": ("dlforge.models.package", "mlflow", "matplotlib.pyplot"),
    "register": ("dlforge.models.package", "mlflow"),
    "monitor": ("dlforge.models.package", "mlflow", "matplotlib.pyplot"),
    "serve": ("dlforge.serve.server", "mlflow"),
}


def run_stage(name: str, target: str, command_line: list[str], program: bool = False) -> int:
    """Run stage ``name`` (``target``: ``module:function``) over ``conf/<name>.yaml``.

    ``program``: this process is the command (``dlforge train``, not a program that
    calls :func:`dlforge.cli.main`). Its start-up then runs without the garbage
    collector, whose passes over the objects of every import (torch, Lightning,
    MLflow) are a large share of a short stage's CPU; the stage starts with its
    :data:`LIBRARIES` loaded, one collection made and what is left frozen, then
    collects as usual (:func:`dlforge.core.process.preload`).
    """
    if program:
        gc.disable()
    import hydra

    from dlforge.core.config import compose, conf_dir
    from dlforge.core.secrets import to_environment
    from dlforge.stages.config import stage_overrides
    from dlforge.stages.strict import check_config

    add_project_code()
    overrides = stage_overrides(name, to_environment(command_line))
    if not any(arg.startswith("-") for arg in overrides):  # Hydra's own flags aside
        cfg = compose(name, overrides)  # a config that does not compose: the file and the fix
        _check_experiment_name(cfg)  # before Hydra makes its log folder under outputs/<name>
        check_config(name, cfg, overrides)  # an unknown key: where it is set, the nearest name
    module, attr = target.split(":")
    function = getattr(import_module(module), attr)
    status = {"code": 0}

    def task(cfg) -> None:
        if program:
            preload(LIBRARIES.get(name, ()))
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


def _check_experiment_name(cfg) -> None:
    """The stage's ``experiment_name``, when its config has one that is set (serve has none)."""
    from omegaconf import OmegaConf

    from dlforge.core.layout import check_experiment_name

    if "experiment_name" in cfg and not OmegaConf.is_missing(cfg, "experiment_name"):
        check_experiment_name(cfg.experiment_name)


def add_project_code(root: Path | None = None) -> None:
    """Put the project's ``src/`` folder first on sys.path, and on PYTHONPATH for the
    processes a stage starts (sweep workers, training ranks), when it exists.

    Args:
        root: the project root (default: the working directory).
    """
    src = (root or Path.cwd()) / "src"
    if not src.is_dir():
        return
    path = str(src.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in inherited:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *inherited])
