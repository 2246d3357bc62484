"""dlforge train: outputs, the model package, MLflow tracking, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

import dlforge
from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.tracking import setup_tracking_uri
from dlforge.models.package import load_package
from dlforge.stages.train import train
from dlforge.train.runs import list_runs, show_run
from tests.toy import make_snapshot, toy_rows, write_images
from tests.train.test_cost import check_run_cost

ONE_EPOCH = "trainer.max_epochs=1"  # for tests that need a trained package, not a good one


def runs_of(cfg):
    setup_tracking_uri(cfg.tracking)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    return mlflow.MlflowClient().search_runs([experiment.experiment_id])


def test_train_writes_metrics_package_plots_and_one_finished_run(train_cfg, tmp_path):
    cfg = train_cfg()
    metrics = train(cfg)
    out = Path(cfg.paths.train_dir)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["epochs"] == 3 and metrics["test/acc"] > 0.7  # chance is 1/3
    assert {"val/loss", "val/acc", "val/f1", "train/loss", "test/f1"} <= set(metrics)
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 3
    assert (out / "curves.png").stat().st_size > 10_000

    predictor = load_package(out / "model")
    (pred,) = predictor.predict(["play a loud song on the guitar"], top_k=2)
    assert pred["label"] == "music" and len(pred["top_k"]) == 2
    assert predictor.labels == ["food", "music", "weather"]

    (run,) = runs_of(cfg)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["dlforge.dataset"] == "toy" and tags["dlforge.commits"] == "1"
    assert tags["dlforge.snapshot"] == json.loads(
        (tmp_path / "outputs/intent/snapshot.json").read_text())["version"]
    assert {"dlforge.config_hash", "dlforge.git_commit", "dlforge.git_dirty",
            "dlforge.version"} <= set(tags)
    assert run.data.params["model.net.embed_dim"] == "16"
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    check_run_cost(metrics["cost"], run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/acc")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert run.inputs.dataset_inputs[0].dataset.name.startswith("toy@")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "model")}
    assert "model/weights.safetensors" in artifacts

    (listed,) = list_runs(cfg.tracking.experiment)  # what `dlforge runs list` shows
    assert (listed["run_id"], listed["status"]) == (run.info.run_id, "finished")
    assert listed["snapshot"] == tags["dlforge.snapshot"] and listed["duration_s"] > 0
    assert show_run(run.info.run_id)["params"]["trainer.max_epochs"] == "3"
    with pytest.raises(NotFound, match="no MLflow experiment 'nope'"):
        list_runs("nope")
    with pytest.raises(NotFound, match="no run 'nope'"):
        show_run("nope")


def test_same_config_snapshot_and_seed_give_identical_weights(train_cfg, tmp_path):
    first = train(train_cfg(ONE_EPOCH))  # one epoch of updates tells weights apart
    weights = (tmp_path / "outputs/intent/train/model/weights.safetensors").read_bytes()
    second = train(train_cfg(ONE_EPOCH))
    again = (tmp_path / "outputs/intent/train/model/weights.safetensors").read_bytes()
    assert weights == again
    timing = {"train_seconds", "samples_per_second", "cost"}
    assert {k: v for k, v in first.items() if k not in timing} == {
        k: v for k, v in second.items() if k not in timing}
    other_seed = train(train_cfg(ONE_EPOCH, "seed=7"))
    assert (tmp_path / "outputs/intent/train/model/weights.safetensors").read_bytes() != weights
    assert other_seed["epochs"] == 1


def test_multi_label_data_trains_with_a_sigmoid_head(train_cfg, tmp_path):
    make_snapshot(tmp_path / "ml", toy_rows(240, multi_label=True))
    cfg = train_cfg(ONE_EPOCH, root=tmp_path / "ml")
    metrics = train(cfg)
    predictor = load_package(Path(cfg.paths.train_dir) / "model")
    assert predictor.multi_label and "labels" in predictor.predict(["pizza song"])[0]
    assert 0.0 <= metrics["test/acc"] <= 1.0  # exact-match accuracy


def test_other_models_and_optimizers_come_from_config(train_cfg):
    cfg = train_cfg("model=text_cnn", "model.net.embed_dim=16", "model.net.channels=8",
                    "optimizer=sgd", "scheduler=step", "trainer.max_epochs=1")
    metrics = train(cfg)
    assert metrics["epochs"] == 1
    spec = load_package(Path(cfg.paths.train_dir) / "model").spec
    assert spec["class"] == "dlforge.models.text:TextCNN"
    assert spec["source"] == {"distribution": "dlforge", "version": dlforge.__version__}


@pytest.mark.parametrize(("override", "choice"), [("model=transformerz", "embedding_bag"),
                                                  ("optimizer=adamq", "adamw")])
def test_unknown_choices_fail_listing_the_valid_ones(train_cfg, override, choice):
    with pytest.raises(DlforgeError, match=f"(?s){choice}.*Fix: name a config that exists"):
        train_cfg(override)


def test_a_target_that_does_not_import_fails_before_training(train_cfg, tmp_path):
    with pytest.raises(DlforgeError, match="model.net._target_=nope.Net cannot be imported"):
        train(train_cfg("model.net._target_=nope.Net"))
    assert not (tmp_path / "outputs/intent/train/run.json").exists()


def test_missing_snapshot_names_the_commands_to_run(train_cfg, tmp_path):
    (tmp_path / "outputs/intent/snapshot.json").unlink()
    with pytest.raises(DlforgeError, match="dlforge snapshot experiment=intent"):
        train(train_cfg())
    with pytest.raises(DlforgeError, match="does not exist"):
        train(train_cfg("snapshot=0123456789ab"))


def test_image_datasets_train_the_small_cnn(train_cfg, tmp_path):
    from dlforge.data import SnapshotStore, Store

    root = tmp_path / "img"
    store = Store(root / "data/store")
    store.create("toy", "image_class", write_images(root / "images"))
    ref = SnapshotStore(root / "data/snapshots", store).build("toy")
    (root / "outputs/intent").mkdir(parents=True)
    (root / "outputs/intent/snapshot.json").write_text(json.dumps({"path": str(ref.path)}))
    cfg = train_cfg("model=small_cnn", "model.net.width=8", "trainer.max_epochs=4", root=root)
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.7
    predictor = load_package(Path(cfg.paths.train_dir) / "model")
    image = (root / "images/cols/0.png").read_bytes()
    assert predictor.predict([image])[0]["label"] == "cols"
    assert predictor.encoder.size == (8, 8)


def test_launch_false_freezes_the_config_and_prints_the_worker_command(train_cfg, tmp_path):
    cfg = train_cfg("launch=false")
    out = train(cfg)
    assert out["worker"].endswith(f"-m dlforge.train.worker {out['config']}")
    assert f"run_id: {out['run_id']}" in Path(out["config"]).read_text()
    (run,) = runs_of(cfg)
    assert run.info.run_id == out["run_id"] and run.info.status == "RUNNING"


def test_several_nodes_outside_slurm_fail_before_anything_starts(train_cfg, tmp_path,
                                                                 monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(DlforgeError, match="sbatch"):
        train(train_cfg("trainer=ddp", "trainer.num_nodes=2"))
    assert not (tmp_path / "outputs/intent/train/run.json").exists()
