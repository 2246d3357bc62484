"""Each package runs its own carried code: versions of one project load side by side
in one process, each exactly as it predicts alone, and none takes the project's own
name; a package carries its project package only, as regular files."""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from importlib import import_module
from pathlib import Path

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file
from dlforge.models.package import load_package, read_sums, save_package
from dlforge.models.preprocessing import TextEncoder
from tests.models.versions import LABELS, TEXTS, versions_of_one_project
from tests.user_models import project_name, python_elsewhere, write_user_code


@pytest.fixture
def versions(tmp_path, monkeypatch):
    return versions_of_one_project(tmp_path, monkeypatch)


def alone(folder: Path, elsewhere: Path) -> list[list[float]]:
    """The package's scores of TEXTS in a fresh process, with nothing else loaded."""
    out = python_elsewhere("import json\nfrom dlforge.models.package import load_package\n"
                           f"print(json.dumps(load_package({str(folder)!r})"
                           f".scores({TEXTS!r}).tolist()))\n", elsewhere)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_versions_of_one_project_load_side_by_side_each_with_its_own_code(versions, order,
                                                                          tmp_path):
    _, _, folders = versions
    first, second = order
    loaded = {first: load_package(folders[first])}
    expected = {first: loaded[first].scores(TEXTS).tolist(),  # before the other is loaded
                second: alone(folders[second], tmp_path / "alone")}
    loaded[second] = load_package(folders[second])
    for version, model in loaded.items():
        scores = model.scores(TEXTS)
        assert scores.allclose(torch.tensor(expected[version]), atol=1e-6), version
        assert [p["label"] for p in model.predict(TEXTS)] == [LABELS[version - 1]] * len(TEXTS)
    assert type(loaded[1].net) is not type(loaded[2].net)
    assert not {str(f / "code") for f in folders.values()} & set(sys.path)


@pytest.mark.parametrize("project_first", [True, False])
def test_the_project_keeps_its_name_for_its_own_code(versions, project_first, monkeypatch):
    name, project, folders = versions
    if not project_first:  # the packages load before training imports the project
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            monkeypatch.delitem(sys.modules, module)
    for folder in folders.values():
        load_package(folder)
    nets = import_module(f"{name}.nets")
    assert Path(nets.__file__).is_relative_to(project / "src")
    assert not hasattr(import_module(f"{name}.layers"), "FAVOURED")
    with pytest.raises(ModuleNotFoundError):  # only the packages carry it
        import_module(f"{name}.bias")
    assert load_package(folders[2]).predict(TEXTS)[0]["label"] == LABELS[1]


def test_a_package_loaded_again_reuses_its_modules(versions, tmp_path):
    _, _, folders = versions
    copy = shutil.copytree(folders[1], tmp_path / "copy")  # the same code in another folder
    classes = {type(load_package(f).net) for f in (folders[1], folders[1], copy)}
    assert len(classes) == 1


def sign_with(folder: Path, name: str) -> None:
    """List ``name`` in SHA256SUMS with its digest, so only other checks can refuse it."""
    names = [*read_sums(folder), name]
    (folder / "SHA256SUMS").write_text("".join(f"{sha256_file(folder / n)}  {n}\n"
                                               for n in names))


def test_a_package_carrying_another_top_level_module_is_refused(versions, monkeypatch):
    _, _, folders = versions
    (folders[1] / "code" / "wave.py").write_text("PLANTED = True  # stands in for the stdlib\n")
    sign_with(folders[1], "code/wave.py")
    with pytest.raises(DlforgeError, match=r"code/wave\.py: the package carries code outside "
                                           r"the project package .*Fix:"):
        load_package(folders[1])
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    wave = import_module("wave")
    assert Path(wave.__file__).is_relative_to(sysconfig.get_paths()["stdlib"])
    assert not hasattr(wave, "PLANTED")


@pytest.mark.parametrize("linked", ["nets.py", "."])
def test_carried_code_behind_a_symbolic_link_is_refused(versions, tmp_path, linked):
    name, _, folders = versions
    path = (folders[1] / "code" / name / linked).resolve()
    moved = shutil.move(path, tmp_path / "elsewhere")  # same bytes: the digests still match
    path.symlink_to(moved)
    with pytest.raises(DlforgeError, match=f"{path} is a symbolic link.*Fix:"):
        load_package(folders[1])


def test_a_project_file_that_is_a_symbolic_link_is_not_carried(tmp_path, monkeypatch):
    name = project_name(tmp_path)
    src = write_user_code(tmp_path / "project", name)
    nets = src / name / "nets.py"
    nets.symlink_to(shutil.move(nets, tmp_path / "nets.py"))
    monkeypatch.syspath_prepend(str(src))
    net_class = import_module(f"{name}.nets").BagNet
    encoder = TextEncoder().fit(TEXTS)
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2}
    with pytest.raises(DlforgeError, match=f"{nets} is a symbolic link.*Fix:"):
        save_package(tmp_path / "model", net_class(**arguments).state_dict(), net_class,
                     arguments, encoder, LABELS, False, {})


def test_code_loaded_again_after_its_first_folder_is_gone_is_read_from_the_new_one(
        versions, tmp_path):
    """``dlforge verify`` reads a registered package in a scratch folder it deletes after;
    a second verify in the same process loads the same code from elsewhere and trains
    it again, and the package of that training carries the code's files. The same
    code loaded from another folder meanwhile does not change where it was read from."""
    _, _, folders = versions
    first = Path(shutil.copytree(folders[1], tmp_path / "scratch" / "package"))
    load_package(first)
    load_package(folders[1])  # while the first folder is there: its modules are reused
    shutil.rmtree(tmp_path / "scratch")
    model = load_package(folders[1])
    net_class = type(model.net)
    assert Path(sys.modules[net_class.__module__].__file__).is_relative_to(folders[1])
    arguments = json.loads((folders[1] / "model.json").read_text())["arguments"]
    again = save_package(tmp_path / "again", model.net.state_dict(), net_class, arguments,
                         model.encoder, LABELS, False, {})
    assert (again / "code").is_dir() and read_sums(again)
