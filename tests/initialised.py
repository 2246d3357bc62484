"""Projects that ``dlforge init`` wrote, made once per test process and shared.

``init`` runs ``dvc init``, ``dvc add`` and ``dlforge workflow dvc`` in processes of their
own (seconds each): tests that only read a new project share one, and tests that change
it take a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dlforge.stages.project import init

_MADE: dict[tuple[str | None, str | None], dict] = {}


def initialised(factory: pytest.TempPathFactory, example: str | None = None,
                kind: str | None = None) -> dict:
    """The summary of ``init(<folder>/proj, example, kind)``, run once per process for
    each (example, kind): read the project it names, never change it."""
    key = (example, kind)
    if key not in _MADE:
        _MADE[key] = init(factory.mktemp("init") / "proj", example=example, kind=kind)
    return _MADE[key]


def initialised_copy(factory: pytest.TempPathFactory, target: Path,
                     example: str | None = None, kind: str | None = None) -> Path:
    """A copy at ``target`` (its last part ``proj``) of :func:`initialised`'s project,
    git history and DVC folder included, for a test that changes it."""
    assert target.name == "proj", "the project's name comes from its folder"
    shutil.copytree(initialised(factory, example, kind)["project"], target, symlinks=True)
    return target
