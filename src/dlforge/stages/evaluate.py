"""``dlforge evaluate experiment=X``: the trained model on its snapshot's test split.

Reads the last finished training (``paths.train_dir``: its frozen config, run
and package), evaluates the package on the test split of the snapshot it was
trained on (:func:`dlforge.registry.evaluate.evaluate_package`), writes the
results to ``paths.eval_dir`` (``metrics.json`` with its run record,
:mod:`dlforge.stages.record`) and logs them to the training run in MLflow.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.layout import ExperimentLayout
from dlforge.data.snapshot import Snapshot
from dlforge.registry.evaluate import evaluate_package, log_to_run
from dlforge.stages.common import trained
from dlforge.stages.record import attach, stage_record

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """The evaluate stage. Returns the headline metrics (also in ``metrics.json``)."""
    import mlflow

    from dlforge.core.tracking import setup_tracking_uri
    from dlforge.models.package import load_package

    layout = ExperimentLayout.from_config(cfg)
    train = trained(cfg)
    model = load_package(layout.train.model)
    snapshot = Snapshot.open(train["snapshot_path"], store=cfg.paths.store_dir)
    if snapshot.labels != model.labels:
        raise DlforgeError(f"the model's labels differ from snapshot {snapshot.version}'s: "
                           "the package and training config are out of step. Fix: re-run "
                           f"`dlforge train experiment={cfg.experiment_name}`")
    made_from = stage_record(cfg, "evaluate", snapshot.version)  # before it writes
    headline = evaluate_package(model, snapshot, layout.eval, int(cfg.batch_size),
                                cfg.threshold, cfg.dataset.get("oos_label"))
    attach(layout.eval.metrics, made_from)
    headline["record"] = made_from
    setup_tracking_uri(cfg.tracking)
    log_to_run(mlflow.MlflowClient(), train["run_id"], layout.eval, headline)
    log.info("evaluated %s on %d test examples: %s", cfg.experiment_name, headline["examples"],
             {k: v for k, v in headline.items() if isinstance(v, float)})
    return headline
