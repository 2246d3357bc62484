"""Projects that ``dlforge init`` wrote, made once per test run and shared.

``init`` runs ``dvc init`` and ``dvc add`` through DVC's API and ``dlforge workflow dvc``
in a process of its own (seconds in all): tests that only read a new project share one,
and tests that change it take a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dlforge.stages.project import init
from tests.helpers import built_once


def initialised(factory: pytest.TempPathFactory, example: str | None = None,
                kind: str | None = None) -> dict:
    """The summary of ``init(<folder>/proj, example, kind)``, run once per test run for
    each (example, kind) (:func:`tests.helpers.built_once`): read the project it names,
    never change it."""

    def build(folder: Path) -> None:
        summary = init(folder / "proj", example=example, kind=kind)
        (folder / "summary.json").write_text(json.dumps(summary))

    folder = built_once(factory, f"init-{example}-{kind}", build)
    return json.loads((folder / "summary.json").read_text())


def initialised_copy(factory: pytest.TempPathFactory, target: Path,
                     example: str | None = None, kind: str | None = None) -> Path:
    """A copy at ``target`` (its last part ``proj``) of :func:`initialised`'s project,
    git history and DVC folder included, for a test that changes it."""
    assert target.name == "proj", "the project's name comes from its folder"
    shutil.copytree(initialised(factory, example, kind)["project"], target, symlinks=True)
    return target
