"""A prediction server over a test project's registered models, in-process."""

from __future__ import annotations

import pytest

from dlforge.core.config import compose
from dlforge.stages.serve import server_settings
from tests.helpers import running

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


@pytest.fixture
def served(two_versions):
    """A client of a blue-green server over this test's copy of the two standard versions
    (``two_versions`` in tests/conftest.py: v1 champion, v2 candidate); (client, project)."""
    with running(server_config(two_versions)) as client:
        yield client, two_versions
