"""The LitServe prediction server for registered models, built from :class:`ServeSettings`.

``POST /predict`` ``{"inputs": [...], "model"?, "version"?, "alias"?, "top_k"?}``
answers ``{"model", "version", "predictions": [{"label", "score", "top_k"}],
"request_id"}``; ``POST /feedback`` ``{"request_id", "label", "index"?}`` scores
an answer; ``GET /info`` shows the models, releases and what is loaded;
``GET /metrics`` is Prometheus text; ``GET /health`` is LitServe's. The OpenAPI
page (``/docs``) shows the schemas. ``dlforge serve`` (``dlforge.stages.serve``)
builds the settings from conf/serve.yaml and calls :func:`run`.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import shutil

from dlforge.core.errors import DlforgeError
from dlforge.serve.settings import ServeSettings

log = logging.getLogger(__name__)


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
        - Inference workers fork from a fork server that imported torch, MLflow and
          LitServe once (:func:`worker_context`), in the working folder, environment
          and import path of the moment they start (:class:`CallersSetting`).
        """

        def __init__(self, *args, request_timeout: float, **kwargs):
            super().__init__(*args, timeout=request_timeout, restart_workers=True, **kwargs)
            self.request_timeout, self.http_died = request_timeout, None
            self.monitor_internal = 0.25  # seconds between LitServe's checks of its workers
            self.sockets_dir: str | None = None  # made as the server starts; run() removes it

        def launch_inference_worker(self, lit_api) -> list:
            workers = self._inference_workers_config_for_api(lit_api.api_path)
            return [self.launch_single_inference_worker(lit_api, worker_id)
                    for worker_id in range(len(workers))]

        def launch_single_inference_worker(self, lit_api, worker_id: int):
            """LitServe's worker start, forked from a server of preloaded imports."""
            from litserve.loops import inference_worker
            from litserve.utils import WorkerSetupStatus

            if lit_api.spec:
                raise DlforgeError("dlforge's prediction API has no LitServe spec")
            device = self._inference_workers_config_for_api(lit_api.api_path)[worker_id]
            device = device[0] if len(device) == 1 else device
            endpoint = lit_api.api_path.split("/")[-1]
            self.workers_setup_status[f"{endpoint}_{worker_id}"] = WorkerSetupStatus.STARTING
            process = worker_context().Process(
                target=in_callers_setting, name="inference-worker",
                args=(CallersSetting.here(), inference_worker,
                      (lit_api, device, worker_id, self._get_request_queue(lit_api.api_path),
                       self._transport, self.workers_setup_status, self._callback_runner,
                       self.restart_workers)))
            process.start()
            return process

        def _init_manager(self, num_api_servers: int):
            self.sockets_dir = tempfile.mkdtemp(prefix="dlforge-serve-")
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


# What the inference workers' fork server imports as it starts: the one module that makes
# it die with the serving process and imports, once, what every worker needs.
WORKER_PRELOAD = ["dlforge.serve.forkserver"]


