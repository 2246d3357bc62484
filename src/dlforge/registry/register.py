"""An evaluated model package as a registered MLflow model (:func:`register_candidate`).

    1. log the package to its training run as an MLflow model (pyfunc flavour
       with signature and input example) and register it under the model
       name: a new version with its own artifacts
    2. tag the version (run, snapshot, evaluation metrics) and point the
       ``candidate`` alias at it
    3. gate: it becomes ``champion`` if there is none, or if it beats the
       champion's gate metric by more than the gate's margin, both measured on
       the candidate's test split: a champion evaluated on another snapshot is
       evaluated again on this one (once per champion version and snapshot: the
       value is kept as the version's tag ``dlforge.gate.<snapshot>.<metric>``)
    4. tag the verdict and its reason, and write the version's model card
       (:mod:`dlforge.registry.card`)

Registering the same package again adds no version: the existing one is reported.
The ``dlforge register`` stage is :func:`dlforge.stages.register.register`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dlforge.core.errors import DlforgeError, InvalidInput
from dlforge.core.settings import Settings, one_of
from dlforge.core.tracking import Tag
from dlforge.registry import models as registry
from dlforge.registry.card import OOS_TAG, REASON_TAG, TEXT_TAG, VERDICT_TAG, publish_card

if TYPE_CHECKING:
    from dlforge.data.snapshot import Snapshot

log = logging.getLogger(__name__)

PACKAGE_TAG = "dlforge.package_sha256"  # models.package.package_digest of the version's files
MULTI_LABEL_THRESHOLD = 0.5  # a champion evaluated again predicts a label at this probability


@dataclass(frozen=True)
class Gate(Settings):
    """When a registered version becomes ``champion`` (``registry.gate`` in conf/registry/).

    Args:
        metric: a key of the evaluation's metrics.json.
        direction: whether a larger (maximize) or smaller (minimize) value is better.
        margin: the candidate must beat the champion by more than this.
    """

    SOURCE = "conf/registry/"

    metric: str
    direction: str = field(metadata=one_of("maximize", "minimize"))
    margin: float


@dataclass(frozen=True)
class Candidate:
    """A trained package up for registration, with what its version records.

    Args:
        package: the package folder (see :mod:`dlforge.models.package`).
        run_id: the MLflow run that trained it; the MLflow model is logged there.
        experiment: the experiment it was trained for.
        snapshot: the snapshot it was trained and evaluated on.
        metrics: its evaluation metrics (metrics.json of the evaluation).
        oos_label: the intent data's out-of-scope label, for its metrics.
        card_text: the experiment's ``model_card`` text by key (``intended_use``,
            ``limitations``); a key left out has none.
    """

    package: Path
    run_id: str
    experiment: str
    snapshot: Snapshot
    metrics: dict
    oos_label: str | None = None
    card_text: dict[str, str] = field(default_factory=dict)


def register_candidate(client, name: str, candidate: Candidate, gate: Gate) -> dict:
    """Register ``candidate`` as a version of model ``name`` (once per package), point
    ``candidate`` at it and ``champion`` too when it passes ``gate``.

    Returns:
        The record of the decision: model, version, uri, run, snapshot, the gate and
        its value, the champion now, ``promote`` and ``reason``.
    """
    from dlforge.models.package import package_digest

    digest = package_digest(candidate.package)  # also refuses a package changed since training
    version = _existing(client, name, digest)
    value = candidate.metrics[gate.metric]
    if version is None:
        version = _log_and_register(name, candidate.package, candidate.run_id,
                                    candidate.snapshot)
        _tag(client, name, version, candidate, gate.metric, digest)
        registry.promote(client, name, version, "candidate", reason="registered")
        decision = decide(client, name, gate, float(value), candidate)
        if decision["promote"]:
            registry.promote(client, name, version, "champion", reason=decision["reason"])
        _tag_verdict(client, name, version, decision)
        publish_card(client, name, version)
    else:
        decision = {"promote": False, "reason": f"this package is already version {version}"}
    return {"model": name, "version": str(version), "uri": f"models:/{name}/{version}",
            "run_id": candidate.run_id, "snapshot": candidate.snapshot.version,
            "gate": {"metric": gate.metric, "value": value, "direction": gate.direction,
                     "margin": gate.margin},
            "champion": registry.alias_version(client, name, "champion"), **decision}


def decide(client, name: str, gate: Gate, value: float,
           candidate: Candidate | None = None) -> dict:
    """Whether a candidate with gate metric ``value`` replaces the current champion,
    compared on the candidate's test split when ``candidate`` is given."""
    champion = registry.alias_version(client, name, "champion")
    if champion is None:
        return {"promote": True, "reason": "no champion yet"}
    held, where = champion_value(client, name, champion, gate.metric, candidate)
    if held is None:
        return {"promote": False, "reason": f"champion v{champion} has no {gate.metric} to "
                                            "compare with; promote by hand if intended"}
    gain = (value - held) * (1 if gate.direction == "maximize" else -1)
    verdict = "beats" if gain > gate.margin else "does not beat"
    return {"promote": gain > gate.margin,
            "reason": f"{gate.metric}={value:.4f} {verdict} champion v{champion}'s "
                      f"{held:.4f}{where} by more than {gate.margin}"}


