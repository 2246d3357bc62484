"""$MLFLOW_TRACKING_URI is the default tracking store; an explicit tracking_uri wins."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3

import mlflow
import pytest
from omegaconf import OmegaConf

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import ENV_TRACKING_URI, Tag, setup_mlflow, setup_tracking_uri


def train_config(tmp_path, *overrides: str):
    return compose("train", ["experiment=intent", f"paths.root={tmp_path}",
                             f"tracking.experiment=env-{tmp_path.name}", *overrides])


def test_the_environment_variable_is_the_default_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/env/mlflow.db"
    monkeypatch.setenv(ENV_TRACKING_URI, uri)
    cfg = train_config(tmp_path)
    assert cfg.tracking.tracking_uri == uri
    assert compose("runs").tracking.tracking_uri == uri  # dlforge runs/models/lineage/predict
    assert compose("serve").tracking.tracking_uri == uri

    experiment_id = setup_mlflow(cfg.tracking)
    run = mlflow.MlflowClient().create_run(experiment_id)
    mlflow.MlflowClient().set_terminated(run.info.run_id)
    client = mlflow.MlflowClient(tracking_uri=uri)  # a plain MLflow client finds it there
    found = client.get_experiment_by_name(cfg.tracking.experiment)
    assert found is not None and found.experiment_id == experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run.info.run_id]
    assert not (tmp_path / "mlruns/mlflow.db").exists()  # the config's own file is not made


def test_the_cli_without_tracking_uri_reads_the_environment_store(tmp_path, monkeypatch,
                                                                   capsys):
    from dlforge.cli import main

    uri = f"sqlite:///{tmp_path}/cli.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    setup_tracking_uri(OmegaConf.create({"tracking_uri": uri}))
    run = client.create_run(client.create_experiment("from-env"), tags={Tag.STAGE: "train"})
    # In this process MLflow points elsewhere: only the variable leads the command to uri.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/other.db")  # made only if used
    monkeypatch.setenv(ENV_TRACKING_URI, uri)
    monkeypatch.chdir(tmp_path)  # a default of the configs' would be a store of its own
    capsys.readouterr()
    assert main(["runs", "list", "--json"]) == 0  # the command, in process (no imports to pay)
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [run.info.run_id]


def test_an_explicit_tracking_uri_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_TRACKING_URI, f"sqlite:///{tmp_path}/env.db")
    explicit = f"sqlite:///{tmp_path}/explicit.db"
    cfg = train_config(tmp_path, f"tracking.tracking_uri={explicit}")
    assert cfg.tracking.tracking_uri == explicit
    setup_mlflow(cfg.tracking)
    assert (tmp_path / "explicit.db").is_file() and not (tmp_path / "env.db").exists()
    assert mlflow.MlflowClient(tracking_uri=explicit).get_experiment_by_name(
        cfg.tracking.experiment) is not None


def test_without_the_variable_the_default_is_the_projects_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_TRACKING_URI, raising=False)
    cfg = train_config(tmp_path)
    assert cfg.tracking.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"


def test_a_relative_sqlite_uri_in_the_environment_resolves_like_the_configs(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv(ENV_TRACKING_URI, "sqlite:///rel/mlflow.db")
    cfg = train_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    setup_tracking_uri(cfg.tracking)
    assert (tmp_path / "rel/mlflow.db").is_file()
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/rel/mlflow.db"


def test_an_empty_variable_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_TRACKING_URI, "")
    with pytest.raises(DlforgeError, match="tracking.tracking_uri is empty.*MLFLOW_TRACKING_URI"):
        setup_tracking_uri(train_config(tmp_path).tracking)


def test_pointing_mlflow_at_a_store_leaves_the_variable_as_the_user_set_it(tmp_path,
                                                                           monkeypatch):
    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{tmp_path}/a.db"}))
    assert "MLFLOW_TRACKING_URI" not in os.environ  # a later composition keeps its default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/user.db")
    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{tmp_path}/b.db"}))
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/user.db"


def test_a_new_sqlite_store_starts_as_a_copy_of_the_empty_one_in_the_cache(tmp_path,
                                                                          monkeypatch):
    """A new store is MLflow's empty schema, copied: MLflow's Default experiment is the
    copy's own; a store already there is never replaced; without a usable cache MLflow
    creates the tables itself."""
    from dlforge.core import tracking
    from dlforge.core.io import CACHE_VARIABLE

    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    stores = {}
    for name in ("first", "second"):  # each made in its own folder: its artifact root
        stores[name] = tmp_path / name / "mlflow.db"
        stores[name].parent.mkdir()
        monkeypatch.chdir(stores[name].parent)
        setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{stores[name]}"}))
    (template,) = (tmp_path / "cache" / "mlflow").glob("empty-*.db")
    for path in stores.values():
        client = mlflow.MlflowClient(f"sqlite:///{path}")
        (default,) = client.search_experiments()
        assert default.name == "Default"
        assert default.artifact_location == str(path.parent / "mlruns" / "0")
        assert client.create_experiment(f"in-{path.parent.name}") == "1"
    with contextlib.closing(sqlite3.connect(template)) as db:  # the copies' are theirs
        assert db.execute("SELECT name FROM experiments").fetchall() == [("Default",)]

    # A store that exists (made by MLflow, or another process) is opened, never copied over.
    kept = stores["first"].read_bytes()
    tracking._CREATED.clear()  # noqa: SLF001 - as a new process
    tracking._copy_empty_store(stores["first"])  # noqa: SLF001
    assert stores["first"].read_bytes() == kept
    # A cache folder that cannot be written: MLflow creates the store as before.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv(CACHE_VARIABLE, str(blocked))
    third = tmp_path / "third" / "mlflow.db"
    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{third}"}))
    assert [e.name for e in mlflow.MlflowClient(f"sqlite:///{third}").search_experiments()
            ] == ["Default"]
