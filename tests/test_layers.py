"""The package's layers (docs/development.md#layout) hold: the import-linter contracts
in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(source_root: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts over the ``dlforge`` under ``source_root``."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_no_package_imports_a_layer_above_it():
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_an_import_of_training_from_serving_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "src" / "dlforge", tmp_path / "dlforge")
    health = tmp_path / "dlforge" / "serve" / "health.py"
    health.write_text(health.read_text() + "\n\ndef _late():\n    import dlforge.train.fit\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "Serving never imports training or sweeps BROKEN" in result.stdout
    assert "dlforge.serve.health -> dlforge.train.fit" in result.stdout


def test_no_test_imports_from_a_conftest_file():
    """Fixtures live in the conftest files, what a test imports in modules of its own
    (docs/development.md#where-the-helpers-are): pytest imports a conftest itself, and
    a second import under another name would run it twice."""
    import ast

    found = [f"{path.relative_to(ROOT)}:{node.lineno}"
             for path in sorted((ROOT / "tests").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom)
             and (node.module or "").rsplit(".", 1)[-1] == "conftest"]
    assert found == [], found
