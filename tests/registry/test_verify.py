"""``dlforge verify``: a model trained again from its record (or its package scored again),
compared with what was registered, and the attestation written on its version."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import load_file, save_file

import dlforge.cli
from dlforge.cli import main
from dlforge.core.tracking import connect
from dlforge.models.package import package_digest
from dlforge.registry.lineage import lineage
from tests.helpers import built_once, tree_digest
from tests.toy import copy_project, make_project
from tests.user_models import project_name, resign, write_user_code


@pytest.fixture(scope="session")
def released_template(tmp_path_factory):
    """One toy model of the project's own code (3 epochs on 400 rows), trained, evaluated
    and registered once for the test run (:func:`tests.helpers.built_once`) in its own
    MLflow store; then the project's code changes (its mean pooling doubles), so that
    only a re-run of the code the package carries gives the registered weights. Never
    handed to a test: see :func:`released`."""

    def build(root: Path) -> None:
        name = project_name(root)
        with pytest.MonkeyPatch.context() as patch:
            patch.syspath_prepend(str(write_user_code(root, name)))
            project = make_project(root, root / "mlruns")
            record = project.release(f"model.net._target_={name}.nets.BagNet")
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]  # in this worker too, the code is only in the package
        (root / "records.json").write_text(json.dumps([record]))
        layers = root / "src" / name / "layers.py"
        layers.write_text(layers.read_text().replace("(x * mask).sum(1) /",
                                                     "(x * mask).sum(1) * 2.0 /"))

    root = built_once(tmp_path_factory, "verify-release", build)
    project = make_project(root, root / "mlruns", snapshot=False)
    project.records = json.loads((root / "records.json").read_text())
    return project


@pytest.fixture(scope="module")
def released(released_template, tmp_path_factory):
    """The module's own copy of :func:`released_template` (folder, MLflow store and
    artefacts), its project code importable from nowhere: what it was trained with is
    only in the package."""
    project = copy_project(released_template, tmp_path_factory.mktemp("verify") / "project")
    project.mlflow_dir = project.root / "mlruns"
    connect(project.tracking_uri)
    return project


def verify(project, *args: str, root: Path | None = None) -> tuple[int, dict | None, str]:
    """``dlforge verify ARGS --json`` in this process, on the project's (or ``root``'s)
    folders: (exit status, the JSON result or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *args, "--json", "--tracking-uri", project.tracking_uri,
                     f"paths.root={root or project.root}",
                     f"paths.mlflow_dir={project.mlflow_dir}"])
    connect(project.tracking_uri)
    return code, json.loads(out.getvalue()) if out.getvalue() else None, err.getvalue()


def version(project, number: str = "1"):
    return mlflow.MlflowClient().get_model_version(project.model_name, number)


def experiment_runs(name: str) -> list:
    experiment = mlflow.get_experiment_by_name(name)
    return [] if experiment is None else mlflow.MlflowClient().search_runs(
        [experiment.experiment_id])


@pytest.fixture(scope="module")
def verified(released, tmp_path_factory):
    """``dlforge verify models:/NAME/1`` once, with the snapshot absent from the snapshot
    folder it is given (so it is rebuilt from the store); what it changed. A test that
    reads the verdict it records asks for it: an xdist worker that takes one test of
    this module verifies its own copy of the release, without the others' side effects."""
    snapshots = tmp_path_factory.mktemp("no-snapshots")
    outputs = tree_digest(released.root / "outputs")
    runs = len(experiment_runs(f"registry-{released.label}"))
    before = version(released)
    code, result, err = verify(released, f"models:/{released.model_name}/1",
                               f"paths.snapshot_dir={snapshots}")
    return {"code": code, "result": result, "err": err, "before": before,
            "after": version(released), "snapshots": snapshots,
            "outputs": outputs == tree_digest(released.root / "outputs"),
            "runs": (runs, len(experiment_runs(f"registry-{released.label}")))}


