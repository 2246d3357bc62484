"""``dlforge verify MODEL_URI | experiment=X``: train a model again from its record and
attest whether the result is the registered one.

    1. record     models:/NAME/VERSION: the version's package (downloaded) and its
                  training run's frozen config (the run's ``config.yaml``);
                  experiment=X: the latest finished training in ``paths.train_dir``
                  (``config.yaml``, ``model/``) and its run
    2. integrity  the package's files against its SHA256SUMS and the registry's digest:
                  a package changed after registration (or, for experiment=X, after
                  training) differs, says so, and is not trained again
    3. inputs     the snapshot by id, rebuilt from the store when absent; exit 2
                  naming ``dvc pull`` when the store lacks its commits
                  (:mod:`dlforge.stages.rerun`)
    4. re-run     the frozen config with its seed and ``trainer.deterministic``, in a
                  scratch folder: nothing under outputs/ changes, the MLflow run is
                  in the experiment ``verify.experiment``, nothing is registered. A
                  project's own model trains the code its package carries
    5. compare    trained in one process on CPU, deterministic: the weights bit for
                  bit; otherwise each test metric within ``verify.tolerance``.
                  ``--evaluate-only`` trains nothing: the package is scored again on
                  the test split and compared value for value with its evaluation
    6. attest     the ``dlforge.verify.*`` tags (:mod:`dlforge.registry.attest`) on
                  each version holding the package, and its model card again
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.layout import ExperimentLayout
from dlforge.core.tracking import Tag
from dlforge.registry.attest import (
    DIFFERS,
    INTEGRITY,
    UNAVAILABLE,
    WEIGHTS,
    Outcome,
    Unavailable,
    attest,
    attestation_tags,
    compare_exact,
    compare_metrics,
    compare_weights,
    environment,
    integrity_problem,
)
from dlforge.stages.rerun import (
    carried_target,
    recorded_snapshot,
    reproducible,
    rerun_config,
    selection_of,
)

log = logging.getLogger(__name__)

RESCORE_BATCH = 256  # examples a batch when the package is scored again (as the gate does)


@dataclass(frozen=True)
class Record:
    """What a training left behind: enough to train it again and to compare.

    Args:
        target: what was asked, ``models:/NAME/VERSION`` or ``experiment=X``.
        frozen: the frozen training config.
        run: the training's MLflow run.
        package: the package as registered (downloaded) or as training wrote it.
        registered: the package digest the registry holds (None: not registered).
        manifest: the snapshot manifest logged with a registered model, if any.
        versions: the model versions (name, version) that hold this package.
    """

    target: str
    frozen: dict
    run: object
    package: Path
    registered: str | None
    manifest: dict | None
    versions: list[tuple[str, str]]


def verify(cfg: DictConfig, target: str, evaluate_only: bool = False) -> dict:
    """Verify ``target`` (a model URI, or ``experiment=X`` with ``cfg.experiment_name``);
    return the summary the command prints, with its ``exit_code``.

    Raises:
        DlforgeError: when the record itself cannot be read (no such model, no training).
    """
    import mlflow

    from dlforge.core.tracking import setup_tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout is data
    setup_tracking_uri(cfg.tracking)
    client = mlflow.MlflowClient()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlforge-verify-") as tmp:
        scratch = Path(tmp)
        record = _record(cfg, client, target, scratch)
        problem = integrity_problem(record.package, record.registered)
        try:
            outcome, device = (_integrity_failed(record, problem) if problem
                               else _compare(cfg, record, scratch, evaluate_only))
        except Unavailable as err:
            outcome, device = Outcome(UNAVAILABLE, "", str(err)), "cpu"
    where = environment(device)
    tags = attestation_tags(outcome, where)
    # a local package changed after training holds no registered version's files
    versions = record.versions if (problem is None or record.registered) else []
    attested = [f"models:/{n}/{v}" for n, v in versions if attest(client, n, v, tags)]
    return {"target": record.target, "verdict": outcome.verdict, "compared": outcome.compared,
            "details": outcome.details, "exit_code": outcome.exit_code,
            "differences": outcome.differences, "tolerance": float(cfg.verify.tolerance),
            "evaluate_only": evaluate_only, "run_id": record.run.info.run_id,
            "attested": attested, "environment": where,
            "seconds": round(time.perf_counter() - started, 2),
            "recorded_seconds": _recorded_seconds(record.run.data.metrics)}


def _recorded_seconds(metrics: dict) -> float | None:
    """The recorded training's wall time (its cost, else its fit's time)."""
    value = metrics.get("cost.wall_seconds", metrics.get("train_seconds"))
    return None if value is None else round(float(value), 2)


def _integrity_failed(record: Record, problem: str) -> tuple[Outcome, str]:
    after = "registration" if record.registered else "training"
    return Outcome(DIFFERS, WEIGHTS, f"{INTEGRITY} (the package was changed after {after}): "
                                     f"{problem}"), "cpu"


def _compare(cfg: DictConfig, record: Record, scratch: Path,
             evaluate_only: bool) -> tuple[Outcome, str]:
    """Recreate the snapshot, then score the package again or train again; compare."""
    selection = selection_of(record.frozen, record.run.data.tags, record.manifest)
    snapshot = recorded_snapshot(cfg.paths, selection)
    if evaluate_only:
        return _rescore(record, snapshot, scratch), "cpu"
    return _retrain(cfg, record, snapshot, scratch)


def _rescore(record: Record, snapshot, scratch: Path) -> Outcome:
    """The package scored again on the snapshot's test split, against its evaluation."""
    from dlforge.core.layout import EvalFiles
    from dlforge.models.package import load_package
    from dlforge.registry.evaluate import evaluate_package
    from dlforge.registry.register import MULTI_LABEL_THRESHOLD

    recorded = _recorded_evaluation(record.run.info.run_id, record.target)
    model = load_package(record.package)
    if model.labels != snapshot.labels:
        return Outcome(DIFFERS, "metrics", f"evaluate-only: the package's labels are not those "
                                           f"of snapshot {snapshot.version}")
    scores = evaluate_package(model, snapshot, EvalFiles(scratch / "eval"), RESCORE_BATCH,
                              MULTI_LABEL_THRESHOLD, record.frozen["dataset"].get("oos_label"))
    return compare_exact(recorded, scores)