def worker_context():
    """The multiprocessing context of inference workers: a fork server with
    :data:`WORKER_PRELOAD` imported (one per serving process, started on first use);
    spawn where the platform has no fork server (Windows)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


@dataclasses.dataclass(frozen=True)
class CallersSetting:
    """What a spawned process would take from its parent at the moment it starts, but a
    process forked from a fork server has from when the fork server started."""

    cwd: str
    environ: dict
    path: list

    @classmethod
    def here(cls) -> CallersSetting:
        import sys

        return cls(os.getcwd(), dict(os.environ), list(sys.path))


def in_callers_setting(setting: CallersSetting, target, args: tuple) -> None:
    """Run ``target(*args)`` in the working folder, environment and import path of
    the process that started this one."""
    import sys

    os.chdir(setting.cwd)
    os.environ.clear()
    os.environ.update(setting.environ)
    sys.path[:] = setting.path
    target(*args)


def build_server(settings: ServeSettings):
    """The LitServer: workers for /predict, our middleware and routes around them.

    Raises:
        DlforgeError: when ``LIT_SERVER_API_KEY`` is set (see :func:`check_environment`),
            or the serving state cannot be reached.
    """
    from dlforge.serve import health
    from dlforge.serve.api import ModelAPI
    from dlforge.serve.prometheus import prepare_folder
    from dlforge.serve.routes import Routes
    from dlforge.serve.state import ServingState

    check_environment()
    settings = dataclasses.replace(settings,  # this run's own folder of metric files
                                   metrics_dir=str(prepare_folder(settings.metrics_dir)))
    # Opened here first: a state database that cannot be reached stops the server
    # before it accepts a request (DlforgeError naming state_url).
    state = ServingState.from_settings(settings)
    state.clear_workers()  # the workers of this server's earlier run are gone
    state.close()
    log.info("serving state in %s", state.location)  # the password redacted
    server = _server_class()(ModelAPI(settings), accelerator=settings.accelerator,
                            workers_per_device=settings.workers_per_device,
                            middlewares=_middlewares(settings),  # the body limit is the gate's
                            request_timeout=settings.request_timeout, info_path="/info/litserve")
    Routes(settings, {"devices": server.devices,
                      "workers_per_device": settings.workers_per_device,
                      "max_batch_size": settings.max_batch_size,
                      "batch_timeout": settings.batch_timeout,
                      "max_pending_requests": settings.max_pending_requests,
                      "state": state.location, "replica": state.server}).add_to(server.app)
    health.add_routes(server.app, health.disk_check(settings), server.worker_processes)
    return server


def _middlewares(settings: ServeSettings) -> list[tuple]:
    """Starlette runs the last added outermost: metrics, host names, the key, the gate."""
    from dlforge.serve.hosts import answered_hosts, is_loopback
    from dlforge.serve.middleware import (
        ApiKeyMiddleware,
        HostMiddleware,
        HttpMetricsMiddleware,
        RequestGate,
    )

    metrics = {"metrics_dir": settings.metrics_dir}
    middlewares = [(RequestGate, {"settings": settings, **metrics})]
    if settings.api_key is not None:
        middlewares.append((ApiKeyMiddleware, {"api_key": settings.api_key}))
    hosts = answered_hosts(settings.host, settings.api_key, settings.allowed_hosts)
    if hosts is not None:
        middlewares.append((HostMiddleware, {"hosts": hosts}))
    elif settings.api_key is None and not is_loopback(settings.host):
        log.warning("serving on %s without an API key: anyone who can reach this address can "
                    "use the server <host=%s api_key=null>. Set DLFORGE_API_KEY, or serve on "
                    "127.0.0.1", settings.host, settings.host)
    middlewares.append((HttpMetricsMiddleware, metrics))
    return middlewares


def check_environment() -> None:
    """Refuse LitServe's own key variable: dlforge's middleware checks the key, so
    LitServe never reads it, and a server meant to be protected would run open.

    Raises:
        DlforgeError: when ``LIT_SERVER_API_KEY`` is set, naming the setting to use.
    """
    if "LIT_SERVER_API_KEY" in os.environ:
        raise DlforgeError("LIT_SERVER_API_KEY is set, but dlforge serve does not read it "
                           "(the server would run without the key it names). Fix: set the key "
                           "in DLFORGE_API_KEY (or api_key in conf/serve.yaml) and unset "
                           "LIT_SERVER_API_KEY")


def uvicorn_options(settings: ServeSettings) -> dict:
    """The connection limits given to uvicorn (see :mod:`dlforge.serve.http`)."""
    from dlforge.serve.http import guarded_protocol

    return {"http": guarded_protocol(settings.max_header_bytes, settings.read_timeout),
            "timeout_keep_alive": settings.keepalive_timeout,
            "limit_concurrency": settings.max_connections,
            "h11_max_incomplete_event_size": settings.max_header_bytes}


def run(settings: ServeSettings) -> dict:
    """Serve until interrupted (Ctrl-C or SIGTERM).

    Raises:
        DlforgeError: when an HTTP process died, so that a supervisor restarts the server.
    """
    from dlforge.core.process import interrupt_on_sigterm

    server = build_server(settings)
    interrupt_on_sigterm()
    gc.freeze()  # the HTTP processes fork from here: their GC skips what was loaded so far
    log.info("serving %s on http://%s:%d", sorted(settings.models), settings.host,
             settings.port)
    try:
        server.run(host=settings.host, port=settings.port, generate_client_file=False,
                   log_level=settings.log_level, **uvicorn_options(settings))
    finally:
        if server.sockets_dir:
            shutil.rmtree(server.sockets_dir, ignore_errors=True)
    if server.http_died:
        raise DlforgeError(f"the HTTP process {server.http_died} died, so the server stopped; "
                           "start it again (a supervisor such as systemd or Kubernetes does "
                           "this on a non-zero exit)")
    return {"stopped": True}
