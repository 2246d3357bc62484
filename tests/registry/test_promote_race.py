"""Concurrent promotions of one model: every switch is kept, errors are DlforgeErrors.

Versions are registered straight into the SQLite store (no training), so these run in
seconds; the store is the session's (its tables take seconds to create).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from sqlalchemy.exc import IntegrityError

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.tracking import connect
from dlforge.registry import models as registry
from tests.helpers import ROOT

WRITERS = 12


@pytest.fixture
def model(tmp_path, mlflow_dir):
    """(client, name, tracking URI) of a model with WRITERS versions."""
    uri = f"sqlite:///{mlflow_dir}/mlflow.db"
    connect(uri)
    client = mlflow.MlflowClient(uri)
    name = f"race-{tmp_path.name}"
    client.create_registered_model(name)
    for i in range(WRITERS):
        client.create_model_version(name, source=str(tmp_path / f"v{i + 1}"))
    return client, name, uri


def promote_all(client, name: str, versions: list[str]) -> list[BaseException]:
    """Promote each version from its own thread, all at once; the errors raised."""
    start, errors = threading.Barrier(len(versions)), []

    def promote(version: str) -> None:
        start.wait()
        try:
            registry.promote(mlflow.MlflowClient(client.tracking_uri), name, version)
        except BaseException as err:  # noqa: BLE001 - the test reports every failure
            errors.append(err)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_chain(client, name: str, versions: list[str]) -> None:
    """One entry per promotion; each replaced the one before it; the last one is live."""
    switches = registry.history(client, name)
    assert sorted(e["version"] for e in switches) == sorted(versions)
    assert [e["previous"] for e in switches] == [None] + [e["version"] for e in switches[:-1]]
    assert registry.alias_version(client, name, "champion") == switches[-1]["version"]


def test_twelve_threads_promoting_at_once_keep_all_twelve_switches(model):
    client, name, _ = model
    versions = [str(v) for v in range(1, WRITERS + 1)]
    assert promote_all(client, name, versions) == []
    assert_chain(client, name, versions)
    # Rollback follows that chain back.
    before, last = registry.history(client, name)[-2:]
    assert registry.rollback(client, name)["version"] == before["version"] == last["previous"]


def test_hosts_that_share_no_lock_lose_no_switch(model, monkeypatch):
    # As against a tracking server: nothing serialises the writers, each switch is its own tag.
    # A SQLite store may still refuse a colliding alias write after every retry (a server's
    # database serialises it); such a promotion fails cleanly and records nothing, and no
    # switch that happened is lost.
    client, name, _ = model
    monkeypatch.setattr(registry, "_lock_path", lambda uri: None)
    versions = [str(v) for v in range(1, WRITERS + 1)]
    errors = promote_all(client, name, versions)
    assert all(isinstance(err, DlforgeError) for err in errors), errors
    assert len(errors) <= WRITERS // 4, errors  # retries resolve almost every collision
    switches = [e["version"] for e in registry.history(client, name)]
    assert len(switches) == len(set(switches)) == WRITERS - len(errors)
    assert set(switches) <= set(versions)
    assert registry.alias_version(client, name, "champion") in switches


@pytest.mark.slow  # four interpreters importing MLflow
def test_promote_processes_at_once_keep_every_switch(model):
    client, name, uri = model
    versions = ["1", "2", "3", "4"]
    processes = [subprocess.Popen([sys.executable, "-m", "dlforge", "models", "--tracking-uri",
                                   uri, "promote", name, version], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for version in versions]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        assert json.loads(out)["alias"] == "champion"
    assert_chain(client, name, versions)


def test_history_keeps_the_newest_switches_and_reads_the_older_list_tag(model, monkeypatch):
    client, name, _ = model
    legacy = [{"alias": "champion", "version": "1", "previous": None, "reason": "manual",
               "at": "2025-01-01T00:00:00+0000"}]
    client.set_registered_model_tag(name, registry.HISTORY, json.dumps(legacy))
    client.set_registered_model_alias(name, "champion", "1")
    registry.promote(client, name, "2")
    assert [e["version"] for e in registry.history(client, name)] == ["1", "2"]
    assert registry.rollback(client, name)["version"] == "1"  # from the older list's entry

    monkeypatch.setattr(registry, "KEEP", 3)
    for version in "3456":
        registry.promote(client, name, version)
    assert [e["version"] for e in registry.history(client, name)] == ["4", "5", "6"]
    tags = client.get_registered_model(name).tags
    assert len([k for k in tags if k.startswith(f"{registry.HISTORY}.")]) == 3


class Failing:
    """A client whose alias switch fails ``times`` times with ``error``, then works."""

    def __init__(self, client, error: Exception, times: int):
        self.client, self.error, self.times = client, error, times

    def set_registered_model_alias(self, *args):
        if self.times:
            self.times -= 1
            raise self.error
        return self.client.set_registered_model_alias(*args)

    def __getattr__(self, attr):
        return getattr(self.client, attr)


CONFLICT = IntegrityError("INSERT INTO registered_model_aliases ...", {}, Exception(
    "UNIQUE constraint failed: registered_model_aliases.name"))


@pytest.mark.parametrize("error", [
    MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed\n[SQL: INSERT ...]"),
    CONFLICT,
], ids=["mlflow", "sqlalchemy"])
def test_a_failing_switch_is_a_dlforge_error_naming_model_alias_version_and_fix(model, error,
                                                                              monkeypatch):
    client, name, _ = model
    waits = []
    monkeypatch.setattr(registry.time, "sleep", waits.append)  # the backoff, without waiting
    failing = Failing(client, error, times=registry.RETRIES)
    with pytest.raises(DlforgeError) as raised:
        registry.promote(failing, name, "3", alias="staging")
    message = str(raised.value)
    assert message.startswith(f"could not point {name}@staging at version 3: ")
    assert "UNIQUE constraint failed" in message and "[SQL" not in message
    assert f"Fix: retry `dlforge models promote {name} 3 --alias staging`" in message
    assert registry.history(client, name) == []  # nothing recorded for a failed switch
    assert len(waits) == registry.RETRIES - 1 and waits == sorted(waits)  # growing


def as_mlflow_raises(error: Exception) -> MlflowException:
    """``error`` as MLflow's SQL store raises it: a BAD_REQUEST from the database's error."""
    try:
        raise MlflowException(str(error), error_code=BAD_REQUEST) from error
    except MlflowException as raised:
        return raised


@pytest.mark.parametrize("error", [CONFLICT, as_mlflow_raises(CONFLICT)],
                         ids=["sqlalchemy", "mlflow"])
def test_a_transient_conflict_is_retried(model, error):
    client, name, _ = model
    registry.promote(Failing(client, error, times=2), name, "3")
    assert registry.alias_version(client, name, "champion") == "3"
    assert [e["version"] for e in registry.history(client, name)] == ["3"]


def test_a_refused_switch_is_not_retried(model):
    client, name, _ = model
    refused = MlflowException.invalid_parameter_value("alias name is reserved")
    failing = Failing(client, refused, times=2)
    with pytest.raises(DlforgeError, match="alias name is reserved"):
        registry.promote(failing, name, "3")
    assert failing.times == 1
    with pytest.raises(NotFound, match=f"model {name} has no version 99"):
        registry.promote(client, name, "99")
