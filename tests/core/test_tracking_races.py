"""Runs that start together on one store: sweep workers, parallel jobs, hosts.

MLflow creates an experiment, and stores a run's dataset input, by looking it up
and then inserting it: processes that look at the same moment all miss it, and
all inserts but one fail on the key. Each process here starts on a barrier, so
they do look at the same moment, on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

PROCESSES, SNAPSHOTS = 6, 8


def start_together(uri: str, folder: str, barrier) -> None:
    """One process: create the experiment, then a run per snapshot version, each
    recording the same snapshot input as the other processes at the same moment."""
    from dlforge.core.tracking import setup_mlflow
    from dlforge.train.tracking import log_snapshot_input

    tracking = OmegaConf.create({"tracking_uri": uri, "experiment": "together",
                                 "artifact_location": f"{folder}/artifacts"})
    try:
        barrier.wait()
        experiment_id = setup_mlflow(tracking)
        client = mlflow.MlflowClient()
        for version in range(SNAPSHOTS):
            run = client.create_run(experiment_id)
            manifest = {"dataset": "toy", "version": f"v{version}", "counts": {"train": 10}}
            barrier.wait()
            with mlflow.start_run(run_id=run.info.run_id):
                log_snapshot_input(manifest, Path(folder))
    except threading.BrokenBarrierError:
        return  # another process failed: its error is the one to report
    except BaseException:
        barrier.abort()  # the others stop waiting for this one
        raise


@pytest.fixture(scope="module")
def together():
    """(manager, pool): a barrier maker and PROCESSES spawned workers, shared by the
    stores (each spawn imports MLflow; the race is in the calls, not in the imports)."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        yield manager, pool


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlflow.db"
    return request.getfixturevalue("postgres").database()


@pytest.mark.slow
def test_runs_starting_together_share_one_experiment_and_one_dataset_per_snapshot(
        store_uri, tmp_path, together):
    manager, pool = together
    # Each task waits on the barrier, so each of the PROCESSES workers takes one.
    barrier = manager.Barrier(PROCESSES, timeout=120)
    results = [pool.apply_async(start_together, (store_uri, str(tmp_path), barrier))
               for _ in range(PROCESSES)]
    for result in results:
        result.get(timeout=300)  # re-raises a process's error

    client = mlflow.MlflowClient(tracking_uri=store_uri)
    experiment = client.get_experiment_by_name("together")
    assert experiment is not None
    assert len(client.search_experiments(filter_string="name = 'together'")) == 1
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == PROCESSES * SNAPSHOTS
    names = sorted(r.inputs.dataset_inputs[0].dataset.name for r in runs)
    assert names == sorted(f"toy@v{v}" for v in range(SNAPSHOTS) for _ in range(PROCESSES))


def test_a_process_that_loses_the_race_to_create_the_experiment_uses_the_winners(
        tmp_path, monkeypatch):
    from dlforge.core.tracking import setup_mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = OmegaConf.create({"tracking_uri": uri, "experiment": "together",
                                 "artifact_location": f"{tmp_path}/artifacts"})
    winner = setup_mlflow(tracking)
    # This process looked before the winner created it, and creates it too.
    looks, lookup = [], mlflow.get_experiment_by_name

    def late_lookup(name: str):
        looks.append(name)
        return None if len(looks) == 1 else lookup(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", late_lookup)
    assert setup_mlflow(tracking) == winner

    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda name: None)
    with pytest.raises(mlflow.exceptions.MlflowException):  # a real error is not hidden
        setup_mlflow(tracking)
