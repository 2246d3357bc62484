"""The prediction server's settings: conf/serve.yaml, typed and checked once, at the start.

    settings = ServeSettings.from_config(values)   # DlforgeError: "max_batch_size=0 in ..."

``values`` holds every key of conf/serve.yaml with its file paths made
absolute, plus ``cache_dir`` and ``tracking_uri`` (``dlforge.stages.serve``
builds it from the composed config). Every serving module reads attributes of
this one object; it is plain data, pickled to the inference worker processes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dlforge.core.errors import DlforgeError
from dlforge.core.settings import Settings, above, at_least, between, one_of
from dlforge.core.urls import redact
from dlforge.serve.hosts import hosts_problem
from dlforge.serve.release import STRATEGIES, Release
from dlforge.serve.statedb import SCHEMES


@dataclass(frozen=True)
class ModelSettings(Settings):
    """How one served model is released (``models.<name>``); defaults are :class:`Release`'s."""

    SOURCE = "conf/serve.yaml"

    strategy: str = field(default=Release.strategy, metadata=one_of(*STRATEGIES))
    alias: str = Release.alias
    share: float = field(default=Release.share, metadata=between(0, 1))
    versions: tuple[str, ...] = Release.versions
    explore: float = field(default=Release.explore, metadata=between(0, 1))
    max_rewards_per_minute: float = field(default=Release.max_rewards_per_minute,
                                          metadata=at_least(0))

    @classmethod
    def from_config(cls, node: Any, prefix: str = "") -> ModelSettings:
        """As :meth:`Settings.from_config`, but a key that is not a field is an error:
        a misspelt release key would otherwise be ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        if isinstance(node, dict) and (unknown := sorted(set(node) - names)):
            raise DlforgeError(f"{prefix}: unknown keys {unknown} in {cls.SOURCE}. Fix: use "
                               f"strategy ({', '.join(STRATEGIES)}), alias, share, versions, "
                               "explore, max_rewards_per_minute")
        return super().from_config(node, prefix)

    def release(self) -> Release:
        """A fresh :class:`Release` (each worker keeps its own aliases and rewards)."""
        return Release(**self.as_dict())


@dataclass(frozen=True)
class ServeSettings(Settings):
    """Every key of conf/serve.yaml (its comments say what each does), and where
    models are cached and tracked."""

    SOURCE = "conf/serve.yaml"

    host: str
    port: int = field(metadata=between(0, 65535))
    models: dict[str, ModelSettings]
    default_model: str
    cache_capacity: int = field(metadata=at_least(1))
    refresh_seconds: float = field(metadata=at_least(0))
    routing_seed: int | None
    max_batch_size: int = field(metadata=at_least(1))
    batch_timeout: float = field(metadata=at_least(0))
    accelerator: str
    workers_per_device: int = field(metadata=at_least(1))
    cpu_threads: int | None = field(metadata=at_least(1))  # null: torch's default
    log_level: str
    max_inputs: int = field(metadata=at_least(1))
    max_input_chars: int = field(metadata=at_least(1))
    max_image_pixels: int = field(metadata=at_least(1))
    max_body_bytes: int = field(metadata=at_least(1))
    max_pending_requests: int = field(metadata=at_least(1))
    request_timeout: float = field(metadata=above(0))
    read_timeout: float = field(metadata=above(0))
    keepalive_timeout: float = field(metadata=above(0))
    max_header_bytes: int = field(metadata=at_least(1))
    max_connections: int = field(metadata=at_least(1))
    min_free_disk_bytes: int = field(metadata=at_least(0))
    # Any: checked in check(), whose messages never show the key
    api_key: Any = field(repr=False)
    allowed_hosts: tuple[str, ...] | None  # null: see dlforge.serve.hosts
    log_dir: str
    log_max_bytes: int = field(metadata=at_least(1024))
    state_path: str
    # null: the SQLite file at state_path; a postgresql:// URL (may hold a password)
    state_url: str | None = field(repr=False)
    feedback_window_seconds: float = field(metadata=at_least(0))
    state_max_bytes: int = field(metadata=at_least(2**20))  # 1 MiB: room for the WAL's share
    max_label_chars: int = field(metadata=at_least(1))
    log_keep_files: int = field(metadata=at_least(0))
    metrics_dir: str
    cache_dir: str  # fetched model packages
    tracking_uri: str  # the MLflow registry the models come from

    @classmethod
    def from_config(cls, node: Any, prefix: str = "") -> ServeSettings:
        """As :meth:`Settings.from_config`, with each of ``models`` a :class:`ModelSettings`."""
        settings = super().from_config(node, prefix)
        models = {name: ModelSettings.from_config(spec, _key(prefix, f"models.{name}"))
                  for name, spec in settings.models.items()}
        return dataclasses.replace(settings, models=models)

    def check(self, prefix: str) -> None:
        if self.default_model not in self.models:
            raise DlforgeError(f"{_key(prefix, 'default_model')}={self.default_model!r} is not "
                               f"one of models ({sorted(self.models)}) in {self.SOURCE}. Fix: "
                               "name a served model, or add it to models")
        url = self.state_url
        if url is not None and not url.startswith(SCHEMES):
            raise DlforgeError(f"{_key(prefix, 'state_url')}={redact(url)!r} in {self.SOURCE} "
                               "is not a PostgreSQL URL. Fix: postgresql://USER@HOST:PORT/DB "
                               "(the password from PGPASSWORD or ~/.pgpass), or null for the "
                               "SQLite file at state_path")
        key = self.api_key
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise DlforgeError(f"{_key(prefix, 'api_key')} (or DLFORGE_API_KEY) is set but "
                               "empty or not text: the server would run without "
                               "authentication. Fix: set a key, or unset it (api_key=null) "
                               "to serve without one")
        problem = hosts_problem(self.allowed_hosts)
        if problem:
            raise self.invalid(prefix, "allowed_hosts", problem, "list host names, e.g. "
                               "[localhost, serve.example.com], or null (see conf/serve.yaml)")


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
