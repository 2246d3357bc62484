"""A disk memo for values computed from config files.

Snakemake re-reads the stage graph on every run, even when nothing is to be
done, and composing the Hydra configs behind it takes seconds. The graph only
changes when a config file (the project's, the packaged ones, the workflow
config) or the project's code changes, so it is kept in a JSON file keyed by a
digest of those files' contents: a run with unchanged files reads it back in
milliseconds, a changed file recomputes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from dlforge.core.io import write_text_atomic

CACHE_FILE = Path(".snakemake") / "dlforge" / "memo.json"


@functools.cache
def config_digest(*roots: str) -> str:
    """sha256 over the paths and bytes of every YAML and Python file under ``roots``
    (and the cwd)."""
    digest = hashlib.sha256(os.getcwd().encode())
    for root in roots:
        path = Path(root)
        files = [path] if path.is_file() else sorted(
            f for pattern in ("*.yaml", "*.py") for f in path.rglob(pattern))
        for file in files:
            digest.update(str(file).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def memo(*roots: str) -> Callable:
    """Decorate a function of strings that returns JSON data: cached per digest of ``roots``."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: str):
            digest = config_digest(*roots)
            key = f"{function.__module__}.{function.__name__}{json.dumps(args)}"
            store = _read()
            if store.get("digest") != digest:
                store = {"digest": digest, "values": {}}
            if key not in store["values"]:
                store["values"][key] = function(*args)
                _write(store)
            return store["values"][key]

        wrapper.uncached = function
        return wrapper

    return decorate


def _read() -> dict:
    try:
        return json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _write(store: dict) -> None:
    """Atomic replace; a lost race only costs the other writer's entry."""
    write_text_atomic(CACHE_FILE, json.dumps(store))
