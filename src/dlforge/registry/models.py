"""Registered models: versions, aliases, promotion and rollback (``dlforge models``).

    dlforge models [--tracking-uri URI] list [NAME] [--json]
    dlforge models [--tracking-uri URI] promote NAME VERSION [--alias champion]
    dlforge models [--tracking-uri URI] rollback NAME [--alias champion]

Models are addressed by alias (``models:/NAME@champion``), never by stage. A
promotion is one alias switch in the registry (blue-green: readers see the
old version or the new one, nothing in between). Every switch is recorded in
the model's alias history, which is how ``rollback`` knows the previous
champion.

Concurrent promotions (threads, processes, hosts) lose no switch:

- Each switch is its own model tag, ``dlforge.alias_history.<UTC time>-<random>``,
  holding one JSON entry. Nothing is read, modified and written back, so no
  writer can overwrite another's entry, whatever the store (SQLite, an MLflow
  server, a database shared by hosts). The history is these tags sorted by
  key, i.e. by the promoting host's clock; the oldest beyond ``KEEP`` are
  deleted. (Older registries kept one JSON list in the ``dlforge.alias_history``
  tag itself; it is read as the oldest part of the history.)
- On a local store (a SQLite file, the default) promotions and rollbacks also
  take a file lock next to the database, so that reading the current alias,
  switching it and recording the switch is one step: every entry's
  ``previous`` is the version its switch replaced, and SQLite never sees two
  writers race to insert the same alias. A lock on one host cannot serialise
  several hosts writing to a tracking server; there, an entry's ``previous``
  is what that promoter read just before its switch, and an alias switch that
  fails on a write conflict is retried with backoff (setting an alias is
  idempotent).

Registry errors reach the user as a :class:`DlforgeError` naming the model, the
alias, the version and what to do, never as a store traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.io import file_lock

log = logging.getLogger(__name__)

HISTORY = "dlforge.alias_history"  # key prefix of the switch tags (and the legacy list tag)
KEEP = 50  # alias switches kept in the history
RETRIES = 8  # attempts at an alias switch that fails on a transient store error


def history(client, name: str) -> list[dict]:
    """Alias switches of model ``name``, oldest first (at most ``KEEP``)."""
    tags = _model(client, name).tags
    legacy = json.loads(tags.get(HISTORY, "[]"))
    return (legacy + [json.loads(tags[key]) for key in _switch_keys(tags)])[-KEEP:]


def promote(client, name: str, version: str | int, alias: str = "champion",
            reason: str = "manual") -> dict:
    """Point ``alias`` at ``version`` and record the switch; return the history entry.

    Raises:
        NotFound: when the model or the version does not exist.
        DlforgeError: when the registry refuses or fails the switch.
    """
    with _promotion_lock(client):
        return _switch(client, name, str(version), alias, reason)


def rollback(client, name: str, alias: str = "champion") -> dict:
    """Point ``alias`` back at the version it had before its current one.

    Repeated rollbacks keep going back (v3 -> v2 -> v1), since the target is
    what preceded the current version's own promotion, not the last switch.

    Raises:
        DlforgeError: when there is no earlier version to go back to.
    """
    with _promotion_lock(client):
        current = alias_version(client, name, alias)
        if current is None:
            raise DlforgeError(f"model {name} has no '{alias}' alias to roll back. Fix: "
                               f"`dlforge models promote {name} VERSION --alias {alias}`")
        promoted = [e for e in history(client, name) if e["alias"] == alias
                    and e["version"] == current and e["reason"] != "rollback"]
        target = promoted[-1]["previous"] if promoted else None
        if target is None:
            raise DlforgeError(f"{name}@{alias} is version {current} and has no earlier "
                               "version in its history to roll back to")
        return _switch(client, name, target, alias, reason="rollback")


def _switch(client, name: str, version: str, alias: str, reason: str) -> dict:
    """Switch the alias and add the switch's own history tag (the caller holds the lock)."""
    _version(client, name, version)
    previous = alias_version(client, name, alias)
    what = f"point {name}@{alias} at version {version}"
    retry = (f"Fix: retry `dlforge models promote {name} {version} --alias {alias}`; if it "
             f"keeps failing, check that the tracking store {_registry_uri(client)} is "
             "reachable and writable")
    refused = (f"Fix: choose another alias, e.g. `dlforge models promote {name} {version} "
               "--alias candidate` (letters, digits, _ and -; the registry reserves `latest` "
               "and v<number>)")
    _call(lambda: client.set_registered_model_alias(name, alias, version), what, retry,
          attempts=RETRIES, invalid=refused)
    entry = {"alias": alias, "version": version, "previous": previous, "reason": reason,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    key = f"{HISTORY}.{stamp}-{uuid.uuid4().hex[:8]}"
    _call(lambda: client.set_registered_model_tag(name, key, json.dumps(entry)),
          f"record the switch of {name}@{alias} to version {version} (the alias was switched; "
          f"`dlforge models rollback {name}` will not know it)", retry, attempts=RETRIES)
    _prune(client, name)
    return entry


def _switch_keys(tags: dict) -> list[str]:
    """Keys of the per-switch history tags, oldest first."""
    return sorted(key for key in tags if key.startswith(f"{HISTORY}."))


def _prune(client, name: str) -> None:
    """Delete the switch tags beyond the newest ``KEEP``; a failure only leaves more."""
    from mlflow.exceptions import MlflowException

    try:
        for key in _switch_keys(_model(client, name).tags)[:-KEEP]:
            client.delete_registered_model_tag(name, key)  # a concurrent pruner's: no-op
    except (DlforgeError, MlflowException, *_sqlalchemy_errors()) as err:
        log.warning("could not delete old alias history tags of model %s (history() still "
                    "returns the newest %d): %s", name, KEEP, _first_line(err))


def _call(write: Callable[[], object], what: str, fix: str, attempts: int = 1,
          invalid: str | None = None) -> None:
    """Run a registry write; retry transient failures with backoff, then raise a DlforgeError
    ending with ``fix``, or with ``invalid`` when the registry refused a value it was given."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            write()
            return
        except (MlflowException, *_sqlalchemy_errors()) as err:
            reason = _first_line(err).rstrip(".")
            if invalid and getattr(err, "error_code", None) == "INVALID_PARAMETER_VALUE":
                raise DlforgeError(f"could not {what}: {reason}. {invalid}") from None
            if attempt + 1 == attempts or not _transient(err):
                raise DlforgeError(f"could not {what}: {reason}. {fix}") from None
        time.sleep(0.05 * 2**attempt * (1 + random.random()))  # jitter: writers drift apart


def _transient(err: Exception) -> bool:
    """A write conflict or an unavailable store, not a refusal that a retry repeats.
    MLflow's SQL store reports a conflict (two writers inserting one alias row) as a
    BAD_REQUEST raised from the database's IntegrityError: the retry finds the row."""
    code = getattr(err, "error_code", None)
    # IntegrityError: the name of that error in SQLAlchemy and in every DB-API driver
    conflict = type(err.__cause__).__name__ == "IntegrityError"
    return conflict or code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                                    "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST")


