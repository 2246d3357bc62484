"""Stage commands, serve and predict import the project's own code from src/."""

from __future__ import annotations

import os
import sys

from dlforge.cli.stage import add_project_code


def test_the_project_src_goes_first_on_the_path_and_to_child_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    add_project_code(tmp_path)  # no src/: nothing changes
    assert str(tmp_path / "src") not in sys.path and os.environ["PYTHONPATH"] == "/elsewhere"
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    add_project_code()
    add_project_code()  # once only
    src = str((tmp_path / "src").resolve())
    assert sys.path[0] == src and sys.path.count(src) == 1
    assert os.environ["PYTHONPATH"] == os.pathsep.join([src, "/elsewhere"])
