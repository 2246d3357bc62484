"""A toy snapshot that trains in seconds, and a train config pointing at it."""

from __future__ import annotations

import pytest

from dlforge.core.config import compose
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows


@pytest.fixture
def train_cfg(tmp_path, mlflow_dir):
    """``train_cfg(*overrides)``: the intent train config on a toy snapshot under tmp_path."""
    make_snapshot(tmp_path, toy_rows(400))

    def make(*overrides: str, root=tmp_path):
        model = [] if any(o.startswith("model=") for o in overrides) else SMALL_MODEL
        return compose("train", ["experiment=intent", f"paths.root={root}",
                                 f"paths.mlflow_dir={mlflow_dir}", "dataset.name=toy",
                                 f"tracking.experiment=test-{root.name}", *FAST, *model,
                                 *overrides])

    return make
