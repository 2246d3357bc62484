"""Prometheus metrics of the prediction server, summed over its processes.

The HTTP process and the inference workers are separate processes. Each one
records into prometheus_client's multiprocess files in one folder per server
run, and ``GET /metrics`` sums the folder (prometheus_client's multiprocess
mode, as gunicorn applications export metrics).

    dlforge_requests_total{model,version}          requests answered
    dlforge_predictions_total{model,version}       inputs answered
    dlforge_errors_total{model,version,status}     requests refused (version "" if none)
    dlforge_latency_seconds{model,version}         worker time per request (histogram)
    dlforge_batch_size{model,version}              inputs per forward pass (histogram)
    dlforge_model_loads_total{model,version}       loads into a worker (evicted: loaded again)
    dlforge_http_requests_total{path,status}       every HTTP answer
    dlforge_http_latency_seconds{path}             HTTP time per request (histogram)
    dlforge_overloaded_total                       requests refused with 503: queue full
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from dlforge.core.process import pid_alive

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PATHS = frozenset({"/predict", "/feedback", "/health", "/info", "/metrics"})


def prepare_folder(root: str | Path) -> Path:
    """An empty folder for this server run's metric files.

    Folders of earlier runs whose process is gone are removed, so a restarted
    server starts its counters at zero, as Prometheus expects of a new process.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name == str(os.getpid()) or (old.name.isdigit() and not pid_alive(int(old.name))):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / str(os.getpid())
    folder.mkdir()
    http_metrics.cache_clear()  # a server started again in this process starts afresh
    return folder


def _use_folder(folder: str | Path) -> None:
    """Record the metrics created from now on in this process under ``folder``."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from prometheus_client import values

    # A fresh value class: prometheus_client keeps its open files per process,
    # and a second server in one process (tests) must not write to the first's.
    values.ValueClass = values.MultiProcessValue()


class WorkerMetrics:
    """What an inference worker records, per model and version."""

    def __init__(self, folder: str | Path):
        _use_folder(folder)
        from prometheus_client import Counter, Histogram

        labels = ("model", "version")
        self.requests = Counter("dlforge_requests", "requests answered", labels, registry=None)
        self.predictions = Counter("dlforge_predictions", "inputs answered", labels,
                                   registry=None)
        self.errors = Counter("dlforge_errors", "requests refused", (*labels, "status"),
                              registry=None)
        self.latency = Histogram("dlforge_latency_seconds", "worker time per request", labels,
                                 buckets=LATENCY_BUCKETS, registry=None)
        self.batch_size = Histogram("dlforge_batch_size", "inputs per forward pass", labels,
                                    buckets=BATCH_BUCKETS, registry=None)
        self.loads = Counter("dlforge_model_loads", "models loaded into a worker", labels,
                             registry=None)

    def answered(self, model: str, version: str, inputs: int, seconds: float) -> None:
        self.requests.labels(model, version).inc()
        self.predictions.labels(model, version).inc(inputs)
        self.latency.labels(model, version).observe(seconds)

    def error(self, model: str, version: str | None, status: int) -> None:
        self.errors.labels(model, version or "", str(status)).inc()


@functools.cache
def http_metrics(folder: str) -> HttpMetrics:
    """The HTTP process's metrics (one set per folder: the middlewares share it)."""
    return HttpMetrics(folder)


class HttpMetrics:
    """What the HTTP process records, per path and status."""

    def __init__(self, folder: str | Path):
        _use_folder(folder)
        from prometheus_client import Counter, Histogram

        self.requests = Counter("dlforge_http_requests", "HTTP answers", ("path", "status"),
                                registry=None)
        self.latency = Histogram("dlforge_http_latency_seconds", "HTTP time per request",
                                 ("path",), buckets=LATENCY_BUCKETS, registry=None)
        self.overloaded = Counter("dlforge_overloaded", "requests refused: queue full",
                                  registry=None)

    def answered(self, path: str, status: int, seconds: float) -> None:
        path = path if path in PATHS else "other"  # bounded label values
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)


def render(folder: str | Path) -> tuple[bytes, str]:
    """(Prometheus text exposition of every process's metrics, its content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry), CONTENT_TYPE_LATEST
