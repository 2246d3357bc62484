"""The per-epoch history a resumed run restores reaches MLflow, whole and once."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow

from dlforge.core.tracking import setup_tracking_uri
from dlforge.train.callbacks import EpochHistory


def test_a_resumed_run_logs_the_restored_epochs_that_mlflow_lacks(tmp_path):
    from omegaconf import OmegaConf

    setup_tracking_uri(OmegaConf.create({"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}))
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("history")).info.run_id
    rows = [{"epoch": e, "val/acc": 0.5 + e / 10, "lr": 0.01} for e in range(3)]
    for row in rows[:1]:  # epoch 1 was checkpointed, then killed before its log
        client.log_metric(run_id, "val/acc", row["val/acc"], step=row["epoch"])
        client.log_metric(run_id, "lr", row["lr"], step=row["epoch"])

    history = EpochHistory(run_id)
    history.load_state_dict({"history": rows[:2]})  # what the checkpoint restores
    history.on_train_start(SimpleNamespace(is_global_zero=True), None)
    mlflow.flush_async_logging()

    logged = client.get_metric_history(run_id, "val/acc")
    assert sorted((m.step, m.value) for m in logged) == [(0, 0.5), (1, 0.6)]  # once each
    assert [m.step for m in client.get_metric_history(run_id, "lr")] == [0, 1]

    other_rank = EpochHistory(run_id)
    other_rank.load_state_dict({"history": rows})
    other_rank.on_train_start(SimpleNamespace(is_global_zero=False), None)  # rank 0 logs
    mlflow.flush_async_logging()
    assert len(client.get_metric_history(run_id, "val/acc")) == 2
