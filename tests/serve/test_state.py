"""The shared serving state: which feedback rewards the bandit, the rate limit per
version, pruning by age and by size (each in the SQLite file and in PostgreSQL), and
databases made by an earlier version. PostgreSQL's own cases:
tests/serve/test_state_postgres.py."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dlforge.core.config import compose
from dlforge.serve import state as state_module
from dlforge.serve.state import FeedbackError, ServingState
from dlforge.serve.statedb import ROW_OVERHEAD
from dlforge.stages.serve import server_settings


def answers(n: int, version: str = "1", routed: bool = True, prefix: str = "r") -> list:
    return [(f"{prefix}{i}", 0, "m", version, "a", routed) for i in range(n)]


class SQLiteFile:
    """The state's SQLite file: ``url``, and ``sql``/``plan`` to look inside (or age
    rows) behind the state's back, as :class:`PostgresDatabase` does."""

    requests = 150  # of 256 answers in the size tests: twice what BOUND holds

    def __init__(self, folder: Path):
        self.url = folder / "state.db"

    def sql(self, statement: str) -> str:
        with contextlib.closing(sqlite3.connect(self.url)) as db, db:
            rows = db.execute(statement).fetchall()
        return "\n".join("|".join(map(str, row)) for row in rows)

    def plan(self, query: str) -> str:
        return self.sql(f"EXPLAIN QUERY PLAN {query}")

    def size(self) -> int:
        """Bytes on disk: the file and its WAL."""
        wal = self.url.with_name(f"{self.url.name}-wal")
        return self.url.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def vacuum(self) -> None:
        """Nothing: SQLite reuses the pages of deleted rows at once."""

    bounded = size  # what state_max_bytes holds: all of it


class PostgresDatabase:
    """A fresh database of the session's PostgreSQL server (``state_url``)."""

    requests = 80  # of 256 answers in the size tests: twice what BOUND holds

    def __init__(self, postgres):
        self.url, self._postgres = postgres.database("state"), postgres
        self.name = self.url.rsplit("/", 1)[1]

    def sql(self, statement: str) -> str:
        return self._postgres.psql(statement, database=self.name).strip()

    def cut_off(self, off: bool = True) -> None:
        """End every connection to the database and refuse new ones (``off=False``:
        take them again), as a server that is down does."""
        self._postgres.psql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS {not off}")
        if off:
            self._postgres.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                f"WHERE datname = '{self.name}'")

    def plan(self, query: str) -> str:
        """The plan of ``query`` when an index can be used at all (the tables are small)."""
        return self.sql(f"SET enable_seqscan = off; EXPLAIN {query}")

    def size(self) -> int:
        """Bytes on disk of the answers: the table, its indexes and their dead rows."""
        return self._query("SELECT pg_total_relation_size('answers')")[0][0]

    def vacuum(self) -> None:
        """What autovacuum does: the space of deleted rows may be used again."""
        self._query("VACUUM answers")

    def bounded(self) -> int:
        """What state_max_bytes holds: the answers' rows and ROW_OVERHEAD each (their
        dead rows wait for autovacuum, which writers at once can outrun)."""
        return self._query(f"SELECT coalesce(sum(pg_column_size(a.*)), 0) + count(*) * "
                           f"{ROW_OVERHEAD} FROM answers a")[0][0]

    def _query(self, statement: str) -> list[tuple]:
        """``statement`` on a connection of its own (faster than psql, for loops)."""
        import psycopg2

        if not hasattr(self, "_connection"):
            self._connection = psycopg2.connect(self.url)
            self._connection.autocommit = True
        with self._connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The state's database in each engine: the guarantees below hold in both."""
    if request.param == "sqlite":
        return SQLiteFile(tmp_path)
    return PostgresDatabase(request.getfixturevalue("postgres"))


