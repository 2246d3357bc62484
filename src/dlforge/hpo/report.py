"""What a sweep leaves behind: the parent MLflow run, best.yaml, summary.json, plots.

Files under ``paths.sweep_dir``:
    best.yaml          the best trial's parameters as Hydra overrides
    summary.json       the study: counts by state, best trial, every trial, importances,
                       what its trials cost (in all and each) and why it stopped
    history.png        optimisation history (each trial's value, best so far)
    importances.png    parameter importances (fANOVA)
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json_atomic
from dlforge.core.layout import SweepFiles
from dlforge.hpo import study as s
from dlforge.hpo.best import write_best
from dlforge.hpo.space import Param
from dlforge.train.cost import METRIC_PREFIX

log = logging.getLogger(__name__)


def open_parent(cfg: DictConfig, study, name: str, settings: s.SweepSettings,
                params: list[Param]) -> str:
    """The sweep's MLflow run: the study's own when it has one (a re-run), else a new one."""
    import mlflow

    from dlforge.core import tracking

    experiment_id = tracking.setup_mlflow(cfg.tracking)
    client = mlflow.MlflowClient()
    run_id = study.user_attrs.get(s.PARENT_RUN)
    if run_id and _exists(client, run_id):
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {"dlforge.experiment": cfg.experiment_name, "dlforge.stage": "sweep",
            "dlforge.study": name, "dlforge.storage": s.redact(settings.storage),
            **tracking.git_state()}
    run_id = client.create_run(experiment_id, run_name=f"sweep {name}", tags=tags).info.run_id
    client.log_batch(run_id, params=[
        mlflow.entities.Param(k, str(v)[:6000]) for k, v in {
            "sampler": cfg.hpo.sampler._target_, "pruner": cfg.hpo.pruner._target_,
            "metric": settings.metric, "direction": settings.direction,
            "n_trials": settings.n_trials, "n_workers": settings.n_workers,
            "space": json.dumps([p.__dict__ for p in params])}.items()])
    study.set_user_attr(s.PARENT_RUN, run_id)
    return run_id


def close_parent(run_id: str, status: str, summary: dict | None = None,
                 folder: Path | None = None) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    if summary and summary["best"]:
        client.log_metric(run_id, f"best/{summary['metric']}", summary["best"]["value"])
        for state, count in summary["counts"].items():
            client.log_metric(run_id, f"trials/{state.lower()}", count)
        for name, value in summary["cost"].items():
            client.log_metric(run_id, f"{METRIC_PREFIX}{name}", value)
        files = SweepFiles(folder)
        for path in (files.best, files.summary, files.history, files.importances):
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status=status)


def _exists(client, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except Exception:  # a different tracking store than the study was run with
        return False
    return True


def write_report(study, settings: s.SweepSettings, params: list[Param], out: Path,
                 n_trials: int) -> dict:
    """Write the sweep's files; return the summary.

    Raises:
        DlforgeError: when no trial completed (nothing to call best).
    """
    summary, files = summarize(study, settings, n_trials), SweepFiles(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(files.summary, summary)
    _plot_history(files.history, summary)
    _plot_importances(files.importances, summary["importances"])
    best = summary["best"]
    if best is None:
        errors = [t["error"] for t in summary["trials"] if t.get("error")]
        raise DlforgeError(f"no trial of study {summary['study']} completed ({summary['counts']})"
                           f"; first error: {errors[0] if errors else 'none'}. See the trial "
                           f"folders under {out}")
    overrides = [p.override(best["params"][p.key]) for p in params if p.key in best["params"]]
    write_best(files.best, overrides,
               f"best trial {best['number']} of study {summary['study']}: "
               f"{settings.metric}={best['value']:.4f} ({settings.direction})")
    log.info("best trial %d: %s=%.4f %s", best["number"], settings.metric, best["value"],
             " ".join(overrides))
    if summary["stopped"] == "budget":
        log.info("study %s stopped with its budget spent: %s", summary["study"],
                 ", ".join(f"{k} {v['spent']:g} of {v['budget']:g} <hpo.budget.{k}>"
                           for k, v in summary["budget"].items()))
    return summary


def summarize(study, settings: s.SweepSettings, n_trials: int) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    cost = s.spent(study)
    return {
        "study": study.study_name, "storage": s.redact(settings.storage),
        "metric": settings.metric, "direction": settings.direction, "n_trials": n_trials,
        "stopped": _stopped(study, settings, n_trials, cost),
        "counts": dict(Counter(t.state.name for t in trials)),
        "cost": cost,
        "budget": {name: {"budget": limit, "spent": cost.get(name, 0.0)}
                   for name, limit in settings.cost_budget.limits.items()},
        "epochs": sum(int(t.user_attrs.get(s.EPOCHS, 0)) for t in trials),
        "best": None if best is None else {
            "number": best.number, "value": best.value, "params": best.params,
            "run_id": best.user_attrs.get(s.RUN_ID)},
        "importances": _importances(study) if len(complete) >= 2 else {},
        "trials": [_trial_row(t) for t in trials],
    }


def _stopped(study, settings: s.SweepSettings, n_trials: int, cost: dict) -> str:
    """Why the study starts no more trials: ``budget`` (``hpo.budget`` is spent),
    ``n_trials``, or ``timeout``."""
    if settings.cost_budget.reached(cost):
        return "budget"
    return "n_trials" if s.budget_used(study) >= n_trials else "timeout"


def _trial_row(trial) -> dict:
    seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
               if trial.datetime_complete and trial.datetime_start else None)
    row = {"number": trial.number, "state": trial.state.name, "value": trial.value,
           "params": trial.params, "epochs": trial.user_attrs.get(s.EPOCHS),
           "seconds": seconds, "run_id": trial.user_attrs.get(s.RUN_ID),
           "intermediate": {str(k): v for k, v in sorted(trial.intermediate_values.items())}}
    for key, name in ((s.ERROR, "error"), (s.PRUNED_AT, "pruned_epoch"),
                      (s.INTERRUPTED, "interrupted"), (s.WORKER, "worker"), (s.COST, "cost")):
        if key in trial.user_attrs:
            row[name] = trial.user_attrs[key]
    return row


def _importances(study) -> dict[str, float]:
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as err:  # e.g. a parameter that never varied
        log.info("no parameter importances: %s", err)
        return {}


def _plot_history(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    pruned = [t for t in summary["trials"] if t["state"] == "PRUNED" and t["intermediate"]]
    ax.scatter([t["number"] for t in done], [t["value"] for t in done], label="complete")
    ax.scatter([t["number"] for t in pruned],
               [list(t["intermediate"].values())[-1] for t in pruned], marker="x",
               color="grey", label="pruned (last value)")
    better = max if summary["direction"] == "maximize" else min
    best, xs, ys = None, [], []
    for t in done:
        best = t["value"] if best is None else better(best, t["value"])
        xs.append(t["number"])
        ys.append(best)
    ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set(xlabel="trial", ylabel=summary["metric"], title=f"study {summary['study']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_importances(path: Path, importances: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * max(len(importances), 2)))
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set(xlabel="importance (fANOVA)", title="parameter importances")
    else:
        ax.text(0.5, 0.5, "needs two completed trials with varied parameters",
                ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