def _recorded_evaluation(run_id: str, target: str) -> dict:
    """The evaluation logged to the training run (``eval/metrics.json``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/eval/metrics.json")
    except (MlflowException, OSError):
        raise Unavailable(f"run {run_id} of {target} has no eval/metrics.json to compare "
                          "with. Fix: run `dlforge evaluate` for its experiment") from None


def _retrain(cfg: DictConfig, record: Record, snapshot, scratch: Path) -> tuple[Outcome, str]:
    """Train again from the frozen config in ``scratch``; compare with the record."""
    from dlforge.train.fit import run_training

    run = record.run
    bitwise, why = reproducible(record.frozen, run.data.metrics)
    overrides = {"trainer.accelerator": "cpu" if bitwise else "auto"}
    target = carried_target(record.package)
    if target:
        overrides["model.net._target_"] = target
    tags = {Tag.STAGE: "verify", "dlforge.verifies": run.info.run_id}
    rerun = rerun_config(record.frozen, cfg, scratch, tags, overrides)
    log.info("training %s again from run %s (%s) <verify.experiment=%s>", record.target,
             run.info.run_id, why, cfg.verify.experiment)
    try:
        metrics = run_training(rerun, snapshot)
    except DlforgeError as err:
        raise Unavailable(f"the record cannot be trained again here: {err}") from None
    by_metrics = compare_metrics(run.data.metrics, metrics, float(cfg.verify.tolerance))
    device = _device(rerun.trainer.accelerator)
    if not bitwise:
        return replace(by_metrics, details=f"{by_metrics.details} ({why})"), device
    package = ExperimentLayout.from_paths(rerun.paths).train.model
    outcome = compare_weights(record.package, package)
    return replace(outcome, differences=by_metrics.differences), device


def _device(accelerator: str) -> str:
    """The device a re-run with ``trainer.accelerator`` trained on, in words."""
    import torch

    if accelerator != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _record(cfg: DictConfig, client, target: str, scratch: Path) -> Record:
    if target.startswith("models:/"):
        return _model_record(client, target, scratch)
    if target.startswith("experiment=") and cfg.experiment_name:
        return _experiment_record(cfg, client)
    raise DlforgeError(f"{target!r} is neither a model URI nor experiment=NAME. Fix: "
                       "`dlforge verify models:/NAME/VERSION` (or @ALIAS), or `dlforge "
                       "verify experiment=NAME`")


def _model_record(client, uri: str, scratch: Path) -> Record:
    """A registered version's record: its package, its training run and frozen config."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from dlforge.registry.fetch import download_package, registered_digest
    from dlforge.registry.lineage import resolve

    name, version = resolve(client, uri)
    uri = f"models:/{name}/{version}"
    digest = registered_digest(client, uri, name, version)
    run_id = client.get_model_version(name, version).run_id
    try:
        run = client.get_run(run_id)
        frozen = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
        manifest = mlflow.artifacts.load_dict(f"runs:/{run_id}/lineage/snapshot_manifest.json")
        package = download_package(client, uri, name, version, scratch / "registered")
    except (MlflowException, OSError, ValueError, yaml.YAMLError) as err:
        raise Unavailable(f"the record of {uri} (run {run_id}) cannot be read from the tracking "
                          f"store: {str(err).splitlines()[0][:300]}. Fix: check that the store "
                          "and its artifacts are reachable from here") from None
    return Record(uri, frozen, run, package, digest, manifest, [(name, version)])


def _experiment_record(cfg: DictConfig, client) -> Record:
    """The latest finished training of ``cfg.experiment_name``: its folder and run."""
    from mlflow.exceptions import MlflowException

    from dlforge.stages.common import trained

    frozen = trained(cfg)
    package = ExperimentLayout.from_config(cfg).train.model
    try:
        run = client.get_run(frozen["run_id"])
    except MlflowException:
        raise Unavailable(f"the run {frozen['run_id']} of experiment={cfg.experiment_name} "
                          "is not in the tracking store. Fix: point tracking.tracking_uri at "
                          "the store it was trained with") from None
    return Record(f"experiment={cfg.experiment_name}", frozen, run, package, None, None,
                  _holding(client, run.info.run_id, package))


def _holding(client, run_id: str, package: Path) -> list[tuple[str, str]]:
    """The registered versions of run ``run_id`` whose digest is ``package``'s listing."""
    from dlforge.models.package import package_digest
    from dlforge.registry.register import PACKAGE_TAG

    try:
        digest = package_digest(package, check_files=False)
    except DlforgeError:
        return []
    found = client.search_model_versions(f"run_id = '{run_id}'")
    return sorted((v.name, str(v.version)) for v in found if v.tags.get(PACKAGE_TAG) == digest)
