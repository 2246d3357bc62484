"""Who may talk to the server: the Host names it answers, the API key sent once, and
LitServe's own key variable refused. The server is built in-process; nothing here
needs a model (the middleware answers before a request reaches a worker)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.serve.server import build_server
from dlforge.stages.serve import server_settings

BODY = {"inputs": ["hello"]}


def client(tmp_path, *overrides: str) -> TestClient:
    """A client of a server over model ``m`` that is built but not started."""
    settings = server_settings(compose("serve", [
        f"paths.root={tmp_path}", "api_key=null", "models={m: {}}", "accelerator=cpu",
        *overrides]))
    return TestClient(build_server(settings).app, base_url="http://localhost")


def status(client: TestClient, host: str | list[str], **headers: str) -> int:
    """The status of GET /info sent with ``host`` as its Host header(s)."""
    hosts = [host] if isinstance(host, str) else host
    sent = [("host", h) for h in hosts] + list(headers.items())
    return client.get("/info", headers=sent).status_code


def test_without_a_key_a_loopback_server_answers_only_loopback_host_names(tmp_path):
    served = client(tmp_path)  # host: 127.0.0.1, the default
    for host in ["localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:8000",
                 "[::1]", "[::1]:8000"]:
        assert status(served, host) == 200, host
    for host in ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
                 "localhost:http", "", ["localhost", "evil.example"]]:
        assert status(served, host) == 421, host
    refused = served.post("/predict", json=BODY, headers={"host": "evil.example:8000"})
    assert refused.status_code == 421
    detail = refused.json()["detail"]
    assert "localhost" in detail and "allowed_hosts" in detail and "DLFORGE_API_KEY" in detail
    # load balancers probe the health checks by address
    assert served.get("/health/live", headers={"host": "10.0.0.7:8000"}).status_code == 200


def test_a_key_an_exposed_address_or_allowed_hosts_decide_the_names_answered(tmp_path,
                                                                            caplog):
    assert status(client(tmp_path / "key", "api_key=s3cret"), "evil.example",
                  **{"x-api-key": "s3cret"}) == 200  # a web page cannot know the key
    listed = client(tmp_path / "listed", "allowed_hosts=[serve.example.com]")
    assert status(listed, "serve.example.com:443") == 200
    assert status(listed, "localhost") == 421
    with caplog.at_level(logging.WARNING, logger="dlforge.serve.server"):
        exposed = client(tmp_path / "exposed", "host=0.0.0.0")
    assert status(exposed, "evil.example") == 200  # the operator chose to expose it
    assert "without an API key" in caplog.text and "api_key=null" in caplog.text


@pytest.mark.parametrize("value", ["[]", "['http://serve.example.com']",
                                   "['serve.example.com:80']", "['a b']", "localhost"])
def test_allowed_hosts_is_checked_at_the_start(tmp_path, value):
    with pytest.raises(DlforgeError, match=r"allowed_hosts.*Fix: (list host names|set)"):
        client(tmp_path, f"allowed_hosts={value}")


def test_the_key_header_sent_twice_is_refused_whatever_the_values(tmp_path):
    served = client(tmp_path, "api_key=s3cret")
    key, bearer = ("x-api-key", "s3cret"), ("authorization", "Bearer s3cret")
    assert served.get("/info", headers=[key]).status_code == 200
    for headers in ([key, key], [("x-api-key", "nope"), key], [bearer, bearer],
                    [key, ("x-api-key", "nope")]):
        answer = served.get("/info", headers=headers)
        assert answer.status_code == 401, headers
        assert "more than once" in answer.json()["detail"]


def test_litserves_own_key_variable_stops_the_start_naming_dlforges(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_SERVER_API_KEY", "s3cret")
    with pytest.raises(DlforgeError, match="LIT_SERVER_API_KEY is set.*Fix: set the key in "
                                           "DLFORGE_API_KEY"):
        client(tmp_path)
    assert not (tmp_path / "outputs").exists()  # refused before anything was written
