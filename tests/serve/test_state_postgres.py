"""The serving state in PostgreSQL (``state_url``), beyond the guarantees both engines
keep (tests/serve/test_state.py): replicas, processes and threads sharing it, a
server that restarts or goes away, and a database that cannot be reached named at
the start."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.serve.routes import Routes
from dlforge.serve.server import build_server
from dlforge.serve.state import FeedbackError, ServingState, StateUnavailable
from dlforge.stages.serve import server_settings
from tests.serve.test_state import PostgresDatabase, answers
from tests.services import free_port


@pytest.fixture
def db(postgres) -> PostgresDatabase:
    return PostgresDatabase(postgres)


def test_replicas_opening_a_new_database_together_do_not_race(db):
    def open_and_close(_) -> None:
        ServingState(db.url).close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(open_and_close, range(6)))
    assert db.sql("SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                  "('answers', 'feedback', 'rewards', 'workers')") == "4"


def test_each_replica_lists_and_clears_only_its_own_workers(db):
    a, b = (ServingState(db.url, server=name) for name in ("host-a:8000", "host-b:8000"))
    a.report_worker("cpu/7", 7, "cpu", [("m", "1")], {"m": {"champion": "1"}})
    b.report_worker("cpu/7", 7, "cpu", [("m", "2")], {})  # the same pid in another container
    a.report_worker("cpu/7", 7, "cpu", [("m", "1"), ("m", "2")], {})
    assert [w["loaded"] for w in a.workers()] == [[{"model": "m", "version": "1"},
                                                   {"model": "m", "version": "2"}]]
    b.clear_workers()  # b restarts
    assert b.workers() == [] and len(a.workers()) == 1


def test_a_restarted_database_server_is_reconnected_to(db):
    state = ServingState(db.url)
    state.record(answers(2))
    state.feedback("r0", "a")
    # what a server restart does to every open connection
    db.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
           f"'{db.name}' AND pid <> pg_backend_pid()")
    assert state.rewards("m") == {"1": (1.0, 0.0)}
    assert state.feedback("r1", "b")["reward"] == 0.0


def test_a_database_lost_while_serving_answers_503_until_it_is_back(db, tmp_path):
    settings = server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "models={m: {strategy: bandit}}",
        f"state_url={db.url}"]))
    app = FastAPI()
    Routes(settings, {}).add_to(app)
    ServingState(db.url).record(answers(2))
    with TestClient(app) as client:
        assert client.get("/info").status_code == 200  # connected
        db.cut_off()
        for response in (client.post("/feedback", json={"request_id": "r0", "label": "a"}),
                         client.get("/info")):
            assert response.status_code == 503, response.text
            assert "the serving state postgresql://" in response.text
        db.cut_off(False)
        taken = client.post("/feedback", json={"request_id": "r0", "label": "a"})
        assert taken.status_code == 200 and taken.json()["rewarded"] is True
    state = ServingState(db.url)
    db.cut_off()
    with pytest.raises(StateUnavailable):  # a worker's record(): an OSError, answered 503
        state.record(answers(1, prefix="later"))
    assert issubclass(StateUnavailable, OSError)


def test_an_unreachable_server_or_a_missing_driver_is_named_at_the_start(tmp_path,
                                                                        monkeypatch):
    url = f"postgresql://dlforge:s3cret@127.0.0.1:{free_port()}/serving"
    with pytest.raises(DlforgeError) as unreachable:
        ServingState(url)
    message = str(unreachable.value)
    assert "state_url=postgresql://dlforge:***@127.0.0.1" in message
    assert "cannot connect to PostgreSQL" in message and "Fix:" in message
    assert "s3cret" not in message
    settings = server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "models={m: {}}", f"state_url={url}"]))
    assert "s3cret" not in repr(settings)
    with pytest.raises(DlforgeError, match="state_url=postgresql://dlforge:\\*\\*\\*@"):
        build_server(settings)  # before a process starts or a port is opened
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # not installed
    with pytest.raises(DlforgeError, match="pip install 'dlforge\\[postgres\\]'"):
        ServingState(url)


def test_a_state_url_that_is_not_postgresql_is_refused(tmp_path):
    with pytest.raises(DlforgeError, match="state_url='mysql://u:\\*\\*\\*@h/db' in conf/"
                                           "serve.yaml is not a PostgreSQL URL. Fix:"):
        server_settings(compose("serve", [f"paths.root={tmp_path}", "api_key=null",
                                          "models={m: {}}", "state_url=mysql://u:pw@h/db"]))


def _give_feedback(url: str, inputs: list[str], start, results) -> None:
    """One process: feedback on ``inputs`` from four threads, once ``start`` opens."""
    state = ServingState(url, max_rewards_per_minute={"m": float("inf"), "n": 25})
    start.wait()

    def give(rid: str) -> tuple[str, int, bool]:
        try:
            return rid, 200, state.feedback(rid, "a" if int(rid[1:]) % 3 else "b")["rewarded"]
        except FeedbackError as err:
            return rid, err.status, False

    with ThreadPoolExecutor(4) as pool:
        results.put(list(pool.map(give, inputs)))


def test_two_processes_giving_feedback_together_lose_no_update(db):
    """Both processes send feedback for every input at once: each is taken exactly
    once, every reward is counted, and the rate limit holds across both."""
    ServingState(db.url).record([(f"r{i}", 0, "m", "1", "a", True) for i in range(120)]
                                + [(f"s{i}", 0, "n", "1", "a", True) for i in range(60)])
    inputs = [f"r{i}" for i in range(120)] + [f"s{i}" for i in range(60)]
    spawn = multiprocessing.get_context("spawn")  # no connection crosses a fork
    start, results = spawn.Barrier(2), spawn.Queue()
    processes = [spawn.Process(target=_give_feedback,
                               args=(db.url, order, start, results))
                 for order in (inputs, inputs[::-1])]
    for process in processes:
        process.start()
    given = [row for _ in processes for row in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    taken = [(rid, rewarded) for rid, status, rewarded in given if status == 200]
    assert sorted(rid for rid, _ in taken) == sorted(inputs)  # once each...
    assert len(given) - len(taken) == len(inputs)  # ...the other answered 409
    assert {status for _, status, _ in given} == {200, 409}
    state = ServingState(db.url)
    wrong = sum(1 for i in range(120) if i % 3 == 0)  # label "b" where "a" was predicted
    assert state.rewards("m") == {"1": (120.0 - wrong, float(wrong))}
    assert sum(rewarded for rid, rewarded in taken if rid.startswith("s")) == 25
    wins, losses = state.rewards("n")["1"]
    assert wins + losses == 25
    assert db.sql("SELECT count(*) FROM feedback") == "180"


def test_threads_of_one_process_share_a_few_connections(db):
    state = ServingState(db.url)
    state.record(answers(40))
    barrier = threading.Barrier(8)

    def give(i: int) -> float:
        if i < 8:
            barrier.wait()
        return state.feedback(f"r{i}", "a")["reward"]

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(give, range(40))) == 40
    connections = int(db.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             f"'{db.name}' AND application_name = 'dlforge serve'"))
    assert 1 <= connections <= 4  # statedb.POOL_SIZE
