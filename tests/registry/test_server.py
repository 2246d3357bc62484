"""The registry against a real MLflow tracking server on loopback (its own backend store)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert server.poll() is None, server.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def dlforge(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dlforge", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_register_promote_lineage_against_a_tracking_server(project, mlflow_server,
                                                                  tmp_path):
    project.common.append(f"tracking.tracking_uri={mlflow_server}")
    first = project.release("optimizer.lr=0.02")
    second = project.release("optimizer.lr=0.000001", "seed=3")
    assert (first["champion"], second["version"], second["promote"]) == ("1", "2", False)
    assert not (tmp_path / "mlruns").exists()  # nothing went to the local default store

    remote = ["--tracking-uri", mlflow_server]
    dlforge("models", *remote, "promote", project.model_name, "2")
    listed = json.loads(dlforge("models", *remote, "list", project.model_name, "--json"))
    assert listed[0]["aliases"] == {"champion": "2", "candidate": "2"}
    dlforge("models", *remote, "rollback", project.model_name)
    chain = json.loads(dlforge("lineage", *remote, f"models:/{project.model_name}@champion",
                               "--json"))
    assert chain["model"]["version"] == "1" and chain["run"]["run_id"] == first["run_id"]
    assert chain["sources"][0]["path"].endswith("toy.csv")
    # The artifacts went through the server: a fresh client loads version 1 from it.
    code = ("import mlflow\n"
            f"mlflow.set_tracking_uri({mlflow_server!r})\n"
            f"m = mlflow.pyfunc.load_model('models:/{project.model_name}@champion')\n"
            "print(m.predict(['guitar song'])['label'][0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "music", out.stderr
    assert any((tmp_path / "server-artifacts").rglob("weights.safetensors"))


def test_mlflow_models_serve_serves_the_champion(project, tmp_path):
    project.release()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m",
         f"models:/{project.model_name}@champion", "--env-manager", "local", "-p", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": project.tracking_uri},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.5)
        body = json.dumps({"inputs": ["guitar song album", "rain umbrella forecast"],
                           "params": {"top_k": 2}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [p["label"] for p in predictions] == ["music", "weather"]
    assert all(len(json.loads(p["top_k"])) == 2 for p in predictions)
