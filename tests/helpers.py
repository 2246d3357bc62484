"""Small helpers shared by tests (fixtures live in the conftest files)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git (in ``cwd``, else the working folder); its stdout."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def commit(message: str, cwd: Path | None = None) -> str:
    """Commit everything in the work tree as a test author; the new commit's id."""
    git("add", "-A", cwd=cwd)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message,
        cwd=cwd)
    return git("rev-parse", "HEAD", cwd=cwd).strip()
