"""The project's code digest (working tree and commits alike) and the commit that holds a
recorded run's code and config (what `dlforge lineage` names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlforge.core.commits import find_commit, tree_code_digest
from dlforge.core.record import code_digest, text_digest
from tests.helpers import commit, git

SECTION = "outputs/intent/config/train.json"


def write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    git("init", "-q")
    return tmp_path


def test_the_working_trees_code_digest_is_the_commits_it_becomes(repo):
    assert code_digest() is None  # no src/: null
    write(".gitignore", "*.tmp\n")
    write("src/toy/nets.py", "WIDTH = 8\n")
    write("src/toy/labels.json", "[]\n")  # package data counts
    before = code_digest()
    for ignored in ("src/toy/__pycache__/nets.cpython-311.pyc", "src/toy.egg-info/PKG-INFO",
                    "src/toy/scratch.tmp"):  # a cache, build metadata, a file git ignores
        write(ignored, "x")
    assert code_digest() == before
    head = commit("code")
    assert tree_code_digest(head) == before
    write("src/toy/labels.json", "[\"a\"]\n")
    assert code_digest() not in (before, None)


def test_the_first_commit_holding_the_code_and_section_is_found(repo):
    write("src/toy/nets.py", "WIDTH = 8\n")
    commit("code, no section yet")
    code_a = code_digest()
    write(SECTION, '{"optimizer.lr": 0.01}\n')
    section = text_digest(Path(SECTION).read_bytes())
    first = commit("results")
    write("src/toy/nets.py", "WIDTH = 16\n")
    code_b = code_digest()
    wider = commit("wider")
    write("src/toy/nets.py", "WIDTH = 8\n")
    back = commit("back")
    assert find_commit(code_a, section, SECTION).commit == first  # not the later `back`
    assert find_commit(code_b, section, SECTION).commit == wider
    assert find_commit(code_a, text_digest("{}\n"), SECTION).commit is None
    write("src/toy/nets.py", "WIDTH = 99\n")  # trained on edits never committed
    found = find_commit(code_digest(), section, SECTION)
    assert (found.commit, found.searched, found.truncated) == (None, 4, False)
    bounded = find_commit(code_a, section, SECTION, limit=2)  # `wider` and `back` only
    assert (bounded.commit, bounded.searched, bounded.truncated) == (back, 2, True)


def test_a_project_below_the_repositorys_root_is_searched_from_its_folder(repo, monkeypatch):
    write("proj/src/toy/nets.py", "WIDTH = 8\n")
    write(f"proj/{SECTION}", "{}\n")
    head = commit("a project in a folder")
    monkeypatch.chdir(repo / "proj")
    assert find_commit(code_digest(), text_digest("{}\n"), SECTION).commit == head
