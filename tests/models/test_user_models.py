"""Packages of a user's own model class: the class path and the project's code travel
with the package, covered by its digests, and load in a process without the project."""

from __future__ import annotations

import json
from importlib import import_module

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package, read_sums, save_package, verify_package
from dlforge.models.preprocessing import TextEncoder
from tests.user_models import (
    as_format_1,
    project_name,
    python_elsewhere,
    resign,
    write_user_code,
)

TEXTS = ["play a song", "book a table", "play loud music", "a table for two"]


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package of ``<project>.nets.BagNet``, imported from ``tmp_path/src``."""
    name = project_name(tmp_path)
    monkeypatch.syspath_prepend(str(write_user_code(tmp_path / "project", name)))
    net_class = import_module(f"{name}.nets").BagNet
    torch.manual_seed(0)
    encoder = TextEncoder().fit(TEXTS)
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 4}
    net = net_class(**arguments)
    folder = save_package(tmp_path / "model", net.state_dict(), net_class, arguments, encoder,
                          ["music", "restaurant"], False, {})
    return folder, name


def test_the_package_records_the_class_and_carries_the_project_code(user_package):
    folder, name = user_package
    spec = json.loads((folder / "model.json").read_text())
    assert spec["class"] == f"{name}.nets:BagNet" and spec["source"] == {"code": name}
    code = {f"code/{name}/{f}" for f in ("__init__.py", "nets.py", "layers.py")}
    assert code <= set(read_sums(folder))  # covered by the digests...
    assert not (folder / "code" / name / "notes.txt").exists()  # ...and .py files only
    assert set(verify_package(folder)) == {"model.json", "preprocessing.json",
                                           "weights.safetensors", *code}


def test_a_fresh_process_elsewhere_loads_it_without_the_project(user_package, tmp_path):
    folder, name = user_package
    expected = load_package(folder).scores(TEXTS).tolist()
    code = (f"import json, sys\n"
            f"assert {str(tmp_path / 'project' / 'src')!r} not in sys.path\n"
            f"from dlforge.models.package import load_package\n"
            f"p = load_package({str(folder)!r})\n"
            f"assert sys.modules[type(p.net).__module__].__file__.startswith({str(folder)!r})\n"
            f"assert {name!r} not in sys.modules  # imported under a name of its own\n"
            f"print(json.dumps(p.scores({TEXTS!r}).tolist()))\n")
    out = python_elsewhere(code, tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr
    assert torch.tensor(json.loads(out.stdout)).allclose(torch.tensor(expected), atol=1e-6)
    assert not list((folder / "code").rglob("__pycache__"))  # no bytecode written into it
    verify_package(folder)


@pytest.mark.parametrize("file", ["nets.py", "layers.py"])
def test_a_tampered_code_file_is_refused(user_package, file):
    folder, name = user_package
    path = folder / "code" / name / file
    path.write_text(path.read_text() + "\nimport os  # added later\n")
    with pytest.raises(DlforgeError, match=f"{file} is missing or does not match SHA256SUMS"):
        load_package(folder)


@pytest.mark.parametrize("added", ["extra.py", "__pycache__/nets.cpython-311.pyc"])
def test_code_added_to_the_package_is_refused(user_package, added):
    folder, name = user_package
    path = folder / "code" / name / added
    path.parent.mkdir(exist_ok=True)
    path.write_text("print('not listed')\n")
    with pytest.raises(DlforgeError, match="is not listed in .*SHA256SUMS.*Fix:"):
        load_package(folder)


def edit_spec(folder, **changes) -> None:
    spec = json.loads((folder / "model.json").read_text())
    spec.update(changes)
    (folder / "model.json").write_text(json.dumps(spec))
    resign(folder)  # so that only the class check can refuse it


def test_a_distribution_that_is_not_installed_is_named_with_the_fix(user_package):
    folder, _ = user_package
    edit_spec(folder, **{"class": "nopkg_xyz.nets:Net",
                         "source": {"distribution": "nopkg-xyz", "version": "1.2"}})
    with pytest.raises(DlforgeError, match=r"model.json: .*nopkg-xyz==1.2, which is not "
                                           r"installed here. Fix: pip install 'nopkg-xyz==1.2'"):
        load_package(folder)


@pytest.mark.parametrize(("path", "source"), [
    ("other.nets:BagNet", "code"),  # the package carries no 'other'
    ("{name}.nets:BagNet", "dlforge"),  # dlforge does not hold the user's module
    ("{name}.nets:make_net", "code"),  # a function, not a Module class
    ("{name}.nets", "code"),  # not module:Class
])
def test_a_class_path_that_is_neither_carried_nor_installed_is_refused(user_package, path,
                                                                       source):
    folder, name = user_package
    record = ({"code": path.format(name=name).split(".")[0]} if source == "code" else
              {"distribution": "dlforge", "version": "0.1.0"})
    edit_spec(folder, **{"class": path.format(name=name), "source": record})
    with pytest.raises(DlforgeError, match=r"model.json: .*Fix:"):
        load_package(folder)


def test_a_package_of_an_older_format_is_refused_naming_its_format_and_the_fix(user_package):
    folder, _ = user_package
    as_format_1(folder)
    with pytest.raises(DlforgeError, match=r"model.json: package format 1, and this dlforge "
                                           r"reads format 2\. Fix: train and register"):
        load_package(folder)
