"""Pretrained transformers backbones (model=hf_text, model=hf_image): trained, registered,
served and batch-predicted like the built-in nets; their packages load offline; bad
backbones fail before training, naming the key and the fix."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package
from dlforge.serve.batch import load, predict_file
from dlforge.stages.train import train
from tests.models.pretrained_backbones import image_backbone, text_backbone
from tests.toy import make_snapshot, toy_rows, write_images

TEXTS = ["guitar song album", "rain umbrella forecast", "pizza dinner salad"]
TRUTH = ["music", "weather", "food"]
FAST = ["trainer.max_epochs=4", "optimizer.lr=0.01"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT folder (config, weights, tokenizer), as save_pretrained writes it."""
    texts = [row.rsplit(",", 1)[0] for row in toy_rows(400).splitlines()]
    return text_backbone(tmp_path_factory.mktemp("bert"), texts)


def text_project(project, rows: int = 200):
    """``project`` on a smaller toy snapshot (a pretrained backbone trains slower)."""
    make_snapshot(project.root, toy_rows(rows), name="toysmall")
    return project


def test_importing_the_cli_or_the_nets_imports_no_transformers():
    code = ("import sys, dlforge.cli, dlforge.models.pretrained, dlforge.models.package; "
            "print(sorted({'transformers', 'tokenizers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_model_configs_follow_the_backbone(project):
    text = project.config("train", "model=hf_text", "model.net.backbone=/models/bert")
    assert text.model.encoder.tokenizer == "/models/bert"
    image = project.config("train", "model=hf_image", "model.net.backbone=org/vit")
    assert image.model.encoder.processor == "org/vit"


def test_without_transformers_training_says_how_to_install_it(project, bert, monkeypatch):
    # Lightning first: torchmetrics imports transformers wherever its metadata says it
    # is installed, which here it is, and this process may not have imported it yet.
    import lightning.pytorch  # noqa: F401

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(DlforgeError, match=r"pip install 'dlforge\[transformers\]'"):
        train(project.config("train", "model=hf_text", f"model.net.backbone={bert}"))


def test_bad_backbones_fail_before_training(project, bert, tmp_path):
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(bert, no_tokenizer, ignore=shutil.ignore_patterns("tokenizer*", "vocab*"))
    missing = tmp_path / "models" / "missing"
    for overrides, fragments in [
            (["model=hf_text", f"model.net.backbone={missing}"],
             [f"model.encoder.tokenizer={missing}: no such folder",
              "Fix: point model.net.backbone"]),
            (["model=hf_text", f"model.net.backbone={no_tokenizer}"],
             [f"the folder {no_tokenizer} holds no tokenizer", "Fix: save the backbone's "
              "tokenizer there", f".save_pretrained('{no_tokenizer}')"]),
            (["model=hf_image", f"model.net.backbone={bert}"],
             [f"the folder {bert} has no preprocessor_config.json", "Fix: save the backbone's "
              "processor there"]),
            (["model=hf_text", f"model.net.backbone={bert}", "model.net.freeze=5"],
             ["model.net.freeze=5: BertModel has 3 stages (the embeddings and 2 blocks)",
              "Fix: set model.net.freeze between -1 and 3"])]:
        with pytest.raises(DlforgeError) as info:
            train(project.config("train", *overrides))
        for fragment in fragments:
            assert fragment in str(info.value), str(info.value)
    assert not (tmp_path / "outputs/intent/train/run.json").exists()  # no MLflow run opened


def test_freeze_and_the_backbone_learning_rate(bert):
    import torch

    from dlforge.models.pretrained import PretrainedTextClassifier
    from dlforge.train.module import Classifier

    net = PretrainedTextClassifier(3, vocab_size=10, backbone=str(bert), freeze=2,
                                   backbone_lr_factor=0.1)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in net.named_parameters()  # the embeddings and block 0
                      if n.startswith(("backbone.embeddings.", "backbone.encoder.layer.0."))}
    optimizer = Classifier(net, 3, False, lambda params: torch.optim.AdamW(params, lr=0.01)
                           ).configure_optimizers()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.001])
    head, backbone = optimizer.param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in net.head.parameters()}
    assert len(backbone["params"]) == sum(p.requires_grad for p in net.backbone.parameters())

    probe = PretrainedTextClassifier(3, vocab_size=10, backbone=str(bert), freeze=-1)
    assert [len(g["params"]) for g in probe.param_groups()] == [2]  # the head alone


@pytest.mark.parametrize(("settings", "size"), [
    ({"size": {"height": 8, "width": 12}}, (8, 12)),
    ({"size": {"shortest_edge": 16}, "do_center_crop": False}, (16, 16)),
    ({"size": {"shortest_edge": 20}, "do_center_crop": True, "crop_size": {"height": 16,
                                                                           "width": 16}},
     (16, 16))])
