"""``dlforge serve``: the LitServe prediction server for registered models.

    dlforge serve                      # every experiment's champion (workflow/config.yaml)
    dlforge serve port=9000 max_batch_size=32
    dlforge serve 'models={intent: {strategy: canary, share: 0.2}}'

The composed conf/serve.yaml becomes one checked :class:`ServeSettings` (a bad
key fails here, naming it, not later inside a worker process); the server
(:mod:`dlforge.serve.server`) reads nothing else.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.tracking import absolute_sqlite
from dlforge.serve.settings import ServeSettings

GROUPS = frozenset({"hydra", "paths", "tracking"})  # config groups, not server settings
WRITTEN = ("log_dir", "state_path", "metrics_dir")  # files the server writes: made absolute


def server_settings(cfg: DictConfig) -> ServeSettings:
    """Every key of conf/serve.yaml, resolved, its files absolute, with the model cache
    (``paths.output_dir/.models``) and the tracking URI.

    Raises:
        DlforgeError: naming the key of a missing or bad setting.
    """
    values = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
              for k, v in cfg.items() if k not in GROUPS}
    for key in WRITTEN:
        if isinstance(values.get(key), str):  # anything else: the settings name the key
            values[key] = str(Path(values[key]).resolve())
    values.update(_served_models(values.get("models"), values.get("default_model")))
    values["cache_dir"] = str((Path(cfg.paths.output_dir) / ".models").resolve())
    values["tracking_uri"] = absolute_sqlite(cfg.tracking.tracking_uri)
    return ServeSettings.from_config(values)


def _served_models(models, default: str | None) -> dict:
    """``models`` and ``default_model``; no models: the project's experiments, each
    registered under its name (``registry.model_name``), blue-green on its champion."""
    from dlforge.core.errors import DlforgeError
    from dlforge.stages.workflow import WORKFLOW_CONFIG, experiments

    if not models:
        names = experiments() if WORKFLOW_CONFIG.is_file() else []
        if not names:
            raise DlforgeError(
                "models in conf/serve.yaml is null and there is no workflow/config.yaml "
                "listing experiments: nothing to serve. Fix: run from the project's root, "
                "or name the registered model: dlforge serve 'models={NAME: {}}'")
        models = {name: {} for name in names}
    if default is None and isinstance(models, dict):
        default = next(iter(models))
    return {"models": models, "default_model": default}


def serve(cfg: DictConfig) -> dict:
    """The serve stage: runs the server until interrupted (Ctrl-C or SIGTERM)."""
    from dlforge.serve.server import run

    return run(server_settings(cfg))
