"""Liveness and readiness: what a load balancer and a supervisor read."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from dlforge.serve.health import DiskCheck, add_routes


def client(tmp_path, workers: list[dict], min_free: int) -> TestClient:
    app = FastAPI()
    add_routes(app, DiskCheck([tmp_path / "log", tmp_path / "state"], min_free),
               lambda: workers)
    return TestClient(app)


def test_ready_when_every_worker_runs_and_the_disks_have_room(tmp_path):
    up = client(tmp_path, [{"pid": 10, "alive": True}], min_free=1)
    assert up.get("/health/ready").json() == {"ready": True, "problems": [],
                                              "workers": [{"pid": 10, "alive": True}]}
    assert up.get("/health/live").json()["status"] == "alive"


def test_not_ready_while_a_worker_restarts_or_a_disk_is_nearly_full(tmp_path):
    down = client(tmp_path, [{"pid": 10, "alive": True}, {"pid": 11, "alive": False}],
                  min_free=2**62)
    answer = down.get("/health/ready")
    assert answer.status_code == 503 and not answer.json()["ready"]
    worker, disk = answer.json()["problems"]
    assert "inference worker 1 is not running" in worker
    assert "min_free_disk_bytes" in disk and str(tmp_path / "log") in disk
    assert down.get("/health/live").status_code == 200  # alive all the same


def test_a_folder_that_cannot_be_created_is_a_problem(tmp_path):
    (tmp_path / "log").write_text("a file where the folder should be")
    answer = client(tmp_path, [], min_free=1).get("/health/ready")
    assert answer.status_code == 503 and "cannot be written" in answer.json()["problems"][0]
