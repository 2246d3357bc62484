"""``dlforge monitor experiment=X``: is the served model still seeing what it was trained on?

Compares the registered model's live predictions (the serving prediction log
in ``log_dir``) with the train split of the experiment's snapshot and writes
the report to ``out_dir`` (see :mod:`dlforge.monitor.report`). The report is
also an MLflow run named ``monitor`` (numbers as metrics, files as artifacts).
On drift the retrain marker ``paths.exp_dir/retrain.json`` gets a new request
(see :mod:`dlforge.monitor.retrain`).

    dlforge monitor experiment=intent
    dlforge monitor experiment=intent window_hours=24 thresholds.label_psi=0.1
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.layout import ExperimentLayout, MonitorFiles
from dlforge.monitor.reference import served_package
from dlforge.monitor.report import (
    MonitorSettings,
    log_decision,
    make_report,
    summary,
    window_start,
    write_report,
)
from dlforge.monitor.retrain import request_retrain
from dlforge.monitor.tracking import log_results, monitor_run
from dlforge.stages.common import experiment_snapshot


def monitor(cfg: DictConfig) -> dict:
    """The monitor stage. Returns a summary of ``report.json``.

    The settings are checked before anything is read or written; the ``monitor``
    run ends FAILED when the report cannot be made.
    """
    settings = MonitorSettings.from_config(cfg)
    since = window_start(settings.window_hours, time.time())
    snapshot = experiment_snapshot(cfg)
    layout, out = ExperimentLayout.from_config(cfg), MonitorFiles(Path(settings.out_dir))
    name = cfg.registry.model_name
    with monitor_run(cfg.tracking, cfg.experiment_name, name) as (client, run_id):
        served = served_package(client, name, settings.alias, Path(settings.cache_dir),
                                layout.train.model)
        report, reference, traffic = make_report(cfg.experiment_name, name, served, snapshot,
                                                 settings, since)
        report["run_id"] = run_id
        if report["decision"]["drift"]:
            reasons = report["decision"]["reasons"]
            report["retrain"] = request_retrain(layout.retrain_marker, reasons, out.report)
        log_results(client, run_id, report, write_report(out, report, reference, traffic))
    log_decision(report)
    return summary(report, out.report)
