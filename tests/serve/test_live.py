"""``dlforge serve`` as users run it: a real process on a loopback port, a blue-green
switch under load, and a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.helpers import ROOT, dlforge, dlforge_serve
from tests.toy import TEXTS

pytestmark = pytest.mark.slow


@pytest.fixture
def live(two_versions):
    """``dlforge serve`` over the two versions; yields (base url, project, process)."""
    project = two_versions
    name = project.model_name
    with dlforge_serve(ROOT, f"paths.root={project.root}",
                       f"tracking.tracking_uri={project.tracking_uri}", 
                       f"models={{{name}: {{strategy: blue_green}}}}", f"default_model={name}",
                       "refresh_seconds=0.5") as (url, server):
        yield url, project, server


def test_blue_green_switch_under_load_drops_nothing_and_sigterm_stops_every_process(live):
    url, project, server = live
    not_json = httpx.post(f"{url}/predict", content=b"hello",
                          headers={"content-type": "text/plain"})
    assert not_json.status_code == 422, not_json.text
    seen: list[list[tuple[float, int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def load(mine: list) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                answer = client.post("/predict", json={"inputs": TEXTS})
                mine.append((sent, answer.status_code, answer.json().get("version")))

    threads = [threading.Thread(target=load, args=(mine,)) for mine in seen]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        dlforge("models", "--tracking-uri", project.tracking_uri, "promote",
                project.model_name, "2", check=True)
        promoted = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    answers = [a for mine in seen for a in mine]
    assert {status for _, status, _ in answers} == {200}, "requests failed during the switch"
    for mine in seen:  # each client sees v1, then v2, never back
        versions = [version for _, _, version in mine]
        assert versions == sorted(versions) and versions[0] == "1" and versions[-1] == "2"
    late = {version for sent, _, version in answers if sent > promoted + 1.5}
    assert late == {"2"}  # refresh_seconds=0.5: everyone follows the alias within it

    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    deadline = time.monotonic() + 15
    with pytest.raises(ProcessLookupError):  # no worker process outlives the server
        while time.monotonic() < deadline:
            os.killpg(server.pid, 0)
            time.sleep(0.2)
        print(subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(server.pid)],
                             capture_output=True, text=True).stdout)
