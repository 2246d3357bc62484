"""The shared serving state: which feedback rewards the bandit, the rate limit per
version, pruning, and databases made by an earlier version."""

from __future__ import annotations

import sqlite3

import pytest

from dlforge.core.config import compose
from dlforge.serve import state as state_module
from dlforge.serve.state import FeedbackError, ServingState
from dlforge.stages.serve import server_settings


def answers(n: int, version: str = "1", routed: bool = True, prefix: str = "r") -> list:
    return [(f"{prefix}{i}", 0, "m", version, "a", routed) for i in range(n)]


def test_only_answers_the_bandit_routed_earn_rewards(tmp_path):
    state = ServingState(tmp_path / "state.db")
    state.record([("chosen", 0, "m", "1", "a", True), ("named", 0, "m", "2", "a", False)])
    assert state.feedback("chosen", "b")["rewarded"] is True
    named = state.feedback("named", "b")  # taken (monitoring reads it), not rewarded
    assert (named["reward"], named["rewarded"]) == (0.0, False)
    assert state.rewards("m") == {"1": (0.0, 1.0)}
    with pytest.raises(FeedbackError, match="already has feedback"):
        state.feedback("named", "a")


def test_answers_recorded_without_the_routed_flag_count_as_routed(tmp_path):
    state = ServingState(tmp_path / "state.db")
    state.record([("old-form", 0, "m", "1", "a")])
    assert state.feedback("old-form", "a")["rewarded"] is True


def test_rewards_per_version_are_limited_per_minute_across_connections(tmp_path):
    path = tmp_path / "state.db"
    ServingState(path).record(answers(30) + answers(3, version="2", prefix="s"))
    # two connections, as two HTTP processes have: the limit is in the database
    first, second = (ServingState(path, max_rewards_per_minute={"m": 5}) for _ in range(2))
    given = [(first if i % 2 else second).feedback(f"r{i}", "b") for i in range(20)]
    assert [g["rewarded"] for g in given] == [True] * 5 + [False] * 15
    assert first.rewards("m") == {"1": (0.0, 5.0)}
    assert all(first.feedback(f"s{i}", "a")["rewarded"] for i in range(3))  # per version
    with sqlite3.connect(path) as db:
        db.execute("UPDATE feedback SET time = time - 61")  # a minute later
    assert [first.feedback(f"r{i}", "b")["rewarded"] for i in range(20, 27)] == [True] * 5 + [
        False] * 2
    unlimited = ServingState(path, max_rewards_per_minute={"m": float("inf")})
    assert all(unlimited.feedback(f"r{i}", "b")["rewarded"] for i in range(27, 30))
    plan = sqlite3.connect(path).execute(
        "EXPLAIN QUERY PLAN SELECT count(*) FROM feedback WHERE model = 'm' AND version = '1' "
        "AND rewarded = 1 AND time > 0").fetchall()
    assert "feedback_rate" in str(plan)


def test_old_answers_and_feedback_are_pruned_in_batches_and_rewards_stay(tmp_path,
                                                                        monkeypatch):
    path = tmp_path / "state.db"
    state = ServingState(path, window_seconds=3600)
    state.record(answers(12) + answers(2, prefix="new"))
    for i in range(12):
        state.feedback(f"r{i}", "a")
    state.feedback("new0", "a")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE answers SET time = time - 7200 WHERE request_id LIKE 'r%'")
        db.execute("UPDATE feedback SET time = time - 7200 WHERE request_id LIKE 'r%'")
    monkeypatch.setattr(state_module, "PRUNE_BATCH", 5)
    assert state.forget_old() == 24
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == 2
        assert db.execute("SELECT request_id FROM feedback").fetchall() == [("new0",)]
        for table in ("answers", "feedback"):
            plan = db.execute(f"EXPLAIN QUERY PLAN SELECT request_id FROM {table} "
                              "WHERE time < 0 ORDER BY time LIMIT 5").fetchall()
            assert f"{table}_time" in str(plan)
    assert state.rewards("m") == {"1": (13.0, 0.0)}
    assert state.forget_old() == 0


def test_feedback_is_kept_at_least_a_minute_for_the_rate_limit(tmp_path):
    state = ServingState(tmp_path / "state.db", window_seconds=0,
                         max_rewards_per_minute={"m": 1})
    state.record(answers(2))
    state.feedback("r0", "a")
    state.forget_old()  # drops the answers, not the feedback of the last minute
    state.record(answers(2))
    assert state.feedback("r1", "a")["rewarded"] is False


def test_a_failing_follow_up_takes_the_feedback_back(tmp_path):
    state = ServingState(tmp_path / "state.db")
    state.record(answers(1))

    def full_disk(scored):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        state.feedback("r0", "a", then=full_disk)
    assert state.rewards("m") == {}
    logged = []
    assert state.feedback("r0", "a", then=logged.append)["rewarded"] is True
    assert logged[0]["request_id"] == "r0"


def test_a_database_of_an_earlier_version_is_upgraded(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE answers (request_id TEXT, idx INTEGER, model TEXT, version TEXT,
                label TEXT, time REAL, PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
            CREATE TABLE feedback (request_id TEXT, idx INTEGER, model TEXT, version TEXT,
                label TEXT, reward REAL, time REAL,
                PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
            CREATE TABLE rewards (model TEXT, version TEXT, wins REAL, losses REAL,
                PRIMARY KEY (model, version)) WITHOUT ROWID;
            INSERT INTO answers VALUES ('before', 0, 'm', '1', 'a', unixepoch());
            INSERT INTO feedback VALUES ('given', 0, 'm', '1', 'a', 1.0, unixepoch());
            INSERT INTO rewards VALUES ('m', '1', 1.0, 0.0);
        """)
    state = ServingState(path, max_rewards_per_minute={"m": 1})
    assert state.feedback("before", "a")["rewarded"] is False  # not known to be routed
    state.record(answers(1))
    assert state.feedback("r0", "a")["rewarded"] is False  # the old feedback counts
    assert state.rewards("m") == {"1": (1.0, 0.0)}
    ServingState(path).close()  # opening it again changes nothing


def test_from_settings_reads_each_models_limit(tmp_path):
    settings = server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "feedback_window_seconds=60", 
        "models={m: {strategy: bandit, max_rewards_per_minute: 2}, n: {strategy: blue_green}}",
        "default_model=m"]))
    state = ServingState.from_settings(settings)
    assert (state.window, state.limits) == (60, {"m": 2, "n": 600})