def _sqlalchemy_errors() -> tuple[type[Exception], ...]:
    """The SQL store's own errors, where it lets one through unwrapped."""
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # mlflow-skinny against a server
        return ()
    return (SQLAlchemyError,)


def _first_line(err: Exception) -> str:
    """An error's gist, without the SQL statement and parameters a store appends."""
    text = str(getattr(err, "message", None) or err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


@contextlib.contextmanager
def _promotion_lock(client) -> Iterator[None]:
    """Serialise promotions on a local store (a file lock next to it); no-op for a server."""
    path = _lock_path(_registry_uri(client))
    if path is None:
        yield
        return
    with file_lock(path):
        yield


def _lock_path(uri: str) -> Path | None:
    """The lock file of a store on this machine's disk, or None for a server or database."""
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///").split("?")[0])
        return database.with_name(f".{database.name}.promote.lock")
    if uri.startswith("file:"):  # MLflow's file store: a folder
        return Path(urlparse(uri).path) / ".dlforge-promote.lock"
    return None


def _registry_uri(client) -> str:
    # MlflowClient has no public accessor for its registry URI; dlforge sets one URI
    # for both, so the tracking URI is the fallback.
    return getattr(client, "_registry_uri", None) or client.tracking_uri


def list_models(client, name: str | None = None) -> list[dict]:
    """Registered models (or one) with their versions, aliases and key tags."""
    models = [_model(client, name)] if name else client.search_registered_models()
    out = []
    for model in models:
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = _aliases(model)
        out.append({"name": model.name, "aliases": aliases, "versions": [
            {"version": str(v.version), "run_id": v.run_id, "status": v.status,
             "aliases": sorted(a for a, n in aliases.items() if n == str(v.version)),
             "created": v.creation_timestamp,
             "tags": {k: t for k, t in v.tags.items() if k.startswith("dlforge.")}}
            for v in sorted(versions, key=lambda v: int(v.version), reverse=True)]})
    return out


def _model(client, name: str):
    return _read(lambda: client.get_registered_model(name), f"model {name}",
                 f"no registered model {name!r}. Fix: see `dlforge models list`, or "
                 "register one with `dlforge register experiment=...`")


def _version(client, name: str, version: str):
    return _read(lambda: client.get_model_version(name, version), f"model {name} version "
                 f"{version}", f"model {name} has no version {version}. Fix: see "
                 f"`dlforge models list {name}`")


def _read(get: Callable[[], object], what: str, missing: str):
    """``get()``; NotFound with ``missing`` when the registry has no such thing."""
    from mlflow.exceptions import MlflowException

    try:
        return get()
    except (MlflowException, *_sqlalchemy_errors()) as err:
        if getattr(err, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST",
                                                "INVALID_PARAMETER_VALUE"):
            raise NotFound(missing) from None
        raise DlforgeError(f"could not read {what} from the registry: {_first_line(err)}. "
                           "Fix: check that the tracking store is reachable, then retry") from None


def alias_version(client, name: str, alias: str) -> str | None:
    return _aliases(_model(client, name)).get(alias)


def _aliases(model) -> dict[str, str]:
    """Alias -> version, versions as strings (stores differ in what they return)."""
    return {alias: str(version) for alias, version in dict(model.aliases).items()}
