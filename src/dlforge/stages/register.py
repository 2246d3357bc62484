"""``dlforge register experiment=X``: the evaluated model as a registered MLflow model.

Reads the last finished training (``paths.train_dir``) and its evaluation
(``paths.eval_dir/metrics.json``), registers the package under
``registry.model_name`` and gates it with ``registry.gate``
(:func:`dlforge.registry.register.register_candidate`), with the experiment's
``model_card`` text for the version's model card, and writes the decision and
its reason to ``paths.exp_dir/register.json``, with its run record
(:mod:`dlforge.stages.record`).
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.data.snapshot import Snapshot
from dlforge.registry.card import TEXT_KEYS
from dlforge.registry.register import Candidate, Gate, register_candidate
from dlforge.stages.common import trained
from dlforge.stages.record import stage_record

log = logging.getLogger(__name__)


def register(cfg: DictConfig) -> dict:
    """The register stage. Returns what ``register.json`` records."""
    import mlflow

    from dlforge.core.tracking import setup_mlflow

    gate = Gate.from_config(cfg.registry.gate, "registry.gate")
    layout = ExperimentLayout.from_config(cfg)
    train = trained(cfg)
    metrics = _evaluation(cfg, layout.eval.metrics, train)
    made_from = stage_record(cfg, "register", train["snapshot"])
    _check_gate_metric(gate, metrics, layout.eval.metrics)
    candidate = Candidate(layout.train.model, train["run_id"], train["experiment_name"],
                          Snapshot.open(train["snapshot_path"], store=cfg.paths.store_dir), metrics,
                          oos_label=cfg.dataset.get("oos_label"), card_text=_card_text(cfg))
    setup_mlflow(cfg.tracking)
    record = register_candidate(mlflow.MlflowClient(), cfg.registry.model_name, candidate, gate)
    record["record"] = made_from
    write_json_atomic(layout.register_record, record)
    log.info("registered %s version %s: %s", record["model"], record["version"],
             record["reason"])
    return record


def _evaluation(cfg: DictConfig, path: Path, train: dict) -> dict:
    """The evaluation's metrics (``path``), when they are of the trained model's snapshot."""
    if not path.is_file():
        raise DlforgeError(f"{path} is missing. Fix: run `dlforge evaluate "
                           f"experiment={cfg.experiment_name}` first")
    evaluation = json.loads(path.read_text())
    if evaluation.get("snapshot") != train["snapshot"]:
        raise DlforgeError(f"{path} is from snapshot {evaluation.get('snapshot')}, the model "
                           f"from {train['snapshot']}. Fix: run `dlforge evaluate "
                           f"experiment={cfg.experiment_name}` again")
    return evaluation


def _check_gate_metric(gate: Gate, metrics: dict, path: Path) -> None:
    """The gate's metric is a number of the evaluation (read from ``path``), or an error
    naming the ones that are."""
    if not isinstance(metrics.get(gate.metric), int | float):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise DlforgeError(f"registry.gate.metric={gate.metric!r} is not in {path}. Fix: use "
                           f"one of {numeric}")


def _card_text(cfg: DictConfig) -> dict[str, str]:
    """The experiment's ``model_card`` text by key, the keys it gives; an error naming
    the file and the key for a key the card does not have or a value that is not text."""
    section = OmegaConf.to_container(cfg.get("model_card") or {}, resolve=True)
    where = f"conf/experiment/{cfg.experiment_name}.yaml"
    for key, value in section.items():
        if key not in TEXT_KEYS:
            near = difflib.get_close_matches(str(key), TEXT_KEYS, n=1)
            raise DlforgeError(f"model_card.{key} in {where} is not a model card key. Fix: "
                               + (f"did you mean model_card.{near[0]}? " if near else "")
                               + f"use {' or '.join(TEXT_KEYS)}")
        if value is not None and not isinstance(value, str):
            raise DlforgeError(f"model_card.{key} in {where} is {value!r}, not text. Fix: "
                               "write it as a string (Markdown), or null for none")
    return {key: value for key, value in section.items() if value and value.strip()}
