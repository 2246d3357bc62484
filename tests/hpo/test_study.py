"""Study plumbing: every shipped sampler and pruner, the budget, interrupted trials."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from dlforge.core.config import PACKAGED_CONF, compose
from dlforge.core.errors import DlforgeError
from dlforge.hpo import study as s
from dlforge.hpo.space import parse_space

CONF = PACKAGED_CONF / "hpo"
STEPPED = {"optimizer.lr": {"type": "float", "low": 0.001, "high": 0.004, "step": 0.001},
           "model.net.hidden_dim": {"type": "categorical", "choices": [64, 128]}}


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "sampler").glob("*.yaml")))
def test_every_shipped_sampler_drives_an_ask_and_tell_study(name):
    cfg = compose("sweep", ["experiment=intent", f"hpo/sampler={name}"])
    params = parse_space(STEPPED, cfg)
    sampler = s.build_sampler(cfg.hpo.sampler, params, seed_offset=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    seen = []
    for _ in range(s.grid_size(params) if name == "grid" else 6):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        study.tell(trial, values["optimizer.lr"] * 100 + values["model.net.hidden_dim"] / 1000)
        seen.append(tuple(values.values()))
    assert all(0.001 <= lr <= 0.004 and dim in (64, 128) for lr, dim in seen)
    if name == "grid":  # every combination exactly once
        assert len(set(seen)) == len(seen) == 8


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "pruner").glob("*.yaml")))
def test_every_shipped_pruner_builds(name):
    cfg = compose("sweep", ["experiment=intent", f"hpo/pruner={name}"])
    assert isinstance(instantiate(cfg.hpo.pruner), optuna.pruners.BasePruner)


def test_two_workers_with_one_seed_propose_different_parameters():
    cfg = compose("sweep", ["experiment=intent", "hpo/sampler=random"])
    params = parse_space(OmegaConf.to_container(cfg.hpo.space), cfg)
    first, second = (optuna.create_study(sampler=s.build_sampler(cfg.hpo.sampler, params, k))
                     .ask().suggest_float("x", 0, 1) for k in (0, 7919))
    assert first != second


def test_budget_and_interrupted_trials(tmp_path):
    storage = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name="t", storage=s.open_storage(storage))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    dead = study.ask()  # a worker that was killed
    dead.set_user_attr(s.HOST, socket.gethostname())
    dead.set_user_attr(s.PID, 2**22 + 12345)  # above pid_max on Linux: never alive
    alive = study.ask()
    alive.set_user_attr(s.HOST, socket.gethostname())
    alive.set_user_attr(s.PID, os.getpid())
    orphan = study.ask()  # killed between ask and recording its owner
    half = study.ask()  # killed between recording its host and its pid
    half.set_user_attr(s.HOST, socket.gethostname())
    elsewhere = study.ask()
    elsewhere.set_user_attr(s.HOST, "another-machine")
    elsewhere.set_user_attr(s.PID, 1)
    assert s.budget_used(study) == 6
    # Without a lock every worker shares, a trial whose owner is not all recorded may be
    # another worker's, claiming it now.
    assert [t.number for t in s.interrupted_trials(study, "mysql://db/optuna")] == [
        dead.number]
    found = s.interrupted_trials(study, storage)
    assert sorted(t.number for t in found) == [dead.number, orphan.number, half.number]
    for trial in found:
        s.mark_failed(study, trial, "killed")
    # Interrupted trials do not count: their parameters are queued again.
    assert s.budget_used(study) == 3
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == states[orphan.number] == states[half.number] == TrialState.FAIL
    assert sum(st == TrialState.WAITING for st in states.values()) == 3
    # Over RDB storage (several machines) an ownerless trial may be another's.
    assert [t.number for t in s.interrupted_trials(study, "sqlite:///x.db")] == []


def test_storage_urls_are_redacted_in_logs_and_tags():
    assert s.redact("postgresql://user:secret@db:5432/optuna") == \
        "postgresql://user:***@db:5432/optuna"
    assert s.redact("/tmp/study.journal") == "/tmp/study.journal"


def test_separately_started_sweeps_on_an_rdb_seed_their_samplers_apart(monkeypatch):
    from dlforge.hpo import worker

    assert worker._seed_offset(1, 3, "/tmp/study.journal") == 7919 + 3  # local: reproducible
    monkeypatch.setattr(worker.os, "getpid", lambda: 100)
    first = worker._seed_offset(0, 3, "postgresql://db/optuna")
    monkeypatch.setattr(worker.os, "getpid", lambda: 101)
    assert worker._seed_offset(0, 3, "postgresql://db/optuna") != first


def test_sweep_settings_survive_the_frozen_sweep_file():
    settings = s.SweepSettings.from_config(compose("sweep", ["experiment=intent"]).hpo, "hpo")
    assert s.SweepSettings(**settings.as_dict()) == settings  # how a worker rebuilds them


@pytest.mark.parametrize(("override", "words"), [
    ("hpo.direction=up", "hpo.direction='up' .*: expected one of maximize, minimize"),
    ("hpo.metric=train/acc", "hpo.metric='train/acc' .*validation metric"),
    ("hpo.n_trials=1.5", "hpo.n_trials=1.5 .*: expected a whole number"),
    ("hpo.n_workers=0", "hpo.n_workers=0 .*: expected a value >= 1"),
    ("hpo.timeout=0", "hpo.timeout=0 .*: expected a value > 0"),
    ("hpo.threads_per_worker=0", "hpo.threads_per_worker=0 .*: expected a value >= 1"),
])
def test_bad_sweep_settings_name_the_hpo_key(override, words):
    with pytest.raises(DlforgeError, match=words):
        s.SweepSettings.from_config(compose("sweep", ["experiment=intent", override]).hpo,
                                    "hpo")


# A journal writer that dies while it holds the journal's write lock.
HOLD_THE_JOURNAL = """
import sys, time
from pathlib import Path
from dlforge.hpo.storage import journal_lock
journal_lock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_sweep_killed_while_writing_its_journal_holds_up_no_other(tmp_path):
    journal = tmp_path / "study.journal"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_JOURNAL, str(journal)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    study = optuna.create_study(study_name="after", storage=s.open_storage(str(journal)))
    study.tell(study.ask(), 1.0)
    assert time.monotonic() - started < 10  # not Optuna's 30 s before a stale lock is freed
    assert [t.value for t in study.get_trials()] == [1.0]