def test_only_answers_the_bandit_routed_earn_rewards(db):
    state = ServingState(db.url)
    state.record([("chosen", 0, "m", "1", "a", True), ("named", 0, "m", "2", "a", False)])
    assert state.feedback("chosen", "b")["rewarded"] is True
    named = state.feedback("named", "b")  # taken (monitoring reads it), not rewarded
    assert (named["reward"], named["rewarded"]) == (0.0, False)
    assert state.rewards("m") == {"1": (0.0, 1.0)}
    with pytest.raises(FeedbackError, match="already has feedback") as refused:
        state.feedback("named", "a")
    assert refused.value.status == 409
    with pytest.raises(FeedbackError, match="has no input 3 \\(it had 1"):
        state.feedback("chosen", "a", index=3)


def test_rewards_per_version_are_limited_per_minute_across_connections(db):
    ServingState(db.url).record(answers(30) + answers(3, version="2", prefix="s"))
    # two connections, as two HTTP processes or two replicas have: the limit is in the database
    first, second = (ServingState(db.url, max_rewards_per_minute={"m": 5}) for _ in range(2))
    given = [(first if i % 2 else second).feedback(f"r{i}", "b") for i in range(20)]
    assert [g["rewarded"] for g in given] == [True] * 5 + [False] * 15
    assert first.rewards("m") == second.rewards("m") == {"1": (0.0, 5.0)}
    assert all(first.feedback(f"s{i}", "a")["rewarded"] for i in range(3))  # per version
    db.sql("UPDATE feedback SET time = time - 61")  # a minute later
    assert [first.feedback(f"r{i}", "b")["rewarded"] for i in range(20, 27)] == [True] * 5 + [
        False] * 2
    unlimited = ServingState(db.url, max_rewards_per_minute={"m": float("inf")})
    assert all(unlimited.feedback(f"r{i}", "b")["rewarded"] for i in range(27, 30))
    assert "feedback_rate" in db.plan("SELECT count(*) FROM feedback WHERE model = 'm' AND "
                                      "version = '1' AND rewarded = 1 AND time > 0")


def test_old_answers_and_feedback_are_pruned_in_batches_and_rewards_stay(db, monkeypatch):
    state = ServingState(db.url, window_seconds=3600)
    state.record(answers(12) + answers(2, prefix="new"))
    for i in range(12):
        state.feedback(f"r{i}", "a")
    state.feedback("new0", "a")
    for table in ("answers", "feedback"):
        db.sql(f"UPDATE {table} SET time = time - 7200 WHERE request_id LIKE 'r%'")
    monkeypatch.setattr(state_module, "PRUNE_BATCH", 5)
    assert state.forget_old() == 24
    assert db.sql("SELECT count(*) FROM answers") == "2"
    assert db.sql("SELECT request_id FROM feedback") == "new0"
    for table in ("answers", "feedback"):
        plan = db.plan(f"SELECT request_id FROM {table} WHERE time < 0 ORDER BY time LIMIT 5")
        assert f"{table}_time" in plan
    assert state.rewards("m") == {"1": (13.0, 0.0)}
    assert state.forget_old() == 0
    with pytest.raises(FeedbackError, match="in the last 3600 s"):
        state.feedback("r0", "a")


BOUND = 2 * 2**20  # state_max_bytes of the size tests: 20,000 answers in SQLite, 9,000 in PG


def request(n: int) -> list:
    """The answers to request ``q<n>`` of 256 inputs (the most a request has)."""
    return [(f"q{n}", i, "m", "1", "weather_query", True) for i in range(256)]


