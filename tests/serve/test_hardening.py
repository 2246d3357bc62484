"""``dlforge serve`` under hostile clients and lost processes, on a real loopback port.

One copy of the two standard model versions per test module, a server per test:
bad clients beside good ones, slow and oversized connections, then the worker
and the HTTP process killed under load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.helpers import ROOT, dlforge_serve
from tests.toy import TEXTS, copy_project

pytestmark = pytest.mark.slow

READ_TIMEOUT = 3  # seconds, so that the slow connections are cut within the test


@pytest.fixture(scope="module")
def versions(tmp_path_factory, two_versions_template):
    """The module's copy of the two standard versions (v1 champion, v2 candidate)."""
    return copy_project(two_versions_template, tmp_path_factory.mktemp("hardening") / "project")


@contextlib.contextmanager
def serving(versions):
    """``dlforge serve`` over both versions; yields (url, process)."""
    name = versions.model_name
    with dlforge_serve(ROOT, f"paths.root={versions.root}",
                       f"tracking.tracking_uri={versions.tracking_uri}",
                       f"models={{{name}: {{strategy: blue_green}}}}", f"default_model={name}",
                       "refresh_seconds=0.5", f"read_timeout={READ_TIMEOUT}", "max_inputs=8",
                       "request_timeout=20") as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def live(versions):
    """One server for the module's tests that leave it running: each test's clients
    find it as the one before left it, as a server's clients do."""
    with serving(versions) as (url, server):
        yield url, server


@pytest.fixture
def own_live(versions):
    """A server of the test's own, for a test that kills its processes."""
    with serving(versions) as (url, server):
        yield url, server


BAD_BODIES = [
    {"inputs": TEXTS, "model": "no-such-model"},                  # 404
    {"inputs": ["x"] * 9},                                        # 413: max_inputs=8
    {"inputs": TEXTS, "version": 99},                             # 404
    {"inputs": TEXTS, "version": 2**63},                          # 422
    {"inputs": TEXTS, "alias": "nobody"},                         # 404
    {"inputs": [1, 2, 3]},                                        # 422
    {"inputs": ["x" * 20000]},                                    # 413: max_input_chars
    {"inputs": TEXTS, "unknown": 1},                              # 422
]
BAD_RAW = [
    b'{"inputs": ["\\ud800"]}',                                   # a lone surrogate
    b'{"inputs": ["a"], "top_k": NaN}',
    b'{"inputs": ["a"], "version": Infinity}',
    b'{"inputs": ' + b"[" * 100000 + b"]" * 100000 + b"}",       # deep JSON
    b'{"inputs": [' + b",".join([b"0"] * 200000) + b"]}",         # many items, cheap to send
    b"not json",
]


def bad_requests():
    for body in BAD_BODIES:
        yield {"json": body}
    for raw in BAD_RAW:
        yield {"content": raw, "headers": {"content-type": "application/json"}}
    yield {"json": {"inputs": TEXTS}, "headers": {"host": "rebound.example"}}  # 421: no key


