"""The model package: loads without training code, refuses tampered files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.core.hashing import sha256_file
from dlforge.models.package import FILES, load_package, package_digest, save_package
from dlforge.models.preprocessing import TextEncoder
from dlforge.models.text import EmbeddingBagClassifier


@pytest.fixture
def package(tmp_path):
    torch.manual_seed(0)
    encoder = TextEncoder(ngrams=2).fit(["book a table", "play a song", "play music"])
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 8,
                 "hidden_dim": 8}
    net = EmbeddingBagClassifier(**arguments)
    return save_package(tmp_path / "model", net.state_dict(), EmbeddingBagClassifier, arguments,
                        encoder, ["music", "restaurant"], False, {"run_id": "r1"})


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
            # TorchDynamo: building the network on the meta device runs no initialiser
            "heavy = {'lightning', 'mlflow', 'dlforge.train', 'dlforge.data', 'torch._dynamo'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules)")
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


def sign(package: Path, lines: list[str] | None = None) -> None:
    """Write SHA256SUMS as ``lines`` (default: a correct listing of the package's files)."""
    if lines is None:
        lines = [f"{sha256_file(package / f)}  {f}" for f in FILES]
    (package / "SHA256SUMS").write_text("".join(f"{line}\n" for line in lines))


def edit_spec(package: Path, **changes) -> None:
    spec = json.loads((package / "model.json").read_text())
    spec.update(changes)
    (package / "model.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("source", [{"distribution": "torch", "version": torch.__version__},
                                    {"code": "os"}, {}])
def test_a_class_that_is_neither_carried_nor_of_its_distribution_is_refused(package, source):
    edit_spec(package, **{"class": "os:system", "source": source})
    sign(package)  # re-signed so that only the class check can refuse it
    refused(package, str(package / "model.json"), "os:system")


# -- SHA256SUMS lists exactly the package's files ------------------------------------


def refused(package: Path, *fragments: str) -> str:
    with pytest.raises(DlforgeError) as info:
        load_package(package)
    message = str(info.value)
    for fragment in (*fragments, "Fix:"):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.mark.parametrize("kept", [[], ["preprocessing.json", "weights.safetensors"]])
def test_an_edited_model_json_is_refused_when_its_line_is_dropped(package, kept):
    edit_spec(package, labels=["restaurant", "music"])  # swaps what every prediction means
    sign(package, [f"{sha256_file(package / f)}  {f}" for f in kept])
    refused(package, str(package / "SHA256SUMS"), "does not list", "model.json")


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname", "sub/model.json",
                                  "notes.txt", "./model.json"])
def test_a_line_naming_anything_but_a_package_file_is_refused(package, name, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the package\n")
    lines = [f"{sha256_file(package / f)}  {f}" for f in FILES]
    sign(package, [*lines, f"{sha256_file(outside)}  {name}"])
    refused(package, str(package / "SHA256SUMS"), "line 4", repr(name), "not a package file",
            str(package))


@pytest.mark.parametrize("bad", ["0123  model.json", "no digest here", "", "{digest} model.json"])
def test_malformed_and_repeated_lines_are_refused(package, bad):
    lines = [f"{sha256_file(package / f)}  {f}" for f in FILES]
    sign(package, [*lines, bad.format(digest=sha256_file(package / "model.json"))])
    refused(package, str(package / "SHA256SUMS"), "line 4", "is not '<sha256>  <file>'")


def test_a_file_listed_twice_is_refused(package):
    lines = [f"{sha256_file(package / f)}  {f}" for f in FILES]
    sign(package, [*lines, lines[0]])
    refused(package, "line 4", "lists model.json a second time")


def test_the_package_digest_names_the_files_content(package):
    digest = package_digest(package)
    assert digest == package_digest(package, check_files=False)
    edit_spec(package, labels=["restaurant", "music"])
    sign(package)
    assert package_digest(package) != digest


# -- architecture arguments are checked against the weights, before allocating -------


@pytest.mark.parametrize(("key", "value", "shape"), [
    ("vocab_size", 10**12, "(1000000000000, 8)"),  # 32 TB if it were allocated
    ("hidden_dim", 9, "(9, 8)"),
])
def test_arguments_that_do_not_fit_the_weights_are_refused(package, key, value, shape):
    spec = json.loads((package / "model.json").read_text())
    edit_spec(package, arguments={**spec["arguments"], key: value})
    sign(package)
    message = refused(package, str(package / "model.json"), f"argument {key}={value}", shape,
                      "weights.safetensors holds")
    assert "embed_dim" not in message


def test_a_non_integer_size_is_refused(package):
    spec = json.loads((package / "model.json").read_text())
    edit_spec(package, arguments={**spec["arguments"], "vocab_size": 1e9})
    sign(package)
    refused(package, str(package / "model.json"), "vocab_size=1000000000.0 must be an integer")


def test_arguments_the_architecture_does_not_take_are_refused(package):
    spec = json.loads((package / "model.json").read_text())
    edit_spec(package, arguments={**spec["arguments"], "layers": 3})
    sign(package)
    refused(package, str(package / "model.json"),
            "do not build dlforge.models.text:EmbeddingBagClassifier", "layers")
