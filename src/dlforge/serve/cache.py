"""The serving model cache: loaded models by (name, version), least recently used out.

The book's model eviction: a server holds at most ``capacity`` loaded models;
asking for one that is not loaded loads it (evicting the least recently used
one) and the caller never sees the difference, except in latency. A version
that fails to load raises :class:`LoadFailed` for that version only, and the
failure is remembered for ``retry_after`` seconds so that a broken version does
not make every request pay for a reload attempt.

Thread-safe: concurrent requests for one version load it once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (model name, version)


class LoadFailed(Exception):
    """A model version could not be loaded (its message says why)."""


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    failed_at: float | None = None
    error: str = ""


class ModelCache:
    """At most ``capacity`` models from ``loader(name, version)``, LRU-evicted.

    Args:
        loader: returns a loaded model; raises on failure.
        capacity: models kept loaded at once (at least 1).
        retry_after: seconds before a failed version is tried again.
    """

    def __init__(self, loader: Callable[[str, str], Any], capacity: int,
                 retry_after: float = 30.0):
        if capacity < 1:
            raise ValueError(f"serve.cache.capacity must be >= 1 (got {capacity})")
        self.loader, self.capacity, self.retry_after = loader, capacity, retry_after
        self._models: OrderedDict[Key, Any] = OrderedDict()
        self._slots: dict[Key, _Slot] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def get(self, name: str, version: str) -> Any:
        """The loaded model, loading (and evicting) as needed.

        Raises:
            LoadFailed: when this version does not load (now or within retry_after).
        """
        key = (name, str(version))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            slot = self._slots.setdefault(key, _Slot())
        with slot.lock:  # one loader per version; others wait for its result
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            if slot.failed_at is not None and time.monotonic() - slot.failed_at < \
                    self.retry_after:
                raise LoadFailed(slot.error)
            try:
                model = self.loader(*key)
            except Exception as err:
                slot.failed_at, slot.error = time.monotonic(), f"{name} v{version}: {err}"
                raise LoadFailed(slot.error) from err
            slot.failed_at = None
            with self._lock:
                self._models[key] = model
                self.loads += 1
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
                    self.evictions += 1
            return model

    def loaded(self) -> list[Key]:
        """Loaded (name, version) pairs, least recently used first."""
        with self._lock:
            return list(self._models)