def test_a_cpu_model_trained_again_is_identical_and_attested(released, verified, capsys):
    assert verified["code"] == 0, verified["err"][-3000:]
    result = verified["result"]
    assert (result["verdict"], result["compared"]) == ("identical", "weights")
    assert "weights identical bit for bit" in result["details"]
    assert result["attested"] == [f"models:/{released.model_name}/1"]
    assert set(result["differences"]) >= {"test/acc"}
    assert all(row["difference"] == 0 for row in result["differences"].values())
    # The snapshot was rebuilt from the store; nothing under outputs/ changed, and the
    # re-run's MLflow run is in the verify experiment, not the model's own.
    snapshot = json.loads((released.root / "outputs/intent/snapshot.json").read_text())
    assert (verified["snapshots"] / "toy" / snapshot["version"] / "manifest.json").is_file()
    assert verified["outputs"]
    before, after = verified["runs"]
    assert before == after >= 1  # the model's own experiment gained no run
    (rerun,) = [r for r in experiment_runs("verify")
                if r.data.tags.get("dlforge.verifies") == result["run_id"]]
    assert rerun.info.status == "FINISHED"

    tags = verified["after"].tags
    assert tags["dlforge.verify.verdict"] == "identical"
    assert tags["dlforge.verify.compared"] == "weights"
    assert tags["dlforge.verify.torch"] == torch.__version__
    assert tags["dlforge.verify.device"] == "cpu"
    assert tags["dlforge.verify.cuda"] == (torch.version.cuda or "none")
    assert datetime.fromisoformat(tags["dlforge.verify.date"]).tzinfo is not None
    assert "## Attestation" in verified["after"].description

    chain = lineage(mlflow.MlflowClient(), f"models:/{released.model_name}@champion")
    assert chain["attestation"]["verdict"] == "identical"
    assert main(["lineage", f"models:/{released.model_name}/1", "--tracking-uri",
                 released.tracking_uri]) == 0
    assert "verified identical (weights) on cpu" in capsys.readouterr().out


def test_a_second_verify_changes_only_the_attestation(released, verified):
    before = version(released)
    code, result, err = verify(released, f"models:/{released.model_name}@champion",
                               "--evaluate-only")
    assert code == 0, err[-3000:]
    assert (result["verdict"], result["compared"]) == ("identical", "metrics")
    assert result["details"].startswith("evaluate-only:")
    assert result["differences"]["accuracy"]["difference"] == 0
    after = version(released)
    assert after.tags["dlforge.verify.compared"] == "metrics"
    assert (after.source, after.run_id) == (before.source, before.run_id) == (
        verified["before"].source, verified["before"].run_id)
    kept = ("dlforge.verify.", "dlforge.card_sha256")
    assert {k: v for k, v in after.tags.items() if not k.startswith(kept)} == {
        k: v for k, v in verified["before"].tags.items() if not k.startswith(kept)}
    stored = Path(mlflow.artifacts.download_artifacts(
        mlflow.MlflowClient().get_model_version_download_uri(released.model_name, "1")))
    (sums,) = stored.rglob("SHA256SUMS")
    assert package_digest(sums.parent) == before.tags["dlforge.package_sha256"]


def change_a_weight(package: Path, by: float = 1.0) -> None:
    """Add ``by`` to the first value of the first tensor of ``package``'s weights."""
    weights = load_file(package / "weights.safetensors")
    name = sorted(weights)[0]
    weights[name].view(-1)[0] += by
    save_file(weights, package / "weights.safetensors")


def test_a_changed_weight_is_found_by_the_re_run_or_by_the_integrity_check(released, verified,
                                                                           tmp_path):
    # A copy of the project whose package has one weight changed, its digests re-signed.
    for folder in ("outputs", "data"):
        shutil.copytree(released.root / folder, tmp_path / folder)
    package = tmp_path / "outputs/intent/train/model"
    change_a_weight(package)
    resign(package)
    code, result, err = verify(released, "experiment=intent", root=tmp_path)
    assert code == 1, err[-3000:]
    assert result["verdict"] == "differs" and result["compared"] == "weights"
    assert result["details"].startswith("re-run differs: weights sha256")
    assert "1 of " in result["details"]
    assert result["attested"] == []  # no registered version holds this package
    assert version(released).tags["dlforge.verify.verdict"] != "differs"

    change_a_weight(package)  # ... and now without signing it
    code, result, err = verify(released, "experiment=intent", root=tmp_path)
    assert code == 1, err[-3000:]
    assert result["details"].startswith(
        "integrity check failed (the package was changed after training)")
    assert "weights.safetensors" in result["details"]


