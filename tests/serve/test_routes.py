"""POST /feedback's checks, on the routes alone (no inference workers): bounded fields,
422 naming the field and never echoing it, never 500; rewarded or not; the log."""

from __future__ import annotations

import errno
import json
import os

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from dlforge.core.config import compose
from dlforge.serve.log import read_log
from dlforge.serve.routes import FeedbackRequest, Routes
from dlforge.serve.settings import ServeSettings
from dlforge.serve.state import ServingState
from dlforge.stages.serve import server_settings

RID = "0" * 32


@pytest.fixture
def settings(tmp_path) -> ServeSettings:
    """conf/serve.yaml's settings, under tmp_path."""
    return server_settings(compose("serve", [f"paths.root={tmp_path}", "api_key=null",
                                             "models={intent: {strategy: bandit}}"]))


@pytest.fixture
def client(settings):
    app = FastAPI()
    Routes(settings, {}).add_to(app)
    state = ServingState.from_settings(settings)
    state.record([(RID, i, "intent", "1", "music", True) for i in range(3)]
                 + [("1" * 32, 0, "intent", "2", "music", False)])
    with TestClient(app) as client:
        yield client


def post(client, body: bytes | dict):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/feedback", content=raw, headers={"content-type": "application/json"})


BAD = [
    ({"request_id": RID, "label": "x" * 1_000_000}, "label: 1000000 characters, at most 256 "
                                                    "(max_label_chars)"),
    ({"request_id": "f" * 65, "label": "music"}, "request_id: String should have at most 64"),
    ({"request_id": RID, "label": "music", "index": 2**63}, "index: Input should be less"),
    ({"request_id": RID, "label": "music", "index": 10**30}, "index: Input should be less"),
    ({"request_id": RID, "label": "music", "index": 256}, "index: 256 is past the last input"),
    ({"request_id": RID, "label": "music", "index": "1"}, "index: Input should be a valid "
                                                          "integer"),
    ({"request_id": RID, "label": "music", "index": True}, "index: Input should be a valid "
                                                           "integer"),
    (b'{"request_id": "\\ud800", "label": "music"}', "request_id: Input should be a valid "
                                                     "string, unable to parse raw data as a "
                                                     "unicode string"),
    (b'{"request_id": "' + RID.encode() + b'", "label": "\\udfff\\ud800"}',
     "label: Input should be a valid string"),
    (b'{"request_id": "' + RID.encode() + b'", "label": "a", "\\ud800": 1}',
     "body: Input should be a valid string"),
    ({"request_id": RID, "label": "music", "x" * 5000: 1}, "(a field name): Extra inputs"),
    (b'["not", "an", "object"]', "body: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_feedback_is_422_naming_the_field_never_echoing_it(client, body, message):
    response = post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(message)
    assert len(response.content) < 1000 and "xxx" not in response.text
    assert "\\ud800" not in response.text


def test_the_request_model_refuses_lone_surrogates_however_it_is_validated():
    refused = "\n  (Value error, not valid Unicode|Input should be a valid string)"
    with pytest.raises(ValidationError, match="request_id" + refused):
        FeedbackRequest.model_validate({"request_id": "\ud800", "label": "music"})
    with pytest.raises(ValidationError, match="label" + refused):
        FeedbackRequest.model_validate({"request_id": RID, "label": "a\udfff"})


def test_good_feedback_still_scores_and_says_whether_it_was_rewarded(client, settings):
    good = post(client, {"request_id": RID, "label": "music", "index": 2})
    assert good.status_code == 200, good.text
    assert good.json() == {"request_id": RID, "index": 2, "model": "intent", "version": "1",
                           "predicted": "music", "label": "music", "reward": 1.0,
                           "rewarded": True}
    named = post(client, {"request_id": "1" * 32, "label": "music"})  # a version named
    assert named.json()["rewarded"] is False
    longest = post(client, {"request_id": RID, "label": "é" * 256})
    assert longest.json()["reward"] == 0.0
    rewards = client.get("/info").json()["models"]["intent"]["rewards"]
    assert rewards == {"1": {"wins": 1.0, "losses": 1.0}}
    records, _ = read_log(settings.log_dir, name="feedback")
    assert [(r["version"], r["rewarded"]) for r in records] == [("1", True), ("2", False),
                                                                ("1", True)]
    assert "FeedbackResponse" in client.get("/openapi.json").json()["components"]["schemas"]


def test_feedback_that_cannot_be_logged_is_not_taken(client, settings):
    log = os.path.join(settings.log_dir, "feedback.jsonl")
    os.makedirs(settings.log_dir, exist_ok=True)
    os.symlink("/dev/full", log)
    with pytest.raises(OSError) as raised:  # the middleware answers 507
        post(client, {"request_id": RID, "label": "music"})
    assert raised.value.errno == errno.ENOSPC
    os.unlink(log)
    again = post(client, {"request_id": RID, "label": "music"})  # not 409: it was not taken
    assert again.status_code == 200, again.text
