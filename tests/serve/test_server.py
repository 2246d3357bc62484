"""The prediction server in-process: routing, batching, errors, the prediction log."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from litserve.utils import wrap_litserve_start

from dlforge.config import compose
from dlforge.errors import DlforgeError
from dlforge.serve.log import read_log
from dlforge.serve.server import build_server

TEXTS = ["guitar song album", "rain umbrella forecast"]


def server_config(project, *overrides: str):
    return compose("serve", [f"paths.root={project.root}",
                            f"tracking.tracking_uri={project.tracking_uri}", "~models",
                            f"+models={{{project.model_name}: {{strategy: blue_green}}}}",
                            f"default_model={project.model_name}", "accelerator=cpu",
                            "max_batch_size=4", "batch_timeout=0.01", "max_body_bytes=4096",
                            "api_key=null", *overrides])


@pytest.fixture
def served(project):
    """Two registered versions of the toy model, and a client for a server over them."""
    project.release("optimizer.lr=0.02")
    project.release("optimizer.lr=0.000001", "seed=3")  # v2: candidate, not champion
    cfg = server_config(project)
    with wrap_litserve_start(build_server(cfg)) as server, TestClient(server.app) as client:
        yield client, project


def test_predict_answers_with_the_champion_and_names_model_and_version(served):
    client, project = served
    response = client.post("/predict", json={"inputs": TEXTS, "top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == (project.model_name, "1")
    assert [p["label"] for p in body["predictions"]] == ["music", "weather"]
    assert all(len(p["top_k"]) == 2 for p in body["predictions"])
    assert len(body["request_id"]) == 32
    explicit = client.post("/predict", json={"inputs": TEXTS, "version": 2}).json()
    assert explicit["version"] == "2"
    by_alias = client.post("/predict", json={"inputs": TEXTS, "alias": "candidate"}).json()
    assert by_alias["version"] == "2"
    records, stats = read_log(project.root / "outputs/serve/predictions")
    logged = list(records)
    assert [r["request_id"] for r in logged[:2]] == [body["request_id"]] * 2
    assert {r["version"] for r in logged} == {"1", "2"} and stats["skipped"] == 0


BAD = [
    ({"inputs": []}, 422, "inputs"),
    ({"input": ["x"]}, 422, "inputs"),
    ({"inputs": ["x"], "top_k": 0}, 422, "top_k"),
    ({"inputs": ["x"], "model": "nope"}, 404, "not served here"),
    ({"inputs": ["x"], "version": 99}, 404, "has no version 99"),
    ({"inputs": ["x"], "alias": "staging"}, 404, "has no alias 'staging'"),
    ({"inputs": ["x" * 5000]}, 413, "too large"),
    ({"inputs": ["x"] * 300}, 413, "at most 256 per request"),
]


def test_bad_requests_get_a_clear_status_and_message_and_the_server_goes_on(served):
    client, project = served
    for body, status, words in BAD:
        response = client.post("/predict", json=body)
        assert (response.status_code, words in response.text) == (status, True), response.text
    # Version 2's stored files are damaged: it answers 503, version 1 keeps serving.
    stored = mlflow.MlflowClient().get_model_version_download_uri(project.model_name, "2")
    (weights,) = Path(stored.removeprefix("file://")).rglob("weights.safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    broken = client.post("/predict", json={"inputs": TEXTS, "version": 2})
    assert broken.status_code == 503 and "does not match SHA256SUMS" in broken.text
    assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_configured_api_key_is_required_except_for_health(project):
    project.release()
    cfg = server_config(project, "api_key=s3cret")
    with wrap_litserve_start(build_server(cfg)) as server, TestClient(server.app) as client:
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 401
        wrong = client.post("/predict", json={"inputs": TEXTS}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
        ok = client.post("/predict", json={"inputs": TEXTS},
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["version"] == "1"
        assert client.get("/health").status_code == 200  # open to load balancers


def test_shadow_release_answers_with_the_champion_and_logs_the_candidate(project):
    project.release("optimizer.lr=0.02")
    project.release("optimizer.lr=0.000001", "seed=3")
    cfg = server_config(project)
    cfg.models[project.model_name].strategy = "shadow"
    with wrap_litserve_start(build_server(cfg)) as server, TestClient(server.app) as client:
        body = client.post("/predict", json={"inputs": TEXTS}).json()
    assert body["version"] == "1"
    records, _ = read_log(project.root / "outputs/serve/predictions")
    mine = [r for r in records if r["request_id"] == body["request_id"]]
    assert sorted((r["version"], r["shadow"]) for r in mine) == [
        ("1", False), ("1", False), ("2", True), ("2", True)]


@pytest.mark.parametrize(("override", "words"), [
    ("+models.other={strategy: rolling}", "models.other: release strategy 'rolling'"),
    ("default_model=nope", "default_model='nope' is not one of models"),
])
def test_bad_server_settings_fail_before_serving(project, override, words):
    with pytest.raises(DlforgeError, match=words):
        build_server(server_config(project, override))
