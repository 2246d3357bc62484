"""Two ``dlforge serve`` replicas on one PostgreSQL state (``state_url``) behind an
nginx load balancer: an answer given by one replica takes feedback through the
other, and the feedback moves the bandit of both."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, dlforge_serve, wait_healthy
from tests.services import free_port
from tests.toy import TEXTS

pytestmark = pytest.mark.slow

NGINX = Path("/usr/sbin/nginx")
NGINX_CONF = """
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream dlforge {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dlforge;
            proxy_set_header Host $host;  # the name the client asked for (a loopback one)
            add_header X-Upstream $upstream_addr always;  # which replica answered
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(tmp: Path, upstreams: list[str]):
    """nginx in the foreground on a free loopback port, round-robin over ``upstreams``
    (``http://host:port``); yields its base URL."""
    assert NGINX.exists(), "nginx is not installed: apt-get install nginx (`make test` does)"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "", tmp=tmp, port=port,
        servers=" ".join(f"server {u.removeprefix('http://')};" for u in upstreams)))
    proxy = subprocess.Popen([str(NGINX), "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proxy, 20, (tmp / "error.log").read_text, pause=0.1)
        yield url
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


@contextlib.contextmanager
def together(*managers):
    """Enter the context managers at the same time (servers start in parallel); the
    values they yield. Every one that was entered is exited, also on a failure."""
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    with contextlib.ExitStack() as stack:
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                stack.push(manager.__exit__)
        yield [future.result() for future in futures]


@pytest.fixture
def replicas(two_versions, postgres, tmp_path):
    """Two replicas (a bandit over v1 and v2, one state database with a password in its
    URL) and nginx before them; yields (replica URLs, proxy URL, project)."""
    project, name = two_versions, two_versions.model_name
    state_url = postgres.database("replicas").replace("postgres@", "postgres:s3cret@")
    common = [f"paths.root={project.root}", f"tracking.tracking_uri={project.tracking_uri}",
              f"models={{{name}: {{strategy: bandit, explore: 0}}}}", f"default_model={name}",
              "refresh_seconds=0.3", "routing_seed=0", f"state_url={state_url}"]
    servers = [dlforge_serve(ROOT, *common, f"log_dir={tmp_path}/{r}/predictions",
                             f"metrics_dir={tmp_path}/{r}/metrics") for r in "ab"]
    with together(*servers) as started:
        urls = [url for url, _ in started]
        with nginx(tmp_path / "nginx", urls) as proxy:
            yield urls, proxy, project


def rewards_through(proxy: str, name: str) -> dict[str, dict]:
    """Each replica's /info rewards, as the load balancer reaches them: upstream -> rewards."""
    seen = {}
    for _ in range(4):  # round robin: both replicas
        info = httpx.get(f"{proxy}/info", timeout=10)
        assert info.status_code == 200, info.text
        seen[info.headers["x-upstream"]] = info.json()["models"][name]["rewards"]
    return seen


def test_feedback_through_one_replica_moves_the_bandit_of_both(replicas):
    (a, b), proxy, project = replicas
    name = project.model_name
    info = httpx.get(f"{a}/info", timeout=10).json()
    assert "s3cret" not in str(info) and ":***@" in info["server"]["state"]
    upstreams = {a.removeprefix("http://"), b.removeprefix("http://")}
    assert rewards_through(proxy, name) == dict.fromkeys(upstreams, {})

    # Replica a answers (no feedback yet: the bandit tries both versions)...
    answers = [httpx.post(f"{a}/predict", json={"inputs": [TEXTS[i % 2]]}, timeout=30).json()
               for i in range(20)]
    counts = {v: sum(x["version"] == v for x in answers) for v in ("1", "2")}
    assert counts["1"] and counts["2"], counts
    # ...and replica b takes the feedback, finding a's answers. The labels say v1 is
    # right and v2 wrong, whatever they predicted.
    for answer in answers:
        predicted = answer["predictions"][0]["label"]
        label = predicted if answer["version"] == "1" else f"not {predicted}"
        scored = httpx.post(f"{b}/feedback", json={"request_id": answer["request_id"],
                                                   "label": label}, timeout=10)
        assert scored.status_code == 200, scored.text
        assert scored.json()["rewarded"] is True
    again = httpx.post(f"{a}/feedback", json={"request_id": answer["request_id"],
                                              "label": label}, timeout=10)
    assert again.status_code == 409, again.text  # taken once, across replicas

    expected = {"1": {"wins": counts["1"], "losses": 0},
                "2": {"wins": 0, "losses": counts["2"]}}
    assert rewards_through(proxy, name) == dict.fromkeys(upstreams, expected)
    time.sleep(1.0)  # refresh_seconds: every worker re-reads the rewards
    served: dict[str, list[str]] = {}
    for _ in range(12):
        answer = httpx.post(f"{proxy}/predict", json={"inputs": TEXTS}, timeout=30)
        assert answer.status_code == 200, answer.text
        served.setdefault(answer.headers["x-upstream"], []).append(answer.json()["version"])
    assert set(served) == upstreams  # both replicas answered...
    assert all(set(versions) == {"1"} for versions in served.values()), served  # ...with v1
