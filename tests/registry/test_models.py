"""Promotion errors say what the user can change: an alias the registry refuses is not
a store to retry or check."""

from __future__ import annotations

import mlflow
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import connect
from dlforge.registry import models as registry


@pytest.fixture
def model(tmp_path, mlflow_dir):
    """(client, name) of a registered model with one version."""
    uri = f"sqlite:///{mlflow_dir}/mlflow.db"
    connect(uri)
    client = mlflow.MlflowClient(uri)
    name = f"aliases-{tmp_path.name}"
    client.create_registered_model(name)
    client.create_model_version(name, source=str(tmp_path / "v1"))
    return client, name


@pytest.mark.parametrize("alias", ["v1", "latest", "two words", "a/b"])
def test_an_alias_the_registry_refuses_names_another_alias_as_the_fix(model, alias):
    client, name = model
    with pytest.raises(DlforgeError) as refused:
        registry.promote(client, name, "1", alias=alias)
    message = str(refused.value)
    assert message.startswith(f"could not point {name}@{alias} at version 1: ")
    assert f"Fix: choose another alias, e.g. `dlforge models promote {name} 1 --alias " \
           "candidate`" in message
    assert "retry" not in message and "reachable" not in message and ".." not in message
    assert registry.history(client, name) == []
