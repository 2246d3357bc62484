"""One request's error stays its own inside a batch, whatever part of the path raises.

The API's batch path (decode_request → predict → encode_response, as LitServe's
batched loop calls it) runs here in-process over a stand-in model, so that
each way of failing can be forced on one request of a batch.
"""

from __future__ import annotations

import json
import random
import time
from types import SimpleNamespace

import pytest
from fastapi.responses import JSONResponse

from dlforge.core.config import compose
from dlforge.models.preprocessing import UnreadableInput
from dlforge.serve.api import ModelAPI
from dlforge.serve.cache import ModelCache
from dlforge.serve.parts import ServingParts
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


class Registry:
    """The model registry: model "m", its "champion" alias on version 1, ``versions``."""

    def __init__(self, versions=()):
        self.versions = {str(v) for v in versions}

    def get_registered_model(self, name):
        return SimpleNamespace(aliases={"champion": "1"})

    def get_model_version(self, name, version):
        from mlflow.exceptions import MlflowException

        if str(version) not in self.versions:
            raise MlflowException(f"no version {version}")


class Recorder:
    """The prediction log and the serving state: keeps what is logged and recorded."""

    def __init__(self):
        self.records = []

    def write(self, records):
        self.records += records

    def record(self, answers):
        self.records += answers

    def rewards(self, model):
        return {}

    def forget_old(self):
        return 0

    def report_worker(self, *args):
        pass


class NoMetrics:
    """Takes any metric call and records nothing."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self


def in_process_api(tmp_path, loader, registry: Registry, overrides=(), **parts) -> ModelAPI:
    """A ModelAPI set up as LitServe sets up a worker, over stand-in parts (``parts``
    replaces any of them); :func:`run_batch` runs its batch path."""
    settings = server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "models={m: {}}", "default_model=m",
        "max_batch_size=8", "batch_timeout=0",
        "refresh_seconds=3600",  # aliases read once, in setup; none on a request's path
        *overrides]))
    recorder = Recorder()

    def stand_ins(settings, device) -> ServingParts:
        return ServingParts(**{
            "client": registry, "cache": ModelCache(loader, 2),
            "releases": {name: spec.release() for name, spec in settings.models.items()},
            "prediction_log": recorder, "state": recorder, "metrics": NoMetrics(),
            "rng": random.Random(0), **parts})

    api = ModelAPI(settings, parts_factory=stand_ins)
    api.pre_setup()
    api.loop.pre_setup(api)  # what LitServe does before it starts the workers
    api.setup("cpu")
    return api


@pytest.fixture
def api(tmp_path):
    return in_process_api(tmp_path, lambda name, version: FakeModel(), Registry(),
                          ["max_image_pixels=100"])


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
    logged = [r for r in api.parts.prediction_log.records if isinstance(r, dict)]
    assert len(logged) == 6  # the good requests' inputs only


def test_a_registry_lookup_for_a_missing_version_is_not_repeated_at_once(api):
    calls = []
    original = api.parts.client.get_model_version

    def counting(name, version):
        calls.append(version)
        return original(name, version)

    api.parts.client.get_model_version = counting
    for _ in range(5):
        assert run_batch(api, [{"inputs": ["x"], "version": 9}])[0][0] == 404
    assert calls == ["9"]
    api.missing[("m", "9")] = time.monotonic() - 60  # later, it is looked up again
    run_batch(api, [{"inputs": ["x"], "version": 9}])
    assert calls == ["9", "9"]


def test_an_answer_that_cannot_be_logged_is_507_for_its_requests_only(tmp_path):
    class FullDisk(Recorder):
        def write(self, records):
            if any(r["input"]["chars"] == 4 for r in records):
                raise OSError(28, "No space left on device")
            super().write(records)

    api = in_process_api(tmp_path, lambda name, version: FakeModel(), Registry(),
                         prediction_log=FullDisk())
    answers = run_batch(api, [{"inputs": ["four"]}])
    assert answers[0][0] == 507 and "No space left" in answers[0][1]["detail"]
    assert run_batch(api, [{"inputs": ["five!"]}])[0][0] == 200
