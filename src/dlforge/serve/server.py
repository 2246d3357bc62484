"""``dlforge serve``: the LitServe prediction server for registered models.

    dlforge serve                                   # conf/serve.yaml: intent@champion
    dlforge serve port=9000 max_batch_size=32

``POST /predict`` ``{"inputs": [...], "model"?, "version"?, "alias"?, "top_k"?}``
answers ``{"model", "version", "predictions": [{"label", "score", "top_k"}],
"request_id"}``; ``GET /health`` and ``GET /info`` come from LitServe. The
OpenAPI page (``/docs``) shows the request schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def settings(cfg: DictConfig) -> dict:
    """The plain settings the API (and its worker processes) get."""
    keys = ("models", "default_model", "cache_capacity", "alias_refresh_seconds",
            "max_batch_size", "batch_timeout", "max_inputs", "log_dir", "log_max_bytes")
    out = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig)
           else cfg[k] for k in keys}
    out["log_dir"] = str(Path(out["log_dir"]).resolve())
    out["cache_dir"] = str((Path(cfg.paths.output_dir) / ".models").resolve())
    from dlforge.train.tracking import _absolute_sqlite

    out["tracking_uri"] = _absolute_sqlite(cfg.tracking.tracking_uri)
    _check(out)
    return out


def _check(conf: dict) -> None:
    """Bad settings fail here, naming the key, not later inside a worker process."""
    from dlforge.errors import DlforgeError
    from dlforge.serve.release import Release

    for name, spec in conf["models"].items():
        try:
            Release(**spec)
        except (TypeError, ValueError) as err:
            raise DlforgeError(f"models.{name}: {err}. Fix: use strategy (blue_green, canary, "
                               "shadow, bandit), alias, share, versions") from None
    if conf["default_model"] not in conf["models"]:
        raise DlforgeError(f"default_model={conf['default_model']!r} is not one of models "
                           f"({sorted(conf['models'])})")
    if conf["cache_capacity"] < 1 or conf["max_batch_size"] < 1:
        raise DlforgeError("cache_capacity and max_batch_size must be at least 1")


def build_server(cfg: DictConfig):
    import litserve as ls

    from dlforge.serve.api import ModelAPI
    from dlforge.serve.middleware import ApiKeyMiddleware

    conf = settings(cfg)
    middlewares = [(ApiKeyMiddleware, {"api_key": str(cfg.api_key)})] if cfg.api_key else []
    return ls.LitServer(ModelAPI(conf), accelerator=cfg.accelerator,
                        workers_per_device=cfg.workers_per_device,
                        max_payload_size=cfg.max_body_bytes, middlewares=middlewares,
                        model_metadata={"models": conf["models"],
                                        "default_model": conf["default_model"]})


def serve(cfg: DictConfig) -> dict:
    """The serve command: runs until interrupted."""
    server = build_server(cfg)
    log.info("serving %s on http://%s:%d", sorted(cfg.models), cfg.host, cfg.port)
    server.run(host=cfg.host, port=cfg.port, generate_client_file=False)
    return {"stopped": True}
