"""A project of one's own, with dlforge installed from its wheel, outside this repository:
init, a CSV dataset, a network of the project's, snakemake; then the registered
model loads through MLflow and is served from another folder."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import httpx
import pytest

from tests.helpers import BIN, dlforge_serve, dlforge_wheel, run

INTENTS = {
    "weather": ["what is the weather in {}", "will it rain in {} today", "forecast for {}"],
    "travel": ["book a flight to {}", "find me a train to {}", "i want to travel to {}"],
    "food": ["order a pizza near {}", "find a restaurant in {}", "where can i eat in {}"],
}
CITIES = ["paris", "oslo", "lima", "cairo", "tokyo", "quito", "rome", "dakar", "perth", "kyiv",
          *(f"town{i}" for i in range(30))]
OWN_NET = '''
import torch
from torch import nn


class MaxPoolNet(nn.Module):
    """The project's own network: max-pooled embeddings, then a linear layer."""

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embedding(ids).amax(dim=1))
'''
OWN_MODEL = """net:
  _target_: myproj.pooling.MaxPoolNet
  dim: 32
encoder:
  _target_: dlforge.models.preprocessing.TextEncoder
  ngrams: 1
  max_tokens: 16
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """dlforge from a wheel built from this checkout, first on PYTHONPATH (its
    dependencies are this environment's), and where it is imported from."""
    where = tmp_path_factory.mktemp("installed")
    wheel = dlforge_wheel(tmp_path_factory)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(where / "site"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(where / "site"),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    found = subprocess.run([sys.executable, "-c", "import dlforge; print(dlforge.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert found.startswith(str(where / "site")), found
    return env


@pytest.mark.slow
def test_a_project_of_ones_own_from_the_wheel(installed, tmp_path, monkeypatch):
    run(tmp_path, BIN / "dlforge", "init", "myproj", env=installed)
    project = tmp_path / "myproj"
    rows = random.Random(0)
    lines = [f"{text.format(city)},{label}" for label, texts in INTENTS.items()
             for text in texts for city in CITIES]
    rows.shuffle(lines)
    (project / "data/raw/myproj.csv").write_text("\n".join(lines) + "\n")
    (project / "src/myproj/pooling.py").write_text(OWN_NET)
    (project / "conf/model/mine.yaml").write_text(OWN_MODEL)
    experiment = project / "conf/experiment/myproj.yaml"
    experiment.write_text(experiment.read_text().replace("override /model: myproj",
                                                         "override /model: mine")
                          .replace("max_epochs: 30", "max_epochs: 6\n  enable_progress_bar: false")
                          .replace("lr: 0.01", "lr: 0.02"))  # the starter's batch size: 16
    run(project, BIN / "dlforge", "workflow", "dvc", env=installed)
    run(project, BIN / "snakemake", "--profile", "workflow/profiles/local", "--cores", "2",
        env=installed)

    registered = json.loads((project / "outputs/myproj/register.json").read_text())
    assert registered["champion"] == registered["version"] == "1", registered
    accuracy = json.loads((project / "outputs/myproj/eval/metrics.json").read_text())["accuracy"]
    assert accuracy > 0.8, accuracy
    model = json.loads((project / "outputs/myproj/train/model/model.json").read_text())
    assert model["class"] == "myproj.pooling:MaxPoolNet"
    assert (project / "outputs/myproj/train/model/code/myproj/pooling.py").is_file()
    # The project's code is an input of training: editing the network re-runs it.
    with (project / "src/myproj/pooling.py").open("a") as code:
        code.write("# a wider network next time\n")
    plan = run(project, BIN / "snakemake", "--dry-run", "--cores", "1", env=installed)
    assert "rule train" in plan and "rule ingest" not in plan, plan

    # Elsewhere: no project, its code only inside the registered package.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    env = {**installed, "MLFLOW_TRACKING_URI": uri}
    script = ("import mlflow\n"
              "model = mlflow.pyfunc.load_model('models:/myproj@champion')\n"
              "texts = ['will it rain in oslo today', 'book a flight to lima']\n"
              "print(model.predict(texts)['label'].tolist())\n")
    # The load runs while the server starts: each process spends its first seconds
    # importing torch and MLflow.
    loading = subprocess.Popen([sys.executable, "-c", script], cwd=elsewhere, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with dlforge_serve(elsewhere, "models={myproj: {}}") as (url, _):
            answer = httpx.post(f"{url}/predict",
                                json={"inputs": ["find a restaurant in rome"]}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"][0]["label"] == "food", answer.json()
        out, err = loading.communicate(timeout=900)
    finally:
        loading.kill()  # ended already, unless the serving failed
    assert loading.returncode == 0, (out + err)[-5000:]
    predicted = out.strip().splitlines()[-1]
    assert predicted == "['weather', 'travel']", predicted
