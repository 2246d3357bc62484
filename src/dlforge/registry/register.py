"""``dlforge register experiment=X``: the evaluated model as a registered MLflow model.

    1. log the model package to its training run as an MLflow model (pyfunc
       flavour with signature and input example) and register it under
       ``registry.model_name``: a new version with its own artifacts
    2. tag the version (run, snapshot, evaluation metrics) and point the
       ``candidate`` alias at it
    3. gate: it becomes ``champion`` if there is none, or if it beats the
       champion's ``registry.gate.metric`` by more than ``registry.gate.margin``
    4. write the decision and its reason to ``paths.exp_dir/register.json``

Registering the same package again adds no version: the existing one is reported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json_atomic
from dlforge.registry import models as registry

log = logging.getLogger(__name__)
PACKAGE_TAG = "dlforge.package_sha256"  # models.package.package_digest of the version's files


def register(cfg: DictConfig) -> dict:
    """The register stage. Returns what ``register.json`` records."""
    import mlflow

    from dlforge.core.tracking import setup_mlflow
    from dlforge.models.package import package_digest
    from dlforge.registry.evaluate import trained

    train = trained(cfg)
    evaluation = _evaluation(cfg, train)
    gate = cfg.registry.gate
    if gate.direction not in ("maximize", "minimize"):
        raise DlforgeError(f"registry.gate.direction={gate.direction!r}: use maximize or minimize")
    if not isinstance(evaluation.get(gate.metric), int | float):
        numeric = sorted(k for k, v in evaluation.items() if isinstance(v, int | float))
        raise DlforgeError(f"registry.gate.metric={gate.metric!r} is not in "
                           f"{cfg.paths.eval_dir}/metrics.json. Fix: use one of {numeric}")
    setup_mlflow(cfg.tracking)
    client = mlflow.MlflowClient()
    name, package = cfg.registry.model_name, Path(cfg.paths.train_dir) / "model"
    digest = package_digest(package)  # also refuses a package changed since training
    version = _existing(client, name, digest)
    if version is None:
        version = _log_and_register(name, package, train)
        _tag(client, name, version, train, evaluation, gate.metric, digest)
        registry.promote(client, name, version, "candidate", reason="registered")
        decision = decide(client, name, gate, float(evaluation[gate.metric]))
        if decision["promote"]:
            registry.promote(client, name, version, "champion", reason=decision["reason"])
    else:
        decision = {"promote": False, "reason": f"this package is already version {version}"}
    record = {"model": name, "version": str(version), "uri": f"models:/{name}/{version}",
              "run_id": train["run_id"], "snapshot": train["snapshot"],
              "gate": {"metric": gate.metric, "value": evaluation[gate.metric],
                       "direction": gate.direction, "margin": gate.margin},
              "champion": registry.alias_version(client, name, "champion"),
              **decision}
    write_json_atomic(Path(cfg.paths.exp_dir) / "register.json", record)
    log.info("registered %s version %s: %s", name, version, decision["reason"])
    return record


def decide(client, name: str, gate: DictConfig, value: float) -> dict:
    """Whether a candidate with gate metric ``value`` replaces the current champion."""
    champion = registry.alias_version(client, name, "champion")
    if champion is None:
        return {"promote": True, "reason": "no champion yet"}
    tags = client.get_model_version(name, champion).tags
    held = tags.get(f"dlforge.metric.{gate.metric}")
    if held is None:
        return {"promote": False, "reason": f"champion v{champion} has no {gate.metric} to "
                                            "compare with; promote by hand if intended"}
    gain = (value - float(held)) * (1 if gate.direction == "maximize" else -1)
    verdict = "beats" if gain > gate.margin else "does not beat"
    return {"promote": gain > gate.margin,
            "reason": f"{gate.metric}={value:.4f} {verdict} champion v{champion}'s "
                      f"{float(held):.4f} by more than {gate.margin}"}


def _evaluation(cfg: DictConfig, train: dict) -> dict:
    path = Path(cfg.paths.eval_dir) / "metrics.json"
    if not path.is_file():
        raise DlforgeError(f"{path} is missing. Fix: run `dlforge evaluate "
                           f"experiment={cfg.experiment_name}` first")
    evaluation = json.loads(path.read_text())
    if evaluation.get("snapshot") != train["snapshot"]:
        raise DlforgeError(f"{path} is from snapshot {evaluation.get('snapshot')}, the model "
                           f"from {train['snapshot']}. Fix: run `dlforge evaluate "
                           f"experiment={cfg.experiment_name}` again")
    return evaluation


def _existing(client, name: str, digest: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{PACKAGE_TAG}` = "
                                             f"'{digest}'")
    except MlflowException:  # no such model yet
        return None
    return str(min(int(v.version) for v in found)) if found else None


def _log_and_register(name: str, package: Path, train: dict) -> str:
    """Log the package as an MLflow model to the training run; register it."""
    import mlflow
    import torch

    from dlforge import __version__
    from dlforge.data.build import read_split
    from dlforge.data.types import get_type
    from dlforge.registry.pyfunc import signature_and_example

    manifest = json.loads((Path(train["snapshot_path"]) / "manifest.json").read_text())
    column = get_type(manifest["type"]).input_column
    examples = read_split(Path(train["snapshot_path"]) / "test.parquet")[column].head(2)
    if manifest["type"] == "image_class":
        import base64

        examples = [base64.b64encode(b).decode() for b in examples]
    signature, example = signature_and_example(list(examples))
    requirements = [f"dlforge=={__version__}", f"torch=={torch.__version__.split('+')[0]}",
                    "safetensors", "pandas"]
    with mlflow.start_run(run_id=train["run_id"]):
        mlflow.log_dict(manifest, "lineage/snapshot_manifest.json")  # lineage without the files
        info = mlflow.pyfunc.log_model(
            name="model", loader_module="dlforge.registry.pyfunc", data_path=str(package),
            signature=signature, input_example=example, pip_requirements=requirements,
            registered_model_name=name)
    return str(info.registered_model_version)


def _tag(client, name: str, version: str, train: dict, evaluation: dict, gate_metric: str,
         digest: str) -> None:
    tags = {"dlforge.run_id": train["run_id"], "dlforge.snapshot": train["snapshot"],
            "dlforge.experiment": train["experiment_name"], "dlforge.gate_metric": gate_metric,
            PACKAGE_TAG: digest,
            **{f"dlforge.metric.{k}": str(v) for k, v in evaluation.items()
               if isinstance(v, float)}}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
