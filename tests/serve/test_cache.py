"""The serving model cache: LRU eviction, transparent reload, failures kept to one version."""

from __future__ import annotations

import threading
import time

import pytest

from dlforge.serve.cache import LoadFailed, ModelCache


class Loader:
    def __init__(self, broken=(), delay: float = 0.0):
        self.calls: list[tuple[str, str]] = []
        self.broken, self.delay = set(broken), delay

    def __call__(self, name: str, version: str):
        self.calls.append((name, version))
        time.sleep(self.delay)
        if (name, version) in self.broken:
            raise OSError("weights.safetensors does not match SHA256SUMS")
        return f"{name}:{version}"


def test_least_recently_used_is_evicted_and_reloaded_on_next_use():
    loader = Loader()
    cache = ModelCache(loader, capacity=2)
    assert cache.get("intent", "1") == "intent:1"
    cache.get("digits", "4")
    cache.get("intent", "1")                 # intent v1 is now the most recent
    cache.get("intent", "2")                 # evicts digits v4
    assert cache.loaded() == [("intent", "1"), ("intent", "2")]
    assert cache.get("digits", "4") == "digits:4"  # transparently loaded again
    assert cache.loaded() == [("intent", "2"), ("digits", "4")]
    assert loader.calls.count(("digits", "4")) == 2 and cache.evictions == 2


def test_a_version_that_fails_to_load_fails_alone_and_is_not_retried_at_once():
    loader = Loader(broken={("intent", "3")})
    cache = ModelCache(loader, capacity=2, retry_after=60)
    with pytest.raises(LoadFailed, match="intent v3: weights.safetensors does not match"):
        cache.get("intent", "3")
    with pytest.raises(LoadFailed):
        cache.get("intent", "3")
    assert loader.calls.count(("intent", "3")) == 1  # remembered, not reloaded per request
    assert cache.get("intent", "2") == "intent:2"    # other versions keep working
    loader.broken.clear()
    cache.retry_after = 0
    assert cache.get("intent", "3") == "intent:3"    # retried once the wait has passed


def test_concurrent_requests_load_a_version_once():
    loader = Loader(delay=0.2)
    cache = ModelCache(loader, capacity=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("intent", "1")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["intent:1"] * 8 and loader.calls == [("intent", "1")]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="serve.cache.capacity must be >= 1"):
        ModelCache(Loader(), capacity=0)
