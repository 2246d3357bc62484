"""The prediction server in-process: routing, batching, errors, the prediction log."""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow

from dlforge.serve.log import read_log
from dlforge.serve.transport import AnswerTransport, WorkerQueues
from tests.helpers import running
from tests.toy import TEXTS, server_config


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
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "FeedbackRequest"} <= set(schemas)
    # requests and answers went over ZeroMQ sockets, one per worker and per HTTP process
    server = client.litserver
    assert isinstance(server._transport, AnswerTransport)
    assert all(isinstance(q, WorkerQueues) for q in server.litapi_request_queues.values())
    sockets = {p.name: p for p in Path(server.sockets_dir).iterdir()}
    assert set(sockets) == {"w0", "h0"} and all(
        stat.S_ISSOCK(p.stat().st_mode) for p in sockets.values())
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
    stored = mlflow.MlflowClient(project.tracking_uri).get_model_version_download_uri(
        project.model_name, "2")
    (weights,) = Path(stored.removeprefix("file://")).rglob("weights.safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    broken = client.post("/predict", json={"inputs": TEXTS, "version": 2})
    assert broken.status_code == 503 and "does not match SHA256SUMS" in broken.text
    assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
    assert client.get("/health").status_code == 200
    # A full disk: the answer that cannot be logged is 507; the next one, with room, is 200
    log_file = project.root / "outputs/serve/predictions/predictions.jsonl"
    log_file.unlink()
    log_file.symlink_to("/dev/full")
    full = client.post("/predict", json={"inputs": TEXTS})
    assert full.status_code == 507 and "No space left" in full.text, full.text
    log_file.unlink()
    assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200


def test_a_configured_api_key_is_required_except_for_health(two_versions):
    with running(server_config(two_versions, "api_key=s3cret")) as client:
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 401
        wrong = client.post("/predict", json={"inputs": TEXTS}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
        for scheme in ["s3cret", "Basic s3cret", "Token s3cret"]:  # only Bearer carries it
            refused = client.post("/predict", json={"inputs": TEXTS},
                                  headers={"Authorization": scheme})
            assert refused.status_code == 401, scheme
        ok = client.post("/predict", json={"inputs": TEXTS},
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["version"] == "1"
        for path in ["/health", "/health/live", "/health/ready"]:  # open to load balancers
            assert client.get(path).status_code == 200, path


def test_shadow_release_answers_with_the_champion_and_logs_the_candidate(two_versions):
    project = two_versions
    with running(server_config(project, strategy="shadow")) as client:
        body = client.post("/predict", json={"inputs": TEXTS}).json()
    assert body["version"] == "1"
    records, _ = read_log(project.root / "outputs/serve/predictions")
    mine = [r for r in records if r["request_id"] == body["request_id"]]
    assert sorted((r["version"], r["shadow"]) for r in mine) == [
        ("1", False), ("1", False), ("2", True), ("2", True)]


def samples(text: str) -> dict:
    """Prometheus text -> {(sample name, frozenset of labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_errors_and_batches_per_model_and_version(served):
    client, project = served
    for _ in range(3):
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
    assert client.post("/predict", json={"inputs": ["x"], "version": 99}).status_code == 404
    for i in range(20):  # names that are not served add no series
        assert client.post("/predict", json={"inputs": ["x"], "model": f"m{i}"}).status_code \
            == 404
    assert client.post("/predict", json={"inputs": []}).status_code == 422
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    v1 = frozenset({("model", project.model_name), ("version", "1")})
    assert got[("dlforge_requests_total", v1)] == 3
    assert got[("dlforge_predictions_total", v1)] == 6
    assert got[("dlforge_latency_seconds_count", v1)] == 3
    assert got[("dlforge_batch_size_sum", v1)] == 6
    assert got[("dlforge_model_loads_total", v1)] == 1
    # an unknown version is counted without its number: label values stay bounded
    missing = frozenset({("model", project.model_name), ("version", ""), ("status", "404")})
    assert got[("dlforge_errors_total", missing)] == 1
    assert not any(dict(labels).get("model", project.model_name) != project.model_name
                   or dict(labels).get("version") == "99" for _, labels in got)
    http = frozenset({("path", "/predict"), ("status", "422")})
    assert got[("dlforge_http_requests_total", http)] == 1


def test_info_shows_what_is_loaded_and_a_full_cache_evicts_and_reloads(two_versions):
    project = two_versions
    with running(server_config(project, "cache_capacity=1", "refresh_seconds=0")) as client:
        for version in (1, 2, 1):
            response = client.post("/predict", json={"inputs": TEXTS, "version": version})
            assert response.json()["version"] == str(version)
        info = client.get("/info").json()
        loads = samples(client.get("/metrics").text)
    model = info["models"][project.model_name]
    assert model["loaded"] == ["1"]  # capacity 1: v2 evicted v1, v1 evicted v2
    assert model["aliases"] == {"champion": "1", "candidate": "2"}
    assert model["release"]["strategy"] == "blue_green"
    assert [w["loaded"] for w in info["workers"]] == [[{"model": project.model_name,
                                                        "version": "1"}]]
    v1 = frozenset({("model", project.model_name), ("version", "1")})
    assert loads[("dlforge_model_loads_total", v1)] == 2  # evicted, then loaded again


def test_a_full_queue_answers_503_at_once_and_the_server_goes_on(two_versions):
    # Each admitted request waits up to a second for its batch to fill.
    cfg = server_config(two_versions, "max_pending_requests=2", "max_batch_size=64",
                        "batch_timeout=1.0")
    with running(cfg) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/predict", json={"inputs": TEXTS}),
                                range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        refused = next(a for a in answers if a.status_code == 503)
        assert "max_pending_requests=2" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
        overloaded = samples(client.get("/metrics").text)[("dlforge_overloaded_total",
                                                          frozenset())]
        assert overloaded == statuses.count(503)


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used so far (user and system)."""
    with open(f"/proc/{pid}/stat") as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_server_leaves_the_cpu_alone(two_versions):
    # The packaged batch window (1 ms): a worker that looked at its queue that often
    # while nothing comes would keep a core busy.
    cfg = server_config(two_versions, "batch_timeout=0.001", "workers_per_device=2")
    with running(cfg) as client:
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
        pids = [worker["pid"] for worker in client.get("/health/ready").json()["workers"]]
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(2)  # idle: the measure is what the workers do with no request
        used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
        assert len(pids) == 2 and max(used) < 0.2, used
        # Asleep, not deaf: the next request is answered.
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