def test_the_state_stays_under_state_max_bytes_dropping_the_oldest_answers(db, caplog):
    state = ServingState(db.url, max_bytes=BOUND)
    state.record(answers(1, prefix="given"))
    state.feedback("given0", "a")
    sizes = []
    with caplog.at_level(logging.WARNING, logger="dlforge.serve.state"):
        for n in range(db.requests):
            state.record(request(n))
            if n % 5 == 4:
                db.vacuum()  # PostgreSQL: as autovacuum does, now and then
            sizes.append(db.size())  # on disk
    assert max(sizes) <= BOUND
    kept = {int(r[1:]) for r in db.sql("SELECT DISTINCT request_id FROM answers").split()}
    assert kept == set(range(min(kept), db.requests)) and len(kept) >= 30  # the newest
    last = f"q{db.requests - 1}"
    assert state.feedback(last, "b", index=255)["reward"] == 0.0
    with pytest.raises(FeedbackError, match="no answer with request_id 'q0' in the last "
                                            "86400 s .*state_max_bytes") as dropped:
        state.feedback("q0", "a")  # as for an expired answer
    assert dropped.value.status == 404
    assert db.sql("SELECT request_id FROM feedback ORDER BY request_id") == f"given0\n{last}"
    assert state.rewards("m") == {"1": (1.0, 1.0)}
    said = [r.getMessage() for r in caplog.records if "state_max_bytes=2097152" in r.getMessage()]
    assert len(said) == 1 and "the oldest answers are dropped" in said[0]


def test_writers_at_once_keep_the_bound_and_the_newest_answers(db):
    """Four connections, as four processes or replicas, each recording its requests."""
    states = [ServingState(db.url, max_bytes=BOUND) for _ in range(4)]
    done, sizes = threading.Event(), []

    def write(k: int) -> None:
        for n in range(k, db.requests, 4):
            states[k].record(request(n))

    with ThreadPoolExecutor(4) as pool:
        writers = [pool.submit(write, k) for k in range(4)]
        while not all(w.done() for w in writers):
            sizes.append(db.bounded())
            done.wait(0.02)  # a sample every 20 ms while they write
        for w in writers:
            w.result()
    states[3].record(request(db.requests))  # the newest of all
    # PostgreSQL takes the writers' inserts at once: what they commit while one of them
    # prunes comes on top, up to a request each (SQLite takes one writer at a time)
    per_answer = db.bounded() / int(db.sql("SELECT count(*) FROM answers"))
    slack = 0 if isinstance(db, SQLiteFile) else len(states) * 256 * per_answer
    assert max([*sizes, db.bounded()]) <= BOUND + slack
    kept = {int(r[1:]) for r in db.sql("SELECT DISTINCT request_id FROM answers").split()}
    assert db.requests in kept and not kept & {0, 1, 2, 3} and len(kept) >= 30
    assert states[0].feedback(f"q{db.requests}", "weather_query", index=255)["reward"] == 1.0


def test_a_file_over_the_bound_is_pruned_and_compacted_when_opened(tmp_path, caplog):
    path = tmp_path / "state.db"
    large = ServingState(path, max_bytes=4 * BOUND)
    for n in range(SQLiteFile.requests):
        large.record(request(n))
    large.close()
    assert path.stat().st_size > BOUND
    with caplog.at_level(logging.WARNING, logger="dlforge.serve.state"):
        ServingState(path, max_bytes=BOUND).close()  # state_max_bytes lowered
    assert SQLiteFile(tmp_path).size() <= BOUND
    assert "compacted the serving state" in caplog.text
    with contextlib.closing(sqlite3.connect(path)) as db:
        newest = f"SELECT count(*) FROM answers WHERE request_id = 'q{SQLiteFile.requests - 1}'"
        assert db.execute(newest).fetchone()[0] == 256


def test_feedback_is_kept_at_least_a_minute_for_the_rate_limit(db):
    state = ServingState(db.url, window_seconds=0, max_rewards_per_minute={"m": 1})
    state.record(answers(2))
    state.feedback("r0", "a")
    state.forget_old()  # drops the answers, not the feedback of the last minute
    state.record(answers(2))
    assert state.feedback("r1", "a")["rewarded"] is False


def test_a_failing_follow_up_takes_the_feedback_back(db):
    state = ServingState(db.url)
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
        "default_model=m", f"state_max_bytes={BOUND}"]))
    state = ServingState.from_settings(settings)
    assert (state.window, state.limits, state.max_bytes) == (60, {"m": 2, "n": 600}, BOUND)