def champion_value(client, name: str, champion: str, metric: str,
                   candidate: Candidate | None) -> tuple[float | None, str]:
    """The champion's ``metric`` on the candidate's test split, and where it was measured
    (for the reason). Its own evaluation when that was on the same snapshot; else a kept
    re-evaluation, or a new one; its own evaluation, said so, when the champion cannot be
    scored on the candidate's labels."""
    tags = client.get_model_version(name, champion).tags
    own = tags.get(f"dlforge.metric.{metric}")
    own = None if own is None else float(own)
    if candidate is None or tags.get(Tag.SNAPSHOT) == candidate.snapshot.version:
        return own, ""
    snapshot = candidate.snapshot.version
    key = f"dlforge.gate.{snapshot}.{metric}"
    if key in tags:
        return float(tags[key]), f" (re-evaluated on snapshot {snapshot})"
    value, problem = _evaluate_champion(client, name, champion, metric, candidate)
    if value is None:
        return own, f" (on its own test split: {problem})"
    client.set_model_version_tag(name, champion, key, str(value))
    return value, f" (re-evaluated on snapshot {snapshot})"


def _evaluate_champion(client, name: str, champion: str, metric: str,
                       candidate: Candidate) -> tuple[float | None, str]:
    """The champion's ``metric`` on the candidate's test split, or (None, why not).

    A champion whose package this dlforge cannot load (an older package format, a
    class no longer installed) is no reason to refuse the candidate: the gate then
    takes the champion's own evaluation, and says why.
    """
    import tempfile

    from dlforge.core.layout import EvalFiles
    from dlforge.models.package import load_package
    from dlforge.registry.evaluate import evaluate_package
    from dlforge.registry.fetch import fetch_package

    with tempfile.TemporaryDirectory(prefix="dlforge-gate-") as tmp:
        folder, _, _ = fetch_package(client, f"models:/{name}/{champion}", Path(tmp) / "cache")
        try:
            model = load_package(folder)
        except DlforgeError as err:
            # The problem without the fix, or else the message without the temp folder.
            problem = (err.problem if isinstance(err, InvalidInput)
                       else str(err).replace(str(folder), f"models:/{name}/{champion}"))
            log.warning("champion %s v%s does not load here; the gate takes its own "
                        "evaluation: %s", name, champion, err)
            return None, f"its package does not load here: {problem}"
        if model.labels != candidate.snapshot.labels:
            return None, "its labels differ from this snapshot's"
        scores = evaluate_package(model, candidate.snapshot, EvalFiles(Path(tmp) / "eval"),
                                  batch_size=256, threshold=MULTI_LABEL_THRESHOLD,
                                  oos_label=candidate.oos_label)
    value = scores.get(metric)
    return (float(value), "") if isinstance(value, int | float) else (None, f"no {metric}")


def _existing(client, name: str, digest: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{PACKAGE_TAG}` = "
                                             f"'{digest}'")
    except MlflowException:  # no such model yet
        return None
    return str(min(int(v.version) for v in found)) if found else None


def _log_and_register(name: str, package: Path, run_id: str, snapshot: Snapshot) -> str:
    """Log the package as an MLflow model to its training run; register it. Two test
    inputs are the input example; the snapshot's manifest is logged for lineage."""
    import mlflow
    import torch

    from dlforge import __version__
    from dlforge.registry.pyfunc import signature_and_example

    examples = snapshot.inputs("test")[:2]
    signature, example = signature_and_example(package, list(examples))
    requirements = [f"dlforge=={__version__}", f"torch=={torch.__version__.split('+')[0]}",
                    "safetensors", "pandas", *_model_requirements(package)]
    with mlflow.start_run(run_id=run_id):
        # lineage without the files
        mlflow.log_dict(snapshot.manifest, "lineage/snapshot_manifest.json")
        info = mlflow.pyfunc.log_model(
            name="model", loader_module="dlforge.registry.pyfunc", data_path=str(package),
            signature=signature, input_example=example, pip_requirements=requirements,
            registered_model_name=name)
    return str(info.registered_model_version)


def _model_requirements(package: Path) -> list[str]:
    """The distribution of the package's model class, unless dlforge (its carried code
    needs none): ``["timm==1.0.9"]`` or ``[]``."""
    import json

    source = json.loads((package / "model.json").read_text()).get("source", {})
    name = source.get("distribution")
    return [f"{name}=={source['version']}"] if name and name != "dlforge" else []


def _tag(client, name: str, version: str, candidate: Candidate, gate_metric: str,
         digest: str) -> None:
    oos = candidate.oos_label if candidate.oos_label in candidate.snapshot.labels else None
    tags = {"dlforge.run_id": candidate.run_id, Tag.SNAPSHOT: candidate.snapshot.version,
            Tag.EXPERIMENT: candidate.experiment, "dlforge.gate_metric": gate_metric,
            PACKAGE_TAG: digest,
            **{f"dlforge.metric.{k}": str(v) for k, v in candidate.metrics.items()
               if isinstance(v, float)},
            **({OOS_TAG: oos} if oos else {}),
            **{TEXT_TAG + k: v for k, v in candidate.card_text.items()}}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _tag_verdict(client, name: str, version: str, decision: dict) -> None:
    """The gate's verdict on the new version and why, for its model card."""
    verdict = "champion" if decision["promote"] else "candidate"
    client.set_model_version_tag(name, version, VERDICT_TAG, verdict)
    client.set_model_version_tag(name, version, REASON_TAG, decision["reason"])
