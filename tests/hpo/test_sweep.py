"""The sweep stage: trials, outputs, nested MLflow runs, pruning, failures, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.record import text_digest
from dlforge.hpo.best import write_best
from dlforge.stages.config import apply_best
from dlforge.stages.sections import section_text, section_values
from dlforge.stages.sweep import sweep
from dlforge.stages.train import train
from tests.hpo.test_budget import check_sweep_cost
from tests.sweeps import load_study, runs, summary

LR = {"optimizer.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True},
      "model.net.hidden_dim": {"type": "categorical", "choices": [8, 16]}}
TWO_EPOCHS = ["trainer.max_epochs=2"]  # a study's outputs need epochs, not a good model


def test_a_sweep_writes_best_overrides_summary_plots_and_nested_mlflow_runs(
        sweep_cfg, tmp_path, mlflow_dir):
    out = tmp_path / "outputs/intent/sweep"
    result = sweep(sweep_cfg(*TWO_EPOCHS, space=LR))
    assert result["counts"] == {"COMPLETE": 3}
    study = load_study(out)
    best = study.best_trial
    assert result["best"]["number"] == best.number
    overrides = yaml.safe_load((out / "best.yaml").read_text())
    assert [o.split("=")[0] for o in overrides] == ["optimizer.lr", "model.net.hidden_dim"]
    assert float(overrides[0].split("=")[1]) == pytest.approx(best.params["optimizer.lr"])
    assert overrides[1] == f"model.net.hidden_dim={best.params['model.net.hidden_dim']}"
    written = summary(out)
    assert written["best"]["value"] == best.value and len(written["trials"]) == 3
    assert all(len(t["intermediate"]) == 2 and t["epochs"] == 2 for t in written["trials"])
    for plot in ("history.png", "importances.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    snapshot = tmp_path / "outputs/intent/snapshot.json"
    assert written["record"] == result["record"]  # the summary carries its run record
    assert written["record"]["upstream"] == {"snapshot": text_digest(snapshot.read_bytes())}
    assert written["record"]["snapshot"] == json.loads(snapshot.read_text())["version"]

    found = runs(mlflow_dir, f"sweep-{tmp_path.name}")
    (parent,) = [r for r in found if r.data.tags.get("mlflow.parentRunId") is None]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["dlforge.stage"] == "sweep"
    assert parent.data.metrics["best/val/acc"] == pytest.approx(best.value)
    assert sorted(int(r.data.tags["dlforge.trial"]) for r in children) == [0, 1, 2]
    assert {r.data.tags["dlforge.trial_state"] for r in children} == {"COMPLETE"}
    by_trial = {int(r.data.tags["dlforge.trial"]): r for r in children}
    assert by_trial[best.number].data.params["optimizer.lr"] == str(best.params["optimizer.lr"])
    assert by_trial[best.number].data.metrics["trial/value"] == pytest.approx(best.value)
    check_sweep_cost(written, parent, by_trial)

    # Run again: the study is full, nothing is trained. A larger budget continues it.
    again = sweep(sweep_cfg(*TWO_EPOCHS, space=LR))
    assert again["counts"] == {"COMPLETE": 3} and again["study"] == result["study"]
    more = sweep(sweep_cfg(*TWO_EPOCHS, "hpo.n_trials=4", space=LR))
    assert more["counts"] == {"COMPLETE": 4} and more["study"] == result["study"]
    parents = [r for r in runs(mlflow_dir, f"sweep-{tmp_path.name}")
               if r.data.tags.get("dlforge.stage") == "sweep"
               and "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [parent.info.run_id]


def test_a_changed_training_config_starts_a_new_study(sweep_cfg):
    first = sweep(sweep_cfg("hpo.n_trials=1", "trainer.max_epochs=1", space=LR))
    second = sweep(sweep_cfg("hpo.n_trials=1", "trainer.max_epochs=2", space=LR))
    assert first["study"] != second["study"]
    assert second["counts"] == {"COMPLETE": 1}


def test_failing_trials_are_recorded_failed_and_the_sweep_goes_on(sweep_cfg, tmp_path,
                                                                 mlflow_dir):
    # A negative learning rate raises; 1e30 diverges to NaN; 0.02 trains.
    space = {"optimizer.lr": {"type": "categorical", "choices": [-1.0, 1e30, 0.02]}}
    result = sweep(sweep_cfg("hpo/sampler=grid", "hpo.n_trials=10", space=space))
    assert result["counts"] == {"FAIL": 2, "COMPLETE": 1}  # n_trials capped at the grid
    assert result["best"]["params"] == {"optimizer.lr": 0.02}
    errors = {t["params"]["optimizer.lr"]: t["error"]
              for t in summary(tmp_path / "outputs/intent/sweep")["trials"] if "error" in t}
    assert "Invalid learning rate" in errors[-1.0]
    assert "training diverged: train/loss is nan" in errors[1e30]
    failed = [r for r in runs(mlflow_dir, f"sweep-{tmp_path.name}")
              if r.data.tags.get("dlforge.trial_state") == "FAIL"]
    assert len(failed) == 2 and {r.info.status for r in failed} == {"FAILED"}


def test_a_trial_worse_than_the_median_is_pruned_early(sweep_cfg, tmp_path):
    space = {"optimizer.lr": {"type": "categorical", "choices": [0.02, 1e-6]}}
    cfg = sweep_cfg("hpo/pruner=median", "hpo.pruner.n_startup_trials=1",
                    "hpo.pruner.n_warmup_steps=0", "hpo.n_trials=2", "trainer.max_epochs=4",
                    "~callbacks.early_stopping", space=space,
                    enqueue=[{"optimizer.lr": 0.02}, {"optimizer.lr": 1e-6}])
    result = sweep(cfg)
    assert result["counts"] == {"COMPLETE": 1, "PRUNED": 1}
    trials = {t["params"]["optimizer.lr"]: t for t in summary(tmp_path / "outputs/intent/sweep")
              ["trials"]}
    assert trials[0.02]["state"] == "COMPLETE" and trials[0.02]["epochs"] == 4
    pruned = trials[1e-6]
    assert pruned["state"] == "PRUNED" and pruned["epochs"] < 4
    assert pruned["pruned_epoch"] == pruned["epochs"] - 1
    assert len(pruned["intermediate"]) == pruned["epochs"]


@pytest.mark.parametrize(
    ("overrides", "space", "words"),
    [
        (["hpo.direction=up"], None, "hpo.direction='up'"),
        (["hpo.metric=train/acc"], None, "hpo.metric='train/acc'"),
        (["hpo.n_workers=0"], None, "hpo.n_workers=0"),
        (["hpo.n_trials=0"], None, "hpo.n_trials=0"),
        (["hpo.sampler._target_=optuna.samplers.NoSuchSampler"], None,
         "hpo.sampler._target_=optuna.samplers.NoSuchSampler cannot be imported"),
        (["+hpo.overrides.trainer.max_epochz=2"], None,
         "hpo.overrides.trainer.max_epochz: 'trainer.max_epochz' is not a key"),
        (["hpo/sampler=grid"], None, "hpo.space.optimizer.lr: the grid sampler needs a step"),
        ([], {"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}},
         "hpo.space.optimizer.lr: low=0.1 is greater than high=0.01"),
        ([], {"model.net": {"type": "categorical", "choices": [1]}},
         "hpo.space.model.net: 'model.net' is a config section"),
    ],
)
def test_bad_settings_fail_before_any_trial(sweep_cfg, tmp_path, overrides, space, words):
    with pytest.raises(DlforgeError, match=words.replace("(", r"\(").replace("[", r"\[")):
        sweep(sweep_cfg(*overrides, space=space))
    assert not (tmp_path / "outputs/intent/sweep").exists()


def test_an_enqueued_value_outside_the_space_is_rejected(sweep_cfg, tmp_path):
    with pytest.raises(DlforgeError, match=r"hpo.enqueue\[0\].optimizer.lr=0.9 is outside"):
        sweep(sweep_cfg(space=LR, enqueue=[{"optimizer.lr": 0.9}]))
    assert not (tmp_path / "outputs/intent/sweep").exists()


def test_train_uses_best_yaml_when_the_experiment_enables_the_sweep(sweep_cfg, tmp_path):
    best = tmp_path / "outputs/intent/sweep/best.yaml"
    cfg = sweep_cfg("hpo.enabled=true", "launch=false")
    with pytest.raises(DlforgeError, match=r"enables the sweep \(hpo.enabled\) but .*best.yaml"):
        train(cfg)
    write_best(best, ["optimizer.lr=0.0042", "model.net.hidden_dim=24"], "test")
    frozen = OmegaConf.load(train(cfg)["config"])
    assert (frozen.optimizer.lr, frozen.model.net.hidden_dim) == (0.0042, 24)
    # Its record: the config as composed (best.yaml is a result it read, by its digest).
    section = text_digest(section_text(section_values(cfg, "train")))
    assert frozen.record.config == section and frozen.record.upstream.sweep == text_digest(
        best.read_bytes())
    unswept = sweep_cfg("launch=false", "hpo.enabled=false")
    frozen = OmegaConf.load(train(unswept)["config"])
    assert frozen.optimizer.lr == 0.02 and "sweep" not in frozen.record.upstream

    # A value given on the command line wins over best.yaml.
    tuned = apply_best(sweep_cfg("hpo.enabled=true", "optimizer.lr=0.5"), best,
                       ["optimizer.lr=0.5"])
    assert (tuned.optimizer.lr, tuned.model.net.hidden_dim) == (0.5, 24)


def test_a_best_yaml_that_does_not_fit_the_config_is_refused(sweep_cfg, tmp_path):
    best = tmp_path / "best.yaml"
    write_best(best, ["optimizer.learning_rate=0.1"], "test")
    with pytest.raises(DlforgeError, match=f"{best}.*sets optimizer.learning_rate"):
        apply_best(sweep_cfg(), best, [])
    best.write_text("optimizer.lr: 0.1\n")
    with pytest.raises(DlforgeError, match="is not a list of `key=value` overrides"):
        apply_best(sweep_cfg(), best, [])
    assert Path(best).read_text() == "optimizer.lr: 0.1\n"
