"""POST /feedback: scored against the answer, shared by every process, and the bandit
moves traffic to the version that earns rewards."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from dlforge.serve.log import read_log
from dlforge.serve.state import FeedbackError, ServingState
from tests.helpers import running
from tests.toy import TEXTS, TRUTH, server_config


def test_feedback_scores_the_answer_once_and_names_what_is_wrong(served):
    client, project = served
    answer = client.post("/predict", json={"inputs": TEXTS}).json()
    rid = answer["request_id"]
    good = client.post("/feedback", json={"request_id": rid, "label": "music"})
    assert good.status_code == 200, good.text
    assert good.json() == {"request_id": rid, "index": 0, "model": project.model_name,
                           "version": "1", "predicted": "music", "label": "music",
                           "reward": 1.0, "rewarded": False}  # blue-green: no bandit
    wrong = client.post("/feedback", json={"request_id": rid, "label": "food", "index": 1})
    assert wrong.json()["reward"] == 0.0
    for body, status, words in [
        ({"request_id": rid, "label": "music"}, 409, "already has feedback"),
        ({"request_id": rid, "label": "music", "index": 2}, 404, "has no input 2 (it had 2"),
        ({"request_id": "nope", "label": "music"}, 404, "no answer with request_id 'nope'"),
        ({"request_id": rid}, 422, "label"),
        ({"request_id": rid, "label": "music", "index": -1}, 422, "index"),
        ({"request_id": rid, "label": "music", "index": 2**63}, 422, "index"),
        ({"request_id": rid, "label": "m" * 257}, 422, "at most 256 (max_label_chars)"),
        ({"request_id": rid * 3, "label": "music"}, 422, "request_id"),
    ]:
        response = client.post("/feedback", json=body)
        assert (response.status_code, words in response.text) == (status, True), response.text
    records, _ = read_log(project.root / "outputs/serve/predictions", name="feedback")
    assert [(r["index"], r["reward"]) for r in records] == [(0, 1.0), (1, 0.0)]
    assert client.get("/info").json()["models"][project.model_name]["rewards"] == {}
    lone = client.post("/feedback", content=b'{"request_id": "\\ud800", "label": "music"}',
                       headers={"content-type": "application/json"})
    assert lone.status_code == 422 and "request_id" in lone.text and "ud800" not in lone.text


def test_the_bandit_learns_from_the_answers_it_routed_not_from_named_versions(two_versions):
    project = two_versions  # v1 knows the toy task, v2 barely trained
    served = []
    cfg = server_config(project, "refresh_seconds=0", "routing_seed=0", strategy="bandit")
    with running(cfg) as client:
        # Someone asks v2 by name and "confirms" all its answers: no reward may follow.
        named = client.post("/predict", json={"inputs": TEXTS * 40, "version": 2}).json()
        for i, p in enumerate(named["predictions"]):
            steer = client.post("/feedback", json={"request_id": named["request_id"],
                                                   "label": p["label"], "index": i}).json()
            assert (steer["reward"], steer["rewarded"]) == (1.0, False)
        for i in range(60):
            answer = client.post("/predict", json={"inputs": [TEXTS[i % 2]]}).json()
            served.append(answer["version"])
            client.post("/feedback", json={"request_id": answer["request_id"],
                                           "label": TRUTH[i % 2]})
        rewards = client.get("/info").json()["models"][project.model_name]["rewards"]
    assert set(served[:20]) == {"1", "2"}  # both versions are tried...
    assert served[-20:].count("1") >= 17, served  # ...then the rewarded one wins
    assert rewards["1"]["losses"] == 0 and rewards["2"]["losses"] > 0
    assert rewards["2"]["wins"] < 20


def test_concurrent_feedback_loses_no_update_and_is_taken_once(tmp_path):
    path = tmp_path / "state.db"
    ServingState(path).record([(f"r{i}", 0, "m", "1", "a", True) for i in range(40)])

    def give(i: int) -> int:
        state = ServingState(path)  # one connection each, as separate processes have
        try:
            state.feedback(f"r{i % 20}", "a" if i % 2 else "b")
            return 200
        except FeedbackError as err:
            return err.status
        finally:
            state.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(give, range(40)))
    assert statuses.count(200) == 20 and statuses.count(409) == 20
    wins, losses = ServingState(path).rewards("m")["1"]
    assert wins + losses == 20


def test_answers_older_than_the_feedback_window_are_forgotten(tmp_path):
    state = ServingState(tmp_path / "state.db", window_seconds=60)
    state.record([("old", 0, "m", "1", "a", True), ("new", 0, "m", "1", "a", True)])
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE answers SET time = time - 120 WHERE request_id = 'old'")
    assert state.forget_old() == 1
    with pytest.raises(FeedbackError, match="in the last 60 s"):
        state.feedback("old", "a")
    assert state.feedback("new", "a")["reward"] == 1.0
