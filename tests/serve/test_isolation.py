"""One request's error stays its own inside a batch, whatever part of the path raises.

The API's batch path (decode_request → predict → encode_response, as LitServe's
batched loop calls it) runs here in-process over a stand-in model, so that
each way of failing can be forced on one request of a batch.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from fastapi.responses import JSONResponse

from dlforge.core.config import compose
from dlforge.models.preprocessing import UnreadableInput
from dlforge.serve.api import ModelAPI
from dlforge.serve.cache import ModelCache
from dlforge.serve.release import Release
from dlforge.serve.schema import PredictRequest
from dlforge.stages.serve import server_settings


class FakeEncoder:
    """Reads a text as itself; a text containing "undecodable" cannot be read."""

    size_limit = "max_input_chars"

    def read_wire(self, text: str, limit: int) -> tuple[str, dict]:
        if "undecodable" in text:
            raise UnreadableInput("cannot decode")
        return text, {"chars": len(text)}


class FakeModel:
    """Labels a text by its length; a text containing "boom" breaks the forward pass."""

    encoder = FakeEncoder()

    def predict_encoded(self, encoded, top_k: int = 5):
        if any("boom" in x for x in encoded):
            raise RuntimeError("CUDA out of memory")
        return [{"label": f"len{len(x)}", "score": 1.0, "top_k": [{"label": f"len{len(x)}",
                                                                   "score": 1.0}]}
                for x in encoded]


class Recorder:
    def __init__(self):
        self.records = []

    def write(self, records):
        self.records += records

    def record(self, answers):
        self.records += answers


class NoMetrics:
    """Takes any metric call and records nothing."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self


@pytest.fixture
def api(tmp_path):
    from mlflow.exceptions import MlflowException

    class Registry:
        def get_model_version(self, name, version):
            raise MlflowException(f"no version {version}")

    api = ModelAPI(server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "models={m: {}}",
        "default_model=m", "max_batch_size=8", "batch_timeout=0", "refresh_seconds=5",
        "max_image_pixels=100"])))
    api.pre_setup()
    api.loop.pre_setup(api)  # what LitServe does before it starts the workers
    api.cache = ModelCache(lambda name, version: FakeModel(), 2)
    api.releases = {"m": Release(aliases={"champion": "1"})}
    api.client, api.metrics, api.rng = Registry(), NoMetrics(), random.Random(0)
    api.prediction_log = api.state = Recorder()
    api.missing, api.reported = {}, None
    api._report = lambda: None
    return api


def run_batch(api: ModelAPI, bodies: list[dict]) -> list[tuple[int, dict]]:
    """What LitServe's batched loop does with one batch: (status, body) per request."""
    decoded = [api.decode_request(PredictRequest(**body)) for body in bodies]
    outputs = api.predict(api.batch(decoded))
    answers = []
    for output in api.unbatch(outputs):
        encoded = api.encode_response(output)
        if isinstance(encoded, JSONResponse):
            answers.append((encoded.status_code, json.loads(encoded.body)))
        else:
            answers.append((200, encoded))
    return answers


def test_each_failure_answers_only_its_own_request_in_a_batch(api):
    good = {"inputs": ["hello", "hi"]}
    answers = run_batch(api, [good, {"inputs": ["x"], "version": 7}, good,
                              {"inputs": ["x"], "alias": "nobody"}, {"inputs": ["boom"]},
                              {"inputs": ["undecodable"]}, good])
    statuses = [status for status, _ in answers]
    assert statuses == [200, 404, 200, 404, 422, 422, 200], answers
    for status, body in answers:
        if status == 200:
            assert [p["label"] for p in body["predictions"]] == ["len5", "len2"]
        else:
            assert "detail" in body and "0x" not in body["detail"]
    assert "version 7" in answers[1][1]["detail"] and "nobody" in answers[3][1]["detail"]
    logged = [r for r in api.prediction_log.records if isinstance(r, dict)]
    assert len(logged) == 6  # the good requests' inputs only


def test_a_registry_lookup_for_a_missing_version_is_not_repeated_at_once(api):
    calls = []
    original = api.client.get_model_version

    def counting(name, version):
        calls.append(version)
        return original(name, version)

    api.client.get_model_version = counting
    for _ in range(5):
        assert run_batch(api, [{"inputs": ["x"], "version": 9}])[0][0] == 404
    assert calls == ["9"]
    api.missing[("m", "9")] = time.monotonic() - 60  # later, it is looked up again
    run_batch(api, [{"inputs": ["x"], "version": 9}])
    assert calls == ["9", "9"]


def test_an_answer_that_cannot_be_logged_is_507_for_its_requests_only(api):
    class FullDisk(Recorder):
        def write(self, records):
            if any(r["input"]["chars"] == 4 for r in records):
                raise OSError(28, "No space left on device")
            super().write(records)

    api.prediction_log = FullDisk()
    answers = run_batch(api, [{"inputs": ["four"]}])
    assert answers[0][0] == 507 and "No space left" in answers[0][1]["detail"]
    assert run_batch(api, [{"inputs": ["five!"]}])[0][0] == 200
