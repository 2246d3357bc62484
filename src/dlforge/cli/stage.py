"""The stage commands (``dlforge train experiment=X ...``) as Hydra applications.

Hydra composes the stage's config (``conf/<stage>.yaml``) from the overrides
that :func:`dlforge.stages.config.stage_overrides` gives (params.yaml's
tracked values, then the command line), sets up logging and the run folder,
and the stage function gets the composed config. Its summary goes to stdout as
JSON; a :class:`DlforgeError` is logged and sets the exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib import import_module

from dlforge.core.errors import DlforgeError

log = logging.getLogger("dlforge")


def run_stage(name: str, target: str, command_line: list[str]) -> int:
    """Run stage ``name`` (``target``: ``module:function``) over ``conf/<name>.yaml``."""
    import hydra

    from dlforge.core.config import conf_dir
    from dlforge.stages.config import stage_overrides

    overrides = stage_overrides(name, command_line)
    module, attr = target.split(":")
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
