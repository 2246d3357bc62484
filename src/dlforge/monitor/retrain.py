"""The retrain marker (``ExperimentLayout.retrain_marker``), raised when monitoring finds drift.

    {"request": 3, "reasons": ["..."], "time": 1767312000.0, "report": ".../report.json"}

``request`` counts up by one on every drifting monitor run, so a workflow
that lists the file as an input (or compares :func:`retrain_request` with the
value it last acted on) retrains once per new request. A run without drift
leaves the file as it is. Request 0 (written by :func:`ensure_marker`) means
no request yet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.io import file_lock, write_json_atomic


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        int(record["request"])
    except (ValueError, KeyError, TypeError) as err:
        raise DlforgeError(f"{path} is not a retrain marker ({err}). Fix: delete it; the next "
                           "drifting `dlforge monitor` run writes a new one") from None
    return record


def retrain_request(marker: str | Path) -> int:
    """The number of the latest retrain request in ``marker``; 0 when there is none."""
    record = _read(Path(marker))
    return int(record["request"]) if record else 0


def request_retrain(marker: str | Path, reasons: list[str],
                    report: str | Path | None = None) -> dict:
    """Raise the next retrain request (the previous one + 1, from 1) and return it.

    Read, increment and write happen under a lock, and the file is replaced
    atomically, so concurrent monitor runs never lose a request.
    """
    path = Path(marker)
    with file_lock(_lock(path)):
        previous = _read(path)
        record = {"request": int(previous.get("request", 0)) + 1, "reasons": list(reasons),
                  "time": round(time.time(), 3),
                  "report": str(report) if report is not None else None}
        write_json_atomic(path, record)
    return record


def ensure_marker(marker: str | Path) -> Path:
    """Create the marker with request 0 when there is none (the ingest stage does, so
    that both workflow front ends can list it as an input of training)."""
    path = Path(marker)
    with file_lock(_lock(path)):
        if not path.is_file():
            write_json_atomic(path, {"request": 0, "reasons": [], "time": None, "report": None})
    return path


def _lock(marker: Path) -> Path:
    return marker.with_name(f".{marker.name}.lock")
