"""Sweeps on a real PostgreSQL server (the ``postgres`` fixture, tests/services.py).

- workers claiming trials from several processes stop at exactly n_trials;
- two ``dlforge sweep`` processes share one study: n_trials exactly, no duplicates;
- a SIGKILLed worker's trial is failed by its stopped heartbeat and retried by a
  worker on another host;
- the heartbeat settings, a missing driver and an unreachable server give errors
  that name the hpo.* key.

"Another host": each sweep runs with ``socket.gethostname`` replaced (:data:`AS_HOST`
in a ``dlforge sweep`` process, monkeypatched in this one), the name the sweep
records as a trial's owner and compares to tell its own machine's killed workers
(seen at once, by pid) from other hosts' (seen only through their heartbeat).
The sweep that retries a killed host's trial runs the same command's config in
this process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.hpo import study as s
from dlforge.hpo.storage import close_storages
from dlforge.stages.config import stage_overrides
from dlforge.stages.sweep import sweep
from tests.helpers import ROOT, wait_for
from tests.services import free_port
from tests.sweeps import runs, stop_one_mid_training
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows

AS_HOST = ("import os, runpy, socket; socket.gethostname = lambda: os.environ["
           "'DLFORGE_TEST_HOST']; runpy.run_module('dlforge', run_name='__main__')")
QUICK_HEARTBEAT = ["hpo.heartbeat_interval=1", "hpo.grace_period=3"]
# Trials of a few seconds that cost about the same: only the learning rate is searched.
CHEAP = ["hpo.threads_per_worker=1", "hpo.overrides.trainer.max_epochs=2", "~hpo.space",
         "+hpo.space={optimizer.lr:{type:float,low:0.005,high:0.05,log:true}}"]
# A worker's claim loop without the training (count, ask, tell), as its own process.
CLAIMER = """
import json, sys, time
from dlforge.hpo import study as s
from dlforge.hpo.storage import close_storages
settings, n_trials = s.SweepSettings(**json.loads(sys.argv[1])), int(sys.argv[2])
study = s.open_study("claims", settings)
while True:
    with s.claim_lock(settings.storage, "claims"):
        if s.budget_used(study) >= n_trials:
            break
        trial = study.ask()
    time.sleep(0.01)  # the trial runs; meanwhile the others count it
    study.tell(trial, 0.0)
