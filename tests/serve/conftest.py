"""A prediction server over a test project's registered models, in-process."""

from __future__ import annotations

import contextlib
import shutil
import time

import pytest
from fastapi.testclient import TestClient
from litserve.utils import wrap_litserve_start

from dlforge.core.config import compose
from dlforge.serve.server import build_server
from dlforge.stages.serve import server_settings

TEXTS = ["guitar song album", "rain umbrella forecast"]
TRUTH = ["music", "weather"]


def server_config(project, *overrides: str, strategy: str = "blue_green"):
    """The settings of a server over ``project``'s model, from conf/serve.yaml."""
    cfg = compose("serve", [f"paths.root={project.root}",
                            f"tracking.tracking_uri={project.tracking_uri}",
                            f"models={{{project.model_name}: {{strategy: {strategy}}}}}",
                            f"default_model={project.model_name}", "accelerator=cpu",
                            "max_batch_size=4", "batch_timeout=0.01", "max_body_bytes=4096",
                            "api_key=null", *overrides])
    return server_settings(cfg)


@contextlib.contextmanager
def running(settings):
    """A TestClient of a started, ready server (its inference workers are real processes),
    addressed as localhost: a server without an API key answers only loopback names."""
    server = build_server(settings)
    try:
        with wrap_litserve_start(server), \
                TestClient(server.app, base_url="http://localhost") as client:
            deadline = time.monotonic() + 180
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, client.get("/health/ready").text
                time.sleep(0.2)
            client.litserver = server  # for tests that look inside
            yield client
    finally:  # what `dlforge serve` removes as it stops
        if server.sockets_dir:
            shutil.rmtree(server.sockets_dir, ignore_errors=True)


@pytest.fixture
def served(two_versions):
    """A client of a blue-green server over this test's copy of the two standard versions
    (``two_versions`` in tests/conftest.py: v1 champion, v2 candidate); (client, project)."""
    with running(server_config(two_versions)) as client:
        yield client, two_versions
