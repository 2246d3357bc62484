"""A target's arguments are read once and remembered: a later process takes them
without importing the target, and reads them again after any change to the files
that decide them, or where the same name is another project's package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.stages.signatures import arguments

READ = """
import json, sys
from dlforge.stages.signatures import arguments
taken = arguments("model.encoder", sys.argv[1])
print(json.dumps({"arguments": None if taken is None else sorted(taken),
                  "imported": "pkg" in sys.modules}))
"""


@pytest.fixture
def read(tmp_path):
    """``read(target, where)``: (arguments, whether the target was imported) in a fresh
    process with ``where`` first on its path and a cache of this test's own."""
    def read(target: str, where: Path) -> tuple[list[str] | None, bool]:
        # No bytecode: Python's own cache of a module is stamped to the second, and
        # these edits come faster (an edit of the same size would import the old code).
        env = {**os.environ, "PYTHONPATH": str(where), "DLFORGE_CACHE_DIR": str(tmp_path / "cache"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        out = subprocess.run([sys.executable, "-c", READ, target], env=env, check=True,
                             capture_output=True, text=True).stdout
        found = json.loads(out)
        return found["arguments"], found["imported"]
    return read


def package(where: Path, init: str, **modules: str) -> Path:
    """A package ``pkg`` under ``where``: its ``__init__.py`` and modules."""
    (where / "pkg").mkdir(parents=True, exist_ok=True)
    (where / "pkg" / "__init__.py").write_text(init)
    for name, text in modules.items():
        (where / "pkg" / f"{name}.py").write_text(text)
    return where


def test_a_remembered_signature_is_taken_without_importing_the_target(read, tmp_path):
    where = package(tmp_path / "a", "from pkg.nets import Net\n",
                    nets="class Net:\n    def __init__(self, width, depth=2):\n        pass\n")
    assert read("pkg.Net", where) == (["depth", "width"], True)
    assert read("pkg.Net", where) == (["depth", "width"], False)


def test_an_edit_of_the_class_or_of_a_re_export_reads_it_again(read, tmp_path):
    where = package(tmp_path / "a", "from pkg.nets import Net\n",
                    nets="class Net:\n    def __init__(self, width):\n        pass\n",
                    wide="class Net:\n    def __init__(self, width, heads):\n        pass\n")
    assert read("pkg.Net", where) == (["width"], True)
    (where / "pkg" / "nets.py").write_text(
        "class Net:\n    def __init__(self, width, dropout=0.1):\n        pass\n")
    assert read("pkg.Net", where) == (["dropout", "width"], True)
    (where / "pkg" / "__init__.py").write_text("from pkg.wide import Net\n")  # moved
    assert read("pkg.Net", where) == (["heads", "width"], True)
    assert read("pkg.Net", where) == (["heads", "width"], False)


def test_a_base_class_edit_reads_it_again(read, tmp_path):
    where = package(tmp_path / "a", "",
                    base="class Base:\n    def __init__(self, width):\n        pass\n",
                    nets="from pkg.base import Base\n\n\nclass Net(Base):\n    pass\n")
    assert read("pkg.nets.Net", where) == (["width"], True)
    (where / "pkg" / "base.py").write_text(
        "class Base:\n    def __init__(self, width, **options):\n        pass\n")
    assert read("pkg.nets.Net", where) == (None, True)  # **kwargs: any key


def test_another_projects_package_of_the_same_name_is_read_on_its_own(read, tmp_path):
    one = package(tmp_path / "one", "", nets="def net(width):\n    pass\n")
    other = package(tmp_path / "other", "", nets="def net(depth):\n    pass\n")
    assert read("pkg.nets.net", one) == (["width"], True)
    assert read("pkg.nets.net", other) == (["depth"], True)
    assert read("pkg.nets.net", one) == (["width"], False)


def test_a_target_that_does_not_import_names_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DLFORGE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DlforgeError, match=r"model.encoder._target_=nowhere.Net cannot be "
                                           r"imported. Fix: .*conf/model/"):
        arguments("model.encoder", "nowhere.Net")


def test_an_unreadable_cache_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DLFORGE_CACHE_DIR", str(tmp_path / "cache"))
    assert arguments("optimizer", "torch.optim.SGD") >= {"lr", "momentum"}
    (cache,) = (tmp_path / "cache" / "signatures").glob("*.json")
    entry = next(iter(json.loads(cache.read_text())))
    cache.write_text(json.dumps({entry: {"files": 2, "arguments": ["wrong"]}}))
    assert arguments("optimizer", "torch.optim.SGD") >= {"lr", "momentum"}
    cache.write_text("{not json")
    assert arguments("optimizer", "torch.optim.SGD") >= {"lr", "momentum"}
