"""Liveness and readiness of the prediction server.

    GET /health/live    200 while the HTTP process answers at all (restart me if not),
                        with the pid of the HTTP process that answered
    GET /health/ready   200 when every inference worker runs and the log and state
                        disks can be written; 503 with the reasons otherwise
                        (send me no traffic for now); the workers' pids
    GET /health         LitServe's check, with the same conditions as /health/ready

Readiness is false while a worker is dead or restarting and while the disk
holding the prediction log or the serving state has less than
``min_free_disk_bytes`` free, so that a load balancer sends traffic elsewhere
instead of to answers that cannot be logged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlforge.serve.settings import ServeSettings

DISK_CHECK_SECONDS = 1.0  # a disk's free space is looked up at most this often


class DiskCheck:
    """Whether the folders the server writes have ``min_free`` bytes free (cached)."""

    def __init__(self, folders: list[str | Path], min_free: int):
        self.folders, self.min_free = [Path(f) for f in folders], min_free
        self._checked, self._problem = 0.0, None

    def problem(self) -> str | None:
        """None when every folder can be written, else why not."""
        now = time.monotonic()
        if now - self._checked >= DISK_CHECK_SECONDS:
            self._problem, self._checked = self._look(), now
        return self._problem

    def _look(self) -> str | None:
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                stat = os.statvfs(folder)
            except OSError as err:
                return f"{folder} cannot be written ({err.strerror})"
            free = stat.f_bavail * stat.f_frsize
            if free < self.min_free:
                return (f"{folder} has {free} bytes free, less than min_free_disk_bytes="
                        f"{self.min_free}: predictions could not be logged")
        return None


def disk_check(settings: ServeSettings) -> DiskCheck:
    """The check of the serving log's and state's folders (no state folder when the
    state is in PostgreSQL, ``state_url``)."""
    folders = [settings.log_dir]
    if settings.state_url is None:
        folders.append(str(Path(settings.state_path).parent))
    return DiskCheck(folders, settings.min_free_disk_bytes)


def add_routes(app, disk: DiskCheck, workers: Callable[[], list[dict]]) -> None:
    """``/health/live`` and ``/health/ready`` on ``app``."""
    from fastapi.responses import JSONResponse

    async def live():
        return {"status": "alive", "pid": os.getpid()}

    async def ready():
        processes = workers()
        problems = [f"inference worker {i} is not running (starting or restarting)"
                    for i, worker in enumerate(processes) if not worker["alive"]]
        if (reason := disk.problem()) is not None:
            problems.append(reason)
        return JSONResponse({"ready": not problems, "workers": processes,
                             "problems": problems}, status_code=503 if problems else 200)

    app.add_api_route("/health/live", live, methods=["GET"],
                      summary="Liveness: the HTTP process answers")
    app.add_api_route("/health/ready", ready, methods=["GET"],
                      summary="Readiness: workers running, log and state disks writable")