def test_bad_clients_never_fail_good_ones_and_get_short_4xx_answers(live):
    url, _ = live
    bad = list(bad_requests())
    with httpx.Client(base_url=url, timeout=30) as client:
        for request in bad:  # each alone: a 4xx, short, never echoing the input
            answer = client.post("/predict", **request)
            assert 400 <= answer.status_code < 500, (request, answer.text)
            assert len(answer.content) < 2000 and "ud800" not in answer.text
            assert "detail" in answer.json()

        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200  # loaded
    good_answers, bad_answers, stop = [], [], threading.Event()

    def good() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                good_answers.append(client.post("/predict", json={"inputs": TEXTS}).status_code)

    def hostile() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                for request in bad:
                    bad_answers.append(client.post("/predict", **request).status_code)

    threads = [threading.Thread(target=good) for _ in range(8)]
    threads += [threading.Thread(target=hostile) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(6)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(good_answers) > 50 and len(bad_answers) > 50
    assert set(good_answers) == {200}, f"good requests failed: {sorted(set(good_answers))}"
    assert all(400 <= status < 500 for status in bad_answers), sorted(set(bad_answers))


def test_an_unknown_alias_is_404_naming_the_aliases_and_a_foreign_host_name_is_421(live):
    url, _ = live
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/predict", json={"inputs": TEXTS, "alias": "nobody"})
        assert answer.status_code == 404, answer.text
        detail = answer.json()["detail"]
        assert "has no alias 'nobody' (its aliases: " in detail and "champion (v1)" in detail
        assert "Fix: name one of them" in detail
        # without an API key, a server on loopback answers only loopback names
        rebound = client.post("/predict", json={"inputs": TEXTS},
                              headers={"host": "rebound.example:80"})
        assert rebound.status_code == 421 and "allowed_hosts" in rebound.json()["detail"]
        port = url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            answer = client.post("/predict", json={"inputs": TEXTS}, headers={"host": host})
            assert answer.status_code == 200, answer.text


def test_slow_and_oversized_connections_are_cut_while_predictions_go_on(live):
    url, _ = live
    port = int(url.rsplit(":", 1)[1])
    slow = []
    for _ in range(300):  # headers and 13 of 1000 body bytes, then nothing
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /predict HTTP/1.1\r\nhost: localhost\r\n"
                     b"content-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n" + b'{"inputs": ["')
        slow.append(sock)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            statuses = [client.post("/predict", json={"inputs": TEXTS}).status_code
                        for _ in range(40)]
            assert set(statuses) == {200}, statuses
            assert client.get("/health/ready").status_code == 200
        time.sleep(READ_TIMEOUT + 1.5)
        for sock in slow[:20]:  # past read_timeout: 408, and the connection is closed
            sock.settimeout(5)
            answer = _read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        for sock in idle:
            sock.settimeout(5)
            assert _read_all(sock) == b""  # closed without a word
    finally:
        for sock in slow + idle:
            sock.close()

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-big: " + b"a" * 100000)
        assert _read_all(sock).startswith(b"HTTP/1.1 431")
        # The refusal ends with a FIN, not a close: what the client still sends is read
        # and dropped (closing on unread bytes sends a reset, which can overtake the
        # answer; a reset would fail these sends).
        for _ in range(3):
            sock.sendall(b"a" * 1000)
            time.sleep(0.1)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _worker_pid(url: str) -> int:
    (worker,) = httpx.get(f"{url}/health/ready", timeout=10).json()["workers"]
    return worker["pid"]


def test_a_killed_worker_is_restarted_and_a_killed_http_process_stops_the_server(own_live):
    url, server = own_live
    pid = _worker_pid(url)
    os.kill(pid, signal.SIGSTOP)  # hold the worker, so that requests are in flight in it
    answers: list[tuple[int, float]] = []

    def ask() -> None:
        sent = time.monotonic()
        status = httpx.post(f"{url}/predict", json={"inputs": TEXTS}, timeout=60).status_code
        answers.append((status, time.monotonic() - sent))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [503] * 6, answers
    assert time.monotonic() - killed < 3, "the held requests were not answered promptly"

    deadline = time.monotonic() + 90
    ready = httpx.get(f"{url}/health/ready", timeout=10)
    assert ready.status_code == 503 and not ready.json()["ready"]
    while httpx.get(f"{url}/health/ready", timeout=10).status_code != 200:
        assert server.poll() is None and time.monotonic() < deadline, "no worker came back"
        time.sleep(0.5)
    answer = httpx.post(f"{url}/predict", json={"inputs": TEXTS}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert _worker_pid(url) != pid

    http_pid = httpx.get(f"{url}/health/live", timeout=10).json()["pid"]
    assert http_pid != server.pid
    stop, outcomes = threading.Event(), []

    def load() -> None:  # clients keep asking while the HTTP process dies
        while not stop.is_set():
            try:
                outcomes.append(httpx.post(f"{url}/predict", json={"inputs": TEXTS},
                                           timeout=10).status_code)
            except httpx.HTTPError:
                outcomes.append("refused")
                time.sleep(0.1)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while 200 not in outcomes:  # kill it while it serves
        assert time.monotonic() < deadline, outcomes
        time.sleep(0.05)
    os.kill(http_pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        assert server.wait(timeout=30) != 0, "the server went on without its HTTP process"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert time.monotonic() - killed < 15, "the server took too long to stop"
    assert 200 in outcomes and outcomes[-1] == "refused"  # served, then nothing listens
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=5)


def test_feedback_rejects_what_it_cannot_store_and_errors_are_json(live):
    url, _ = live
    with httpx.Client(base_url=url, timeout=30) as client:
        request_id = client.post("/predict", json={"inputs": TEXTS}).json()["request_id"]
        for body in [{"request_id": request_id, "label": "x", "index": 2**63},
                     {"request_id": request_id, "label": "x" * 1_000_000},
                     {"request_id": "r" * 1000, "label": "x"}]:
            answer = client.post("/feedback", json=body)
            assert answer.status_code in (413, 422), answer.text
            assert len(answer.content) < 2000
        raw = json.dumps({"request_id": request_id, "label": "\ud800"}).encode()
        answer = client.post("/feedback", content=raw,
                             headers={"content-type": "application/json"})
        assert answer.status_code == 422 and "ud800" not in answer.text, answer.text
