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
    return out


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
