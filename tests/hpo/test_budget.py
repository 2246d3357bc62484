"""What a sweep's trials cost: recorded on each trial, added up in the summary and
on the sweep's run, and ``hpo.budget``, which stops the study once it is spent."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import optuna
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.hpo.study import COST, SweepSettings, budget_reached
from dlforge.stages.sweep import sweep
from tests.sweeps import runs, summary

ADDED = ("cpu_seconds", "wall_seconds")  # times add up; peaks are the largest


def check_sweep_cost(written: dict, parent, children: dict) -> None:
    """The summary's total is its trials' recorded costs added up; each trial's is its
    MLflow run's ``cost.*`` metrics; the sweep's run has the total."""
    trials = [t["cost"] for t in written["trials"]]
    for name in ADDED:
        assert written["cost"][name] == pytest.approx(sum(t[name] for t in trials), abs=1e-3)
    assert written["cost"]["peak_rss_bytes"] == max(t["peak_rss_bytes"] for t in trials)
    for row in written["trials"]:
        recorded = children[row["number"]].data.metrics
        assert row["cost"] == pytest.approx(
            {k.removeprefix("cost."): v for k, v in recorded.items() if k.startswith("cost.")})
        assert row["cost"]["cpu_seconds"] > 0
    assert {k: v for k, v in parent.data.metrics.items() if k.startswith("cost.")} == \
        pytest.approx({f"cost.{k}": v for k, v in written["cost"].items()})


def test_a_spent_budget_stops_the_study_before_n_trials(sweep_cfg, tmp_path, mlflow_dir,
                                                       caplog):
    out = tmp_path / "outputs/intent/sweep"
    cfg = sweep_cfg("hpo.n_trials=5", "trainer.max_epochs=1", "hpo.budget.cpu_seconds=0.001")
    with caplog.at_level(logging.INFO, logger="dlforge.hpo"):
        result = sweep(cfg)
    assert result["counts"] == {"COMPLETE": 1} and result["stopped"] == "budget"
    written = summary(out)
    assert written["stopped"] == "budget" and len(written["trials"]) == 1
    spent = written["budget"]["cpu_seconds"]
    assert spent["budget"] == 0.001 and spent["spent"] == written["cost"]["cpu_seconds"] > 0.001
    assert "the study's budget is spent (cpu_seconds" in caplog.text
    assert "<hpo.budget.cpu_seconds=0.001>" in caplog.text

    found = runs(mlflow_dir, f"sweep-{tmp_path.name}")
    (parent,) = [r for r in found if r.data.tags.get("mlflow.parentRunId") is None]
    children = {int(r.data.tags["dlforge.trial"]): r for r in found
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    check_sweep_cost(written, parent, children)

    # Run again: the budget is still spent, nothing is trained.
    assert sweep(sweep_cfg("hpo.n_trials=5", "trainer.max_epochs=1",
                           "hpo.budget.cpu_seconds=0.001"))["counts"] == {"COMPLETE": 1}


def test_running_trials_count_with_the_cost_recorded_so_far():
    settings = SweepSettings.from_config(
        {"study_name": "s", "storage": "unused", "metric": "val/acc", "direction": "maximize",
         "n_trials": 5, "timeout": None, "n_workers": 2, "budget": {"cpu_seconds": 10}}, "hpo")
    study = optuna.create_study()
    done = study.ask()
    done.set_user_attr(COST, {"cpu_seconds": 6.0, "wall_seconds": 3.0})
    study.tell(done, 0.5)
    running = study.ask()
    assert budget_reached(study, settings) == {}
    running.set_user_attr(COST, {"cpu_seconds": 4.5, "wall_seconds": 2.0})  # as of an epoch
    assert budget_reached(study, settings) == {"cpu_seconds": (10.5, 10.0)}


def test_a_running_trial_records_its_cost_at_each_epoch(tmp_path):
    import torch

    from dlforge.hpo.pruning import OptunaPruning
    from dlforge.hpo.study import open_storage

    storage = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage))
    trial = study.ask()
    callback = OptunaPruning(storage, "s", trial._trial_id, "val/acc", optuna.pruners.NopPruner())
    trainer = SimpleNamespace(
        is_global_zero=True, sanity_checking=False, current_epoch=0,
        callback_metrics={"val/acc": torch.tensor(0.5)},
        strategy=SimpleNamespace(root_device=torch.device("cpu"), broadcast=lambda x, src: x))
    callback.on_fit_start(trainer, None)
    callback.on_validation_end(trainer, None)
    (stored,) = optuna.load_study(study_name="s", storage=open_storage(storage)).trials
    assert stored.state.name == "RUNNING" and stored.user_attrs[COST]["wall_seconds"] > 0
    assert set(stored.user_attrs[COST]) >= {"cpu_seconds", "peak_rss_bytes"}


@pytest.mark.parametrize(("override", "words"), [
    ("hpo.budget.cpu_seconds=-1", "hpo.budget.cpu_seconds=-1 in the hpo config"),
    ("hpo.budget.gpu_seconds=0", "hpo.budget.gpu_seconds=0 in the hpo config"),
    ("+hpo.budget.cpu_secs=5", "hpo.budget.cpu_secs in the hpo config .*: not a cost a budget"),
    ("hpo.budget=5", "hpo.budget=5 in the hpo config"),
])
def test_a_bad_budget_fails_naming_its_key_before_any_trial(sweep_cfg, tmp_path, override,
                                                            words):
    with pytest.raises(DlforgeError, match=words):
        sweep(sweep_cfg(override))
    assert not (tmp_path / "outputs/intent/sweep").exists()
