"""A toy project: train, evaluate and register small models into a private registry name."""

from __future__ import annotations

import pytest

from dlforge.config import compose
from dlforge.registry.evaluate import evaluate
from dlforge.registry.register import register
from dlforge.train.run import train
from tests.train.conftest import FAST, SMALL_MODEL, make_snapshot, toy_rows


@pytest.fixture
def project(tmp_path, mlflow_dir):
    """``project.run(stage, *overrides)`` runs a stage on the toy snapshot under tmp_path.

    Each test registers under its own model name (the MLflow store is shared).
    """
    make_snapshot(tmp_path, toy_rows(400))

    class Project:
        root = tmp_path
        model_name = f"toy-{tmp_path.name}"
        tracking_uri = f"sqlite:///{mlflow_dir}/mlflow.db"
        common = ["experiment=intent", f"paths.root={tmp_path}", f"paths.mlflow_dir={mlflow_dir}",
                  "dataset.name=toy", f"tracking.experiment=registry-{tmp_path.name}"]

        def config(self, stage: str, *overrides: str):
            extra = {"train": [*FAST, *SMALL_MODEL, "hpo.enabled=false"],
                     "register": [f"registry.model_name={self.model_name}"]}.get(stage, [])
            return compose(stage, [*self.common, *extra, *overrides])

        def run(self, stage: str, *overrides: str) -> dict:
            function = {"train": train, "evaluate": evaluate, "register": register}[stage]
            return function(self.config(stage, *overrides))

        def release(self, *train_overrides: str, gate: tuple[str, ...] = ()) -> dict:
            """train -> evaluate -> register; the register record."""
            self.run("train", *train_overrides)
            self.run("evaluate")
            return self.run("register", *gate)

    return Project()
