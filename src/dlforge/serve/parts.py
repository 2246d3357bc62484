"""What one inference worker serves with, built in that worker's process.

LitServe sends :class:`~dlforge.serve.api.ModelAPI` (plain settings) to each worker
process and calls its ``setup`` there; ``setup`` asks a factory for the parts, by
default :func:`build_parts`. A test hands in a factory of its own (a stand-in
registry, models, state) and runs the API's batch path in-process:

    client          the MLflow client: aliases, versions, package downloads
    cache           the loaded models (ModelCache), loading through the client
    releases        model name -> its Release (strategy, aliases, bandit rewards)
    prediction_log  every answer, for monitoring
    state           the shared serving state: answers for feedback, workers' reports
    metrics         this worker's Prometheus metrics
    rng             the release strategies' random choices (``routing_seed``)
"""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlforge.serve.cache import ModelCache
    from dlforge.serve.log import PredictionLog
    from dlforge.serve.prometheus import WorkerMetrics
    from dlforge.serve.release import Release
    from dlforge.serve.settings import ServeSettings
    from dlforge.serve.state import ServingState


@dataclass
class ServingParts:
    """The collaborators of one worker's ``ModelAPI`` (see the module)."""

    client: Any
    cache: ModelCache
    releases: dict[str, Release]
    prediction_log: PredictionLog
    state: ServingState
    metrics: WorkerMetrics
    rng: random.Random


def build_parts(settings: ServeSettings, device: str) -> ServingParts:
    """Prepare this worker process and build its parts from ``settings``.

    The process dies with its parent (a server killed with SIGKILL leaves no worker
    behind) and, on a CPU, uses ``cpu_threads`` threads; once everything is loaded,
    what was loaded is frozen out of the garbage collector's way.
    """
    import mlflow

    from dlforge.core.process import die_with_parent
    from dlforge.core.tracking import connect
    from dlforge.serve.cache import ModelCache
    from dlforge.serve.log import PredictionLog
    from dlforge.serve.prometheus import WorkerMetrics
    from dlforge.serve.state import ServingState

    die_with_parent()
    if device.startswith("cpu") and settings.cpu_threads:
        import torch

        torch.set_num_threads(settings.cpu_threads)  # workers, not threads, share the cores
    connect(settings.tracking_uri)
    client, metrics = mlflow.MlflowClient(), WorkerMetrics(settings.metrics_dir)
    loader = partial(load_version, client, Path(settings.cache_dir), device, metrics)
    parts = ServingParts(
        client=client, cache=ModelCache(loader, settings.cache_capacity),
        releases={name: spec.release() for name, spec in settings.models.items()},
        prediction_log=PredictionLog.from_settings(settings),
        state=ServingState.from_settings(settings), metrics=metrics,
        rng=random.Random(settings.routing_seed))
    gc.freeze()  # what was loaded (torch, mlflow) is never garbage: skip it in every GC
    return parts


def load_version(client, cache_dir: Path, device: str, metrics: WorkerMetrics,
                 name: str, version: str):
    """Version ``version`` of model ``name``, fetched from the registry into
    ``cache_dir`` and loaded on ``device``; counted in ``metrics``."""
    from dlforge.models.package import load_package
    from dlforge.registry.fetch import fetch_package

    folder, _, _ = fetch_package(client, f"models:/{name}/{version}", cache_dir)
    model = load_package(folder, device)
    metrics.loads.labels(name, version).inc()
    return model
