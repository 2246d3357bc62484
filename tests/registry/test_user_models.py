"""A registered version of a user's own model loads through MLflow in a fresh process,
from another folder, without the project's code on its path."""

from __future__ import annotations

import json

from dlforge.models.package import load_package
from tests.user_models import project_name, python_elsewhere, write_user_code


def test_a_registered_user_model_loads_as_a_pyfunc_elsewhere(project, tmp_path, monkeypatch):
    name = project_name(tmp_path)
    monkeypatch.syspath_prepend(str(write_user_code(tmp_path, name)))
    record = project.release(f"model.net._target_={name}.nets.BagNet")
    texts = ["pizza for dinner", "play a loud song"]
    package = tmp_path / "outputs/intent/train/model"
    expected = [round(p["score"], 5) for p in load_package(package).predict(texts)]
    code = ("import json, sys, mlflow\n"
            f"assert {str(tmp_path / 'src')!r} not in sys.path\n"
            f"mlflow.set_tracking_uri({project.tracking_uri!r})\n"
            f"model = mlflow.pyfunc.load_model({record['uri']!r})\n"
            f"print(json.dumps(model.predict({texts!r})['score'].round(5).tolist()))\n")
    out = python_elsewhere(code, tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
