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
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import absolute_sqlite

log = logging.getLogger(__name__)


def settings(cfg: DictConfig) -> dict:
    """The plain settings the API (and its worker processes) get: every key of
    conf/serve.yaml, resolved, with absolute paths."""
    skip = {"hydra", "paths", "tracking"}
    out = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
           for k, v in cfg.items() if k not in skip}
    for key in ("log_dir", "state_path", "metrics_dir"):
        out[key] = str(Path(out[key]).resolve())
    out["cache_dir"] = str((Path(cfg.paths.output_dir) / ".models").resolve())
    out["tracking_uri"] = absolute_sqlite(cfg.tracking.tracking_uri)
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
                               "shadow, bandit), alias, share, versions, explore, "
                               "max_rewards_per_minute") from None
    if conf["default_model"] not in conf["models"]:
        raise DlforgeError(f"default_model={conf['default_model']!r} is not one of models "
                           f"({sorted(conf['models'])})")
    for key in ("cache_capacity", "max_batch_size", "max_inputs", "max_input_chars",
                "max_image_pixels", "max_pending_requests", "max_connections",
                "max_header_bytes", "max_label_chars"):
        if conf[key] < 1:
            raise DlforgeError(f"{key}={conf[key]} must be at least 1")
    for key in ("request_timeout", "read_timeout", "keepalive_timeout"):
        if not conf[key] > 0:
            raise DlforgeError(f"{key}={conf[key]} must be a positive number of seconds")
    key = conf["api_key"]
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise DlforgeError("api_key (or DLFORGE_API_KEY) is set but empty: the server would "
                           "run without authentication. Fix: set a key, or unset it (api_key="
                           "null) to serve without one")
    if conf["cpu_threads"] is not None and conf["cpu_threads"] < 1:
        raise DlforgeError(f"cpu_threads={conf['cpu_threads']} must be at least 1 (null: "
                           "torch's default)")
    for key in ("refresh_seconds", "batch_timeout", "feedback_window_seconds",
                "min_free_disk_bytes", "log_keep_files"):
        if conf[key] < 0:
            raise DlforgeError(f"{key}={conf[key]} must not be negative")


def _server_class():
    import tempfile
    import threading
    import time
    from contextlib import asynccontextmanager

    import litserve as ls

    from dlforge.serve.transport import AnswerTransport, WorkerQueues

    class SupervisedServer(ls.LitServer):
        """A LitServer whose processes are supervised, and whose queues are ZeroMQ sockets.

        - Requests and answers travel over :mod:`dlforge.serve.transport`
          (nothing a killed process can leave locked), replacing LitServe's
          manager queue and its ``fast_queue`` transport.
        - A dead inference worker is restarted (LitServe's ``restart_workers``);
          the HTTP process answers the requests it held 503 at once and any
          request past ``request_timeout`` 504.
        - A dead HTTP process stops the server, which then exits non-zero
          (:attr:`http_died`), so that its supervisor starts it again.
        """

        def __init__(self, *args, request_timeout: float, **kwargs):
            super().__init__(*args, timeout=request_timeout, restart_workers=True, **kwargs)
            self.request_timeout, self.http_died = request_timeout, None
            self.monitor_internal = 0.25  # seconds between LitServe's checks of its workers
            self.sockets_dir = tempfile.mkdtemp(prefix="dlforge-serve-")

        def _init_manager(self, num_api_servers: int):
            manager = super()._init_manager(num_api_servers)
            workers = sum(len(self._inference_workers_config_for_api(api.api_path))
                          for api in self.litapi_connector)
            for path in self.litapi_request_queues:
                self.litapi_request_queues[path] = WorkerQueues(self.sockets_dir, workers,
                                                                self.request_timeout)
            self._transport = AnswerTransport(self.sockets_dir)
            return manager

        @asynccontextmanager
        async def lifespan(self, app):
            import asyncio

            async with super().lifespan(app):
                watches = [asyncio.get_running_loop().create_task(queues.watch(
                    self.response_buffer)) for queues in self.litapi_request_queues.values()]
                try:
                    yield
                finally:
                    for task in watches:
                        task.cancel()

        def _start_worker_monitoring(self, manager, uvicorn_workers):
            super()._start_worker_monitoring(manager, uvicorn_workers)

            def watch_http() -> None:
                while not self._shutdown_event.is_set():
                    for process in uvicorn_workers.values():
                        if not process.is_alive():
                            self.http_died = process.name
                            log.error("HTTP process %s died; stopping the server",
                                      process.name)
                            self._shutdown_event.set()
                            return
                    time.sleep(self.monitor_internal)

            threading.Thread(target=watch_http, daemon=True, name="dlforge-http-watch").start()

        def worker_processes(self) -> list[dict]:
            return [worker for queues in self.litapi_request_queues.values()
                    for worker in queues.processes()]

    return SupervisedServer


