"""A user's model class trains from the project's src/; one that breaks the model
contract fails before any training, naming the key and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package
from dlforge.stages.train import train
from tests.user_models import project_name, write_user_code


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """The project's module path (``<name>.nets``), its src/ on sys.path as the stage
    commands put it."""
    name = project_name(tmp_path)
    monkeypatch.syspath_prepend(str(write_user_code(tmp_path, name)))
    return f"{name}.nets"


@pytest.mark.parametrize(("target", "extra", "fragments"), [
    ("{nets}.Missing", [], ["model.net._target_={nets}.Missing cannot be imported", "Fix:"]),
    ("{nets}.make_net", [], ["model.net._target_={nets}.make_net is function",
                             "not a torch.nn.Module subclass", "Fix: name a class"]),
    ("{nets}.NoVocab", [], ["model.net.vocab_size: {nets}.NoVocab rejects its arguments",
                            "vocab_size=", "Fix: accept vocab_size in {nets}.NoVocab.__init__"]),
    ("{nets}.BagNet", ["+model.net.depth=3"], ["model.net.depth: {nets}.BagNet rejects",
                                               "depth=3 (model.net.depth)",
                                               "Fix: remove model.net.depth"]),
    ("{nets}.BadLayer", [], ["model.net._target_={nets}.BadLayer rejects its arguments",
                             "TypeError", "it was given num_classes=3, vocab_size=", "Fix:"]),
    ("{nets}.OneColumn", [], ["model.net._target_={nets}.OneColumn", "returned tensor of "
                              "shape (4, 1)", "not logits of shape (B, C) = (4, 3)", "Fix:"]),
    ("{nets}.Crashes", [], ["model.net._target_={nets}.Crashes", "raised RuntimeError: no "
                            "forward today", "Fix:"]),
])
def test_a_model_that_breaks_the_contract_fails_before_training(train_cfg, user_code, tmp_path,
                                                                target, extra, fragments):
    with pytest.raises(DlforgeError) as info:
        train(train_cfg(f"model.net._target_={target.format(nets=user_code)}", *extra))
    for fragment in fragments:
        assert fragment.format(nets=user_code) in str(info.value), str(info.value)
    assert not (tmp_path / "outputs/intent/train/run.json").exists()  # no MLflow run opened


def test_the_sweep_checks_the_model_before_its_study(tmp_path, mlflow_dir, user_code):
    from dlforge.core.config import compose
    from dlforge.hpo.sweep import sweep
    from dlforge.stages.common import experiment_snapshot
    from tests.toy import FAST, make_snapshot, toy_rows

    make_snapshot(tmp_path, toy_rows(100))
    cfg = compose("sweep", ["experiment=intent", f"paths.root={tmp_path}",
                            f"paths.mlflow_dir={mlflow_dir}", "dataset.name=toy", *FAST,
                            f"model.net._target_={user_code}.OneColumn"])
    with pytest.raises(DlforgeError, match=r"OneColumn.*not logits of shape \(B, C\)"):
        sweep(cfg, experiment_snapshot(cfg))
    assert not list(Path(cfg.paths.sweep_dir).rglob("*.journal"))


def test_a_user_model_trains_and_its_package_loads_without_the_project(train_cfg, user_code,
                                                                       tmp_path):
    cfg = train_cfg(f"model.net._target_={user_code}.BagNet")
    metrics = train(cfg)
    assert metrics["epochs"] == 3
    folder = Path(cfg.paths.train_dir) / "model"
    name = user_code.split(".")[0]
    assert (folder / "code" / name / "layers.py").is_file()
    texts = ["pizza for dinner", "play a loud song", "rain and snow"]
    expected = load_package(folder).scores(texts).tolist()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, sys\n"
            f"assert {str(tmp_path / 'src')!r} not in sys.path\n"
            "from dlforge.models.package import load_package\n"
            f"print(json.dumps(load_package({str(folder)!r}).scores({texts!r}).tolist()))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[pytest.approx(v, abs=1e-6) for v in row]
                                      for row in expected]
