"""``dlforge serve``: the LitServe prediction server for registered models.

    dlforge serve                                   # conf/serve.yaml: intent@champion
    dlforge serve port=9000 max_batch_size=32

``POST /predict`` ``{"inputs": [...], "model"?, "version"?, "alias"?, "top_k"?}``
answers ``{"model", "version", "predictions": [{"label", "score", "top_k"}],
"request_id"}``; ``POST /feedback`` ``{"request_id", "label", "index"?}`` scores
an answer; ``GET /info`` shows the models, releases and what is loaded;
``GET /metrics`` is Prometheus text; ``GET /health`` is LitServe's. The OpenAPI
page (``/docs``) shows the schemas.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.errors import DlforgeError

log = logging.getLogger(__name__)


def settings(cfg: DictConfig) -> dict:
    """The plain settings the API (and its worker processes) get."""
    keys = ("models", "default_model", "cache_capacity", "refresh_seconds", "cpu_threads",
            "max_batch_size",
            "batch_timeout", "max_inputs", "log_dir", "log_max_bytes", "state_path",
            "feedback_window_seconds", "routing_seed")
    out = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig)
           else cfg[k] for k in keys}
    for key in ("log_dir", "state_path"):
        out[key] = str(Path(out[key]).resolve())
    out["cache_dir"] = str((Path(cfg.paths.output_dir) / ".models").resolve())
    from dlforge.train.tracking import _absolute_sqlite

    out["tracking_uri"] = _absolute_sqlite(cfg.tracking.tracking_uri)
    _check(out)
    return out


def _check(conf: dict) -> None:
    """Bad settings fail here, naming the key, not later inside a worker process."""
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
    for key in ("cache_capacity", "max_batch_size", "max_inputs"):
        if conf[key] < 1:
            raise DlforgeError(f"{key}={conf[key]} must be at least 1")
    if conf["cpu_threads"] is not None and conf["cpu_threads"] < 1:
        raise DlforgeError(f"cpu_threads={conf['cpu_threads']} must be at least 1 (null: "
                           "torch's default)")
    for key in ("refresh_seconds", "batch_timeout", "feedback_window_seconds"):
        if conf[key] < 0:
            raise DlforgeError(f"{key}={conf[key]} must not be negative")


def _server_class():
    import multiprocessing as mp

    import litserve as ls

    class PipeQueueServer(ls.LitServer):
        """A LitServer whose request queues are pipes (``multiprocessing.Queue``).

        LitServe hands requests to the inference workers through a Manager queue:
        every put and every get is a round trip through the manager's own server
        process, and on a small machine that costs more than the model's forward
        pass. A pipe queue carries the same tuples directly.
        """

        def _init_manager(self, num_api_servers: int):
            manager = super()._init_manager(num_api_servers)
            for path in self.litapi_request_queues:
                self.litapi_request_queues[path] = mp.get_context("spawn").Queue()
            return manager

    return PipeQueueServer


def build_server(cfg: DictConfig):
    """The LitServer: workers for /predict, our middleware and routes around them."""
    from dlforge.serve.api import ModelAPI
    from dlforge.serve.metrics import prepare_folder
    from dlforge.serve.middleware import (
        AdmissionMiddleware,
        ApiKeyMiddleware,
        HttpMetricsMiddleware,
    )
    from dlforge.serve.routes import Routes
    from dlforge.serve.state import ServingState

    conf = settings(cfg)
    if cfg.max_pending_requests < 1:
        raise DlforgeError(f"max_pending_requests={cfg.max_pending_requests} must be at least 1")
    conf["metrics_dir"] = str(prepare_folder(Path(cfg.metrics_dir).resolve()))
    state = ServingState(conf["state_path"])
    state.clear_workers()  # the workers of an earlier run are gone
    state.close()
    metrics = {"metrics_dir": conf["metrics_dir"]}
    # Starlette runs the last added outermost: metrics, then the key, then the queue.
    middlewares = [(AdmissionMiddleware, {"max_pending": cfg.max_pending_requests, **metrics})]
    if cfg.api_key:
        middlewares.append((ApiKeyMiddleware, {"api_key": str(cfg.api_key)}))
    middlewares.append((HttpMetricsMiddleware, metrics))
    server = _server_class()(ModelAPI(conf), accelerator=cfg.accelerator,
                            workers_per_device=cfg.workers_per_device,
                            max_payload_size=cfg.max_body_bytes, middlewares=middlewares,
                            fast_queue=cfg.fast_queue, info_path="/info/litserve")
    Routes(conf, {"devices": server.devices, "workers_per_device": cfg.workers_per_device,
                  "max_batch_size": cfg.max_batch_size, "batch_timeout": cfg.batch_timeout,
                  "max_pending_requests": cfg.max_pending_requests}).add_to(server.app)
    return server


def serve(cfg: DictConfig) -> dict:
    """The serve command: runs until interrupted (Ctrl-C or SIGTERM)."""
    from dlforge.process import interrupt_on_sigterm

    server = build_server(cfg)
    interrupt_on_sigterm()
    gc.freeze()  # the HTTP processes fork from here: their GC skips what was loaded so far
    log.info("serving %s on http://%s:%d", sorted(cfg.models), cfg.host, cfg.port)
    server.run(host=cfg.host, port=cfg.port, generate_client_file=False,
               log_level=cfg.log_level)
    return {"stopped": True}