def test_a_registered_package_changed_afterwards_fails_the_integrity_check(released, verified,
                                                                           tmp_path):
    from dlforge.core.config import compose
    from dlforge.data.snapshot import Snapshot
    from dlforge.registry.register import Candidate, Gate, register_candidate

    # Version 2: a copy of the package with a weight changed and re-signed, registered.
    package = tmp_path / "model"
    shutil.copytree(released.root / "outputs/intent/train/model", package)
    change_a_weight(package, by=2.0)
    resign(package)
    train = json.loads((released.root / "outputs/intent/train/run.json").read_text())
    snapshot = json.loads((released.root / "outputs/intent/snapshot.json").read_text())
    metrics = json.loads((released.root / "outputs/intent/eval/metrics.json").read_text())
    cfg = released.config("register")
    candidate = Candidate(package, train["run_id"], "intent",
                          Snapshot.open(snapshot["path"], store=cfg.paths.store_dir), metrics)
    record = register_candidate(mlflow.MlflowClient(), released.model_name, candidate,
                                Gate.from_config(compose("register", released.common
                                                         ).registry.gate, "registry.gate"))
    assert record["version"] == "2" and not record["promote"]
    # ... whose stored weights are then changed in the artifact store.
    stored = Path(mlflow.artifacts.download_artifacts(
        mlflow.MlflowClient().get_model_version_download_uri(released.model_name, "2")))
    (sums,) = stored.rglob("SHA256SUMS")
    source = mlflow.MlflowClient().get_model_version_download_uri(released.model_name, "2")
    local = Path(source.removeprefix("file://")) / sums.parent.relative_to(stored)
    change_a_weight(local)
    code, result, err = verify(released, f"models:/{released.model_name}/2")
    assert code == 1, err[-3000:]
    assert result["details"].startswith(
        "integrity check failed (the package was changed after registration)")
    assert version(released, "2").tags["dlforge.verify.verdict"] == "differs"
    assert version(released, "1").tags["dlforge.verify.verdict"] == "identical"


def test_a_snapshot_whose_commits_are_missing_is_unavailable_naming_dvc_pull(released,
                                                                            verified, tmp_path):
    code, result, err = verify(released, "experiment=intent",
                               f"paths.snapshot_dir={tmp_path / 'snapshots'}",
                               f"paths.store_dir={tmp_path / 'store'}")
    assert code == 2, err[-3000:]
    snapshot = json.loads((released.root / "outputs/intent/snapshot.json").read_text())
    assert result["verdict"] == "unavailable"
    assert f"snapshot toy/{snapshot['version']} is not in" in result["details"]
    assert "lacks dataset toy (commits 1)" in result["details"]
    assert "Fix: run `dvc pull`" in result["details"]
    # A verdict reached elsewhere is kept: the inputs were missing here, not the evidence.
    assert version(released).tags["dlforge.verify.verdict"] == "identical"


def test_verify_is_a_command_of_the_cli_and_listed_in_its_usage():
    assert dlforge.cli.TOOLS["verify"] == "dlforge.cli.verify"
    usage = dlforge.cli.__doc__
    assert all(f"dlforge {name}" in usage for name in [*dlforge.cli.TOOLS, *dlforge.cli.STAGES])


@pytest.mark.parametrize(("trainer", "metrics", "bitwise", "why"), [
    ({"accelerator": "auto", "deterministic": True}, {"cost.wall_seconds": 9.0}, True,
     "in one process on CPU"),
    ({"accelerator": "cpu", "deterministic": True}, {}, True, "in one process on CPU"),
    ({"accelerator": "auto", "deterministic": True},
     {"cost.wall_seconds": 9.0, "cost.gpu_seconds": 9.0}, False, "on a GPU"),
    ({"accelerator": "gpu", "deterministic": True}, {}, False, "on a GPU"),
    ({"accelerator": "cpu", "deterministic": True, "devices": 2}, {}, False, "in 2 processes"),
    ({"accelerator": "cpu", "deterministic": False}, {}, False, "deterministic=false"),
    ({"accelerator": "auto", "deterministic": True}, {}, False, "does not record the device"),
])
def test_only_a_deterministic_one_process_cpu_training_is_compared_bit_for_bit(
        trainer, metrics, bitwise, why):
    from dlforge.stages.rerun import reproducible

    found, reason = reproducible({"trainer": {"devices": 1, "num_nodes": 1, **trainer}},
                                 metrics)
    assert found is bitwise and why in reason


def test_test_metrics_are_compared_within_the_declared_tolerance():
    from dlforge.registry.attest import compare_metrics

    recorded = {"test/acc": 0.9, "test/loss": 0.3, "val/acc": 0.8, "cost.wall_seconds": 5.0}
    same = compare_metrics(recorded, {"test/acc": 0.9, "test/loss": 0.3}, 0.005)
    assert (same.verdict, same.exit_code, same.compared) == ("identical", 0, "metrics")
    close = compare_metrics(recorded, {"test/acc": 0.903, "test/loss": 0.3}, 0.005)
    assert (close.verdict, close.exit_code) == ("within_tolerance", 0)
    assert close.differences["test/acc"]["difference"] == pytest.approx(0.003)
    far = compare_metrics(recorded, {"test/acc": 0.91, "test/loss": 0.3}, 0.005)
    assert (far.verdict, far.exit_code) == ("differs", 1)
    assert far.details.startswith("re-run differs: beyond tolerance 0.005") \
        and "test/acc" in far.details