def build_server(cfg: DictConfig):
    """The LitServer: workers for /predict, our middleware and routes around them."""
    from dlforge.serve import health
    from dlforge.serve.api import ModelAPI
    from dlforge.serve.middleware import ApiKeyMiddleware, HttpMetricsMiddleware, RequestGate
    from dlforge.serve.prometheus import prepare_folder
    from dlforge.serve.routes import Routes
    from dlforge.serve.state import ServingState

    conf = settings(cfg)
    conf["metrics_dir"] = str(prepare_folder(Path(conf["metrics_dir"])))
    state = ServingState.from_settings(conf)
    state.clear_workers()  # the workers of an earlier run are gone
    state.close()
    metrics = {"metrics_dir": conf["metrics_dir"]}
    # Starlette runs the last added outermost: metrics, then the key, then the gate.
    middlewares = [(RequestGate, {"settings": conf, **metrics})]
    if conf["api_key"] is not None:
        middlewares.append((ApiKeyMiddleware, {"api_key": conf["api_key"]}))
    middlewares.append((HttpMetricsMiddleware, metrics))
    server = _server_class()(ModelAPI(conf), accelerator=cfg.accelerator,
                            workers_per_device=cfg.workers_per_device,
                            middlewares=middlewares,  # the body limit is the gate's
                            request_timeout=conf["request_timeout"], info_path="/info/litserve")
    Routes(conf, {"devices": server.devices, "workers_per_device": cfg.workers_per_device,
                  "max_batch_size": cfg.max_batch_size, "batch_timeout": cfg.batch_timeout,
                  "max_pending_requests": cfg.max_pending_requests}).add_to(server.app)
    health.add_routes(server.app, health.disk_check(conf),
                      server.worker_processes)
    return server


def uvicorn_options(cfg: DictConfig) -> dict:
    """The connection limits given to uvicorn (see :mod:`dlforge.serve.http`)."""
    from dlforge.serve.http import guarded_protocol

    return {"http": guarded_protocol(cfg.max_header_bytes, cfg.read_timeout),
            "timeout_keep_alive": cfg.keepalive_timeout,
            "limit_concurrency": cfg.max_connections,
            "h11_max_incomplete_event_size": cfg.max_header_bytes}


def serve(cfg: DictConfig) -> dict:
    """The serve command: runs until interrupted (Ctrl-C or SIGTERM)."""
    from dlforge.core.process import interrupt_on_sigterm

    server = build_server(cfg)
    interrupt_on_sigterm()
    gc.freeze()  # the HTTP processes fork from here: their GC skips what was loaded so far
    log.info("serving %s on http://%s:%d", sorted(cfg.models), cfg.host, cfg.port)
    try:
        server.run(host=cfg.host, port=cfg.port, generate_client_file=False,
                   log_level=cfg.log_level, **uvicorn_options(cfg))
    finally:
        shutil.rmtree(server.sockets_dir, ignore_errors=True)
    if server.http_died:
        raise DlforgeError(f"the HTTP process {server.http_died} died, so the server stopped; "
                           "start it again (a supervisor such as systemd or Kubernetes does "
                           "this on a non-zero exit)")
    return {"stopped": True}
