"""The registry against a real MLflow tracking server on loopback (its own backend store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from dlforge.cli import main
from dlforge.core.errors import DlforgeError
from tests.services import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """``mlflow server`` on a free loopback port, as a team runs it: its backend store a
    fresh PostgreSQL database, its artifacts under tmp_path/server-artifacts. (dlforge
    speaks HTTP to it: what store is behind it is the server's business.)"""
    backend = postgres.database()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend,
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        # No job runner process beside the server: the registry needs none.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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


def in_process(capsys, *args: str) -> str:
    """``dlforge ARGS`` in this process (a new one would import MLflow again): its stdout."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out


def release_promote_rollback(project, capsys, tracking_uri: str, artifacts: Path,
                             cwd: Path) -> dict:
    """Two releases, promote the second, roll back, follow the lineage, then load the
    champion in a fresh process: everything through ``tracking_uri``, the model's files
    under ``artifacts``. The first release's register record."""
    project.common.append(f"tracking.tracking_uri={tracking_uri}")
    first = project.release("optimizer.lr=0.02")
    # barely trained, and not promoted: one epoch is enough to show it
    second = project.release("optimizer.lr=0.000001", "seed=3", "trainer.max_epochs=1")
    assert (first["champion"], second["version"], second["promote"]) == ("1", "2", False)

    store = ["--tracking-uri", tracking_uri]
    in_process(capsys, "models", *store, "promote", project.model_name, "2")
    listed = json.loads(in_process(capsys, "models", *store, "list", project.model_name, "--json"))
    assert listed[0]["aliases"] == {"champion": "2", "candidate": "2"}
    in_process(capsys, "models", *store, "rollback", project.model_name)
    champion = f"models:/{project.model_name}@champion"
    chain = json.loads(in_process(capsys, "lineage", *store, champion, "--json"))
    assert chain["model"]["version"] == "1" and chain["run"]["run_id"] == first["run_id"]
    assert chain["sources"][0]["path"].endswith("toy.csv")
    # A fresh client loads version 1 from the store.
    code = ("import mlflow\n"
            f"mlflow.set_tracking_uri({tracking_uri!r})\n"
            f"m = mlflow.pyfunc.load_model({champion!r})\n"
            "print(m.predict(['guitar song'])['label'][0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "music", out.stderr
    assert any(artifacts.rglob("weights.safetensors"))
    return first


def test_train_register_promote_lineage_against_a_tracking_server(project, mlflow_server,
                                                                  capsys, tmp_path):
    # The artifacts go through the server, into its --artifacts-destination.
    release_promote_rollback(project, capsys, mlflow_server, tmp_path / "server-artifacts",
                             tmp_path)
    assert not (tmp_path / "mlruns").exists()  # nothing went to the local default store


def test_train_register_promote_lineage_on_postgresql_without_a_server(project, postgres,
                                                                      capsys, tmp_path):
    # Runs and the registry in the database; artifacts in paths.mlflow_dir/artifacts,
    # not in MLflow's default ./mlruns of whatever folder a command ran in.
    uri, artifacts = postgres.database(), tmp_path / "tracking" / "artifacts"
    project.common.append(f"paths.mlflow_dir={tmp_path / 'tracking'}")
    first = release_promote_rollback(project, capsys, uri, artifacts, tmp_path)
    run = mlflow.MlflowClient(uri).get_run(first["run_id"])
    assert run.info.artifact_uri.startswith(artifacts.resolve().as_uri())


@pytest.mark.parametrize("login", ["dlforge:s3cret@{host}/mlflow",
                                   "dlforge@{host}/mlflow?password=s3cret"])
def test_an_unreachable_database_is_named_with_its_fix_and_no_password(project, login):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    uri = "postgresql://" + login.format(host=host)
    started = time.monotonic()
    with pytest.raises(DlforgeError) as caught:
        project.run("train", f"tracking.tracking_uri='{uri}'")  # quoted: '=' in the value
    message = str(caught.value)
    assert time.monotonic() - started < 30  # not MLflow's minute of retries
    shown = "postgresql://" + login.format(host=host).replace("s3cret", "***")
    assert message.startswith(f"tracking.tracking_uri={shown}: cannot reach the database")
    assert "Connection refused" in message and f"is the server up at {host}" in message
    assert "s3cret" not in message


def test_a_missing_database_driver_names_the_extra_to_install(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if psycopg2 were not installed
    uri = f"postgresql://dlforge:s3cret@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(DlforgeError, match=r"tracking\.tracking_uri=postgresql://dlforge:\*\*\*@"
                       r".*Fix: pip install 'dlforge\[postgres\]'") as caught:
        project.run("train", f"tracking.tracking_uri={uri}")
    assert "s3cret" not in str(caught.value)


def test_mlflow_models_serve_serves_the_champion(two_versions, tmp_path):
    project = two_versions  # v1 champion, v2 candidate
    port = free_port()
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


START_TOGETHER = """
import pathlib, sys, time
from dlforge.core.tracking import connect
import mlflow  # imported before the start: the processes then connect within milliseconds
folder = pathlib.Path(sys.argv[2])
(folder / f"ready-{sys.argv[3]}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
connect(sys.argv[1])
"""


def test_processes_starting_together_on_a_new_database_all_connect(postgres, tmp_path):
    # MLflow creates its tables in the first connection to a new database; without the
    # advisory lock two of these would both try, and one fail on a duplicate table.
    uri = postgres.database()
    workers = [subprocess.Popen([sys.executable, "-c", START_TOGETHER, uri, str(tmp_path),
                                 str(i)], stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(workers):
        assert all(w.poll() is None for w in workers) and time.monotonic() < deadline
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()[-3000:]
