"""The model package: loads without training code, refuses tampered files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dlforge.errors import DlforgeError
from dlforge.models.package import load_package, save_package
from dlforge.models.preprocessing import TextEncoder
from dlforge.models.text import EmbeddingBagClassifier


@pytest.fixture
def package(tmp_path):
    torch.manual_seed(0)
    encoder = TextEncoder(ngrams=2).fit(["book a table", "play a song", "play music"])
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 8,
                 "hidden_dim": 8}
    net = EmbeddingBagClassifier(**arguments)
    return save_package(tmp_path / "model", net.state_dict(), "embedding_bag", arguments, encoder,
                        ["music", "restaurant"], False, {"run_id": "r1"})


def test_prediction_has_labels_scores_and_top_k(package):
    predictor = load_package(package)
    out = predictor.predict(["play a song", "never seen words"], top_k=2)
    assert [len(o["top_k"]) for o in out] == [2, 2]
    for item in out:
        assert item["label"] in ("music", "restaurant")
        assert item["score"] == pytest.approx(item["top_k"][0]["score"])
        assert sum(t["score"] for t in item["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_a_fresh_process_loads_it_without_the_training_code(package):
    code = (f"import sys; from dlforge.models.package import load_package; "
            f"p = load_package({str(package)!r}); print(p.predict(['play music'])[0]['label']); "
            "assert not {'lightning', 'mlflow', 'dlforge.train'} & set(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("music", "restaurant")


@pytest.mark.parametrize("name", ["weights.safetensors", "model.json", "preprocessing.json"])
def test_a_tampered_package_is_refused(package, name):
    path = package / name
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    with pytest.raises(DlforgeError, match=f"{name} is missing or does not match"):
        load_package(package)


def test_a_folder_that_is_not_a_package_is_refused(tmp_path):
    with pytest.raises(DlforgeError, match="not a dlforge model package"):
        load_package(tmp_path)


def test_an_unregistered_architecture_is_refused(package):
    import json

    spec = json.loads((package / "model.json").read_text())
    spec["architecture"] = "os.system"
    (package / "model.json").write_text(json.dumps(spec))
    # Re-sign so that only the architecture check can refuse it.
    from dlforge.models.package import FILES, _sha256

    (package / "SHA256SUMS").write_text("".join(f"{_sha256(package / f)}  {f}\n" for f in FILES))
    with pytest.raises(DlforgeError, match="unknown architecture 'os.system'"):
        load_package(package)