"""


def sweep_args(root: Path, mlflow_dir: Path, storage: str, *overrides: str) -> list[str]:
    return ["experiment=intent", f"paths.root={root}", f"paths.mlflow_dir={mlflow_dir}",
            "dataset.name=toy", f"tracking.experiment=sweep-pg-{root.name}", *FAST,
            *SMALL_MODEL, "hpo/sampler=random", "hpo/pruner=none", "hpo.n_workers=1",
            "~callbacks.early_stopping", f"hpo.storage={storage}", *QUICK_HEARTBEAT,
            *CHEAP, *overrides]


def start_sweep(root: Path, mlflow_dir: Path, storage: str, host: str,
                *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", AS_HOST, "sweep",
                             *sweep_args(root, mlflow_dir, storage, *overrides)], cwd=ROOT,
                            env={**os.environ, "DLFORGE_TEST_HOST": host},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sweep_here(monkeypatch, host: str, root: Path, mlflow_dir: Path, storage: str,
               *overrides: str) -> dict:
    """Run what ``dlforge sweep`` with these overrides runs in ROOT, in this process,
    on a machine named ``host``; return its summary."""
    monkeypatch.chdir(ROOT)  # params.yaml's values, as the command reads them
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    args = sweep_args(root, mlflow_dir, storage, *overrides)
    return sweep(compose("sweep", stage_overrides("sweep", args)))


@pytest.fixture(autouse=True, scope="module")
def _close_connections():
    """The server stops (at the session's end) only when no client is left."""
    yield
    close_storages()


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = s.open_storage(url)
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return []
    return optuna.load_study(study_name=summaries[0].study_name, storage=storage).get_trials()


def finish(*processes: subprocess.Popen) -> list[str]:
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        errors.append(err)
    return errors


def settings(*overrides: str) -> s.SweepSettings:
    return s.SweepSettings.from_config(compose("sweep", ["experiment=intent", *overrides]).hpo,
                                       "hpo")


def test_claims_from_many_processes_stop_at_exactly_n_trials(postgres):
    config = s.SweepSettings(**{**settings().as_dict(), "storage": postgres.database()})
    s.open_study("claims", config)
    workers = [subprocess.Popen([sys.executable, "-c", CLAIMER, json.dumps(config.as_dict()),
                                 "40"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    finish(*workers)
    found = trials(config.storage)
    assert len(found) == 40 and {t.state for t in found} == {TrialState.COMPLETE}


@pytest.mark.slow
def test_sweep_processes_on_one_postgres_study_reach_n_trials_exactly(postgres, tmp_path,
                                                                       mlflow_dir):
    make_snapshot(tmp_path, toy_rows(600))
    storage = postgres.database()
    sweeps = [start_sweep(tmp_path, mlflow_dir, storage, f"host-{i}", "hpo.n_trials=4")
              for i in range(2)]
    finish(*sweeps)
    found = trials(storage)
    errors = {t.number: t.user_attrs.get(s.ERROR) for t in found}
    assert [t.state for t in found] == [TrialState.COMPLETE] * 4, errors  # none lost or extra
    assert {t.user_attrs["dlforge.host"] for t in found} == {"host-0", "host-1"}
    assert len({t.user_attrs["dlforge.dir"] for t in found}) == 4
    children = [r for r in runs(mlflow_dir, f"sweep-pg-{tmp_path.name}")
                if "dlforge.trial" in r.data.tags]
    # One MLflow run per trial, all under the one parent run both sweeps share.
    assert sorted(int(r.data.tags["dlforge.trial"]) for r in children) == [0, 1, 2, 3]
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1


@pytest.mark.slow
def test_a_sigkilled_workers_trial_is_retried_by_a_worker_on_another_host(postgres, tmp_path,
                                                                           mlflow_dir, caplog,
                                                                           monkeypatch):
    make_snapshot(tmp_path, toy_rows(600))
    storage = postgres.database()
    doomed = start_sweep(tmp_path, mlflow_dir, storage, "host-a", "hpo.n_trials=1")

    def on_host_a():
        return [t for t in trials(storage) if t.user_attrs.get("dlforge.host") == "host-a"]

    killed = wait_for(lambda: stop_one_mid_training(on_host_a(), mlflow_dir), doomed)
    os.kill(doomed.pid, signal.SIGKILL)  # its host is gone: no pid to look at from host-b
    doomed.wait()
    # The study is full while host-a's trial runs: host-b waits for it to go stale
    # rather than leave, then trains it again.
    with caplog.at_level(logging.INFO, logger="dlforge"):
        sweep_here(monkeypatch, "host-b", tmp_path, mlflow_dir, storage, "hpo.n_trials=1")

    assert f"trial {killed.number} went stale" in caplog.text
    assert "was interrupted" not in caplog.text
    after = {t.number: t for t in trials(storage)}
    assert after[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in after.values() if t.user_attrs.get("dlforge.retry_of") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["dlforge.host"] == "host-b"
    # n_trials finished trials exactly; the lost one does not count.
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 1
    assert len(after) == 2
    killed_runs = [r for r in runs(mlflow_dir, f"sweep-pg-{tmp_path.name}")
                   if r.data.tags.get("dlforge.trial") == str(killed.number)]
    # Killed in the middle of training: its run is KILLED and carries the study's verdict.
    assert [(r.info.status, r.data.tags["dlforge.trial_state"]) for r in killed_runs] == [
        ("KILLED", "FAIL")]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_a_stale_trial_stops_counting_and_is_queued_again(postgres):
    config = s.SweepSettings(**{**settings(*QUICK_HEARTBEAT).as_dict(),
                                "storage": postgres.database()})
    study = s.open_study("stale", config)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage = s.study_storage(config)
    storage.record_heartbeat(trial._trial_id)  # then its worker dies
    assert s.budget_used(study) == 1 and s.fail_stale(study) == []
    time.sleep(config.grace_period + 1.5)
    with s.claim_lock(config.storage, "stale"):
        (failed,) = s.fail_stale(study)
    assert failed.number == trial.number
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == trial.params and retry.user_attrs == {"dlforge.retry_of": trial.number}
    assert s.budget_used(study) == 0


def test_heartbeat_settings_default_to_a_minute_and_two():
    config = settings()
    assert (config.heartbeat_interval, config.grace_period) == (60, 120)
    assert not config.heartbeats  # a journal file has none
    assert s.SweepSettings(**{**config.as_dict(), "storage": "postgresql://db/x"}).heartbeats
    assert not settings("hpo.heartbeat_interval=null", "hpo.storage=sqlite:///x.db").heartbeats


@pytest.mark.parametrize(("overrides", "words"), [
    (["hpo.heartbeat_interval=0"], "hpo.heartbeat_interval=0 .*: expected a value >= 1"),
    (["hpo.heartbeat_interval=0.5"], "hpo.heartbeat_interval=0.5 .*: expected a whole number"),
    (["hpo.grace_period=60"], "hpo.grace_period=60 .*between two heartbeats.*Fix: set it to "
                              "at least twice hpo.heartbeat_interval"),
    (["hpo.grace_period=-1"], "hpo.grace_period=-1 .*: expected a value >= 1"),
])
def test_bad_heartbeat_settings_name_the_hpo_key(overrides, words):
    with pytest.raises(DlforgeError, match=words):
        settings(*overrides)


def test_a_missing_driver_names_hpo_storage_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2: ImportError
    url = f"postgresql://sweeper:s3cret@127.0.0.1:{free_port()}/optuna"
    with pytest.raises(DlforgeError) as raised:
        s.open_storage(url)
    message = str(raised.value)
    assert message.startswith("hpo.storage=postgresql://sweeper:***@127.0.0.1")
    assert "pip install 'dlforge[postgres]'" in message and "s3cret" not in message


def test_an_unreachable_server_fails_the_sweep_naming_hpo_storage(sweep_cfg):
    url = f"postgresql://sweeper:s3cret@127.0.0.1:{free_port()}/optuna"  # nothing listens
    started = time.monotonic()
    with pytest.raises(DlforgeError) as raised:
        sweep(sweep_cfg(f"hpo.storage={url}"))
    message = str(raised.value)
    assert message.startswith("hpo.storage=postgresql://sweeper:***@127.0.0.1")
    assert "cannot open the study's database" in message and "Connection refused" in message
    assert "check that the database server is running" in message and "s3cret" not in message
    assert time.monotonic() - started < 30