def test_images_take_the_processors_size_mean_and_std(tmp_path, settings, size):
    from dlforge.models.preprocessing import ProcessorImageEncoder

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {**settings, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5]}))
    encoder = ProcessorImageEncoder(str(tmp_path)).fit([])
    assert encoder.to_dict() == {"kind": "image", "channels": 3, "size": list(size),
                                 "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}


@pytest.mark.slow
def test_a_text_backbone_trains_registers_serves_and_predicts_offline(project, bert, tmp_path):
    from dlforge.core.config import compose
    from dlforge.stages.serve import server_settings
    from tests.helpers import running

    backbone = shutil.copytree(bert, tmp_path / "bert")
    record = text_project(project).release(
        "model=hf_text", f"model.net.backbone={backbone}", "model.net.freeze=1",
        "model.net.backbone_lr_factor=1.0", *FAST)
    assert record["champion"] == "1"
    package = project.root / "outputs/intent/train/model"
    spec = json.loads((package / "model.json").read_text())
    assert spec["arguments"]["backbone"]["model_type"] == "bert"  # the config, not the folder
    listed = (package / "SHA256SUMS").read_text()
    assert "tokenizer/tokenizer.json" in listed and "tokenizer/tokenizer_config.json" in listed

    shutil.rmtree(backbone)  # the package alone: nothing of the backbone's folder is read
    model = load_package(package)
    predicted = model.predict(TEXTS)
    assert [p["label"] for p in predicted] == TRUTH, predicted

    source = tmp_path / "texts.csv"
    source.write_text("text\n" + "".join(f"{TEXTS[i % 3]} {i}\n" for i in range(40)))
    registered, name, version = load(record["uri"], project.tracking_uri, tmp_path / "cache")
    rows = predict_file(registered, source, tmp_path / "out.parquet", name, version,
                        batch_size=16)
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert rows == 40 and [r["label"] for r in table[:3]] == TRUTH

    served = compose("serve", [f"paths.root={project.root}", "accelerator=cpu", "api_key=null",
                               f"tracking.tracking_uri={project.tracking_uri}",
                               f"models={{{project.model_name}: {{}}}}"])
    with running(server_settings(served)) as client:
        answer = client.post("/predict", json={"inputs": TEXTS, "top_k": 2})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == TRUTH

    (package / "tokenizer" / "added_tokens.json").write_text("{}")
    with pytest.raises(DlforgeError, match="added_tokens.json is not listed"):
        load_package(package)


@pytest.mark.slow
def test_an_image_backbone_trains_registers_serves_and_predicts_offline(project, tmp_path):
    from dlforge.core.config import compose
    from dlforge.data import SnapshotStore, Store
    from dlforge.stages.serve import server_settings
    from tests.helpers import running

    images = write_images(tmp_path / "images", per_class=20)
    store = Store(project.root / "data/store")
    store.create("shapes", "image_class", images)
    ref = SnapshotStore(project.root / "data/snapshots", store).build("shapes")
    (project.root / "outputs/intent/snapshot.json").write_text(
        json.dumps({"dataset": "shapes", "version": ref.version, "path": str(ref.path)}))
    backbone = image_backbone(tmp_path / "vit")
    record = project.release("model=hf_image", f"model.net.backbone={backbone}",
                             "model.net.backbone_lr_factor=0.5", "trainer.max_epochs=4",
                             "optimizer.lr=0.01")
    assert record["champion"] == "1"
    package = project.root / "outputs/intent/train/model"
    assert json.loads((package / "preprocessing.json").read_text())["size"] == [8, 8]

    shutil.rmtree(backbone)
    model = load_package(package)
    pictures = [(images / label / "0.png").read_bytes() for label in ("cols", "rows", "dark")]
    assert [p["label"] for p in model.predict(pictures)] == ["cols", "rows", "dark"]
    wire = [model.encoder.from_wire(base64.b64encode(p).decode()) for p in pictures]
    assert model.scores(wire).tolist() == model.scores(pictures).tolist()

    registered, name, version = load(record["uri"], project.tracking_uri, tmp_path / "cache")
    rows = predict_file(registered, images, tmp_path / "out.parquet", name, version,
                        batch_size=16)
    assert rows == 60
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    right = sum(r["label"] in r["input"].split("/")[-2] for r in table)
    assert right >= 45, table

    served = compose("serve", [f"paths.root={project.root}", "accelerator=cpu", "api_key=null",
                               f"tracking.tracking_uri={project.tracking_uri}",
                               f"models={{{project.model_name}: {{}}}}"])
    with running(server_settings(served)) as client:
        answer = client.post("/predict", json={"inputs": [base64.b64encode(p).decode()
                                                          for p in pictures]})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == ["cols", "rows", "dark"]


@pytest.mark.slow
def test_a_sweep_tunes_a_text_backbone(project, bert, tmp_path, mlflow_dir):
    from omegaconf import OmegaConf, open_dict

    from dlforge.core.config import compose
    from dlforge.stages.sweep import sweep

    text_project(project, rows=90)
    cfg = compose("sweep", [*project.common, "model=hf_text", f"model.net.backbone={bert}",
                            "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                            "datamodule.batch_size=16", "hpo.n_trials=2", "hpo.n_workers=1",
                            "hpo/pruner=none", "hpo/sampler=grid"])
    with open_dict(cfg):
        cfg.hpo.overrides = {}
        cfg.hpo.space = OmegaConf.create({"model.net.backbone_lr_factor": {
            "type": "categorical", "choices": [0.1, 1.0]}})
    result = sweep(cfg)
    assert result["counts"] == {"COMPLETE": 2}
    assert result["best"]["params"]["model.net.backbone_lr_factor"] in (0.1, 1.0)
