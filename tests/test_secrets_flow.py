"""A database password given as the README recommends (an environment variable, or
on the command line) reaches the databases, and no record: no file of the project,
no log line, nothing on stdout or stderr, no MLflow param, tag or artifact, no
attribute of the study. The processes that read a frozen config (sweep workers,
a training worker started from ``launch=false``'s command) still connect.

MLflow and the study live in PostgreSQL (the ``postgres`` fixture, trust
authentication: any password is accepted, so the planted one connects).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from dlforge.hpo.storage import close_storages, open_storage
from tests.helpers import ROOT, dlforge
from tests.toy import FAST, SMALL_MODEL, make_snapshot, toy_rows

pytestmark = pytest.mark.slow

MARK = "Pl4nted"  # in no record, in any encoding of the password
PASSWORD = f"{MARK}/s3cret"  # a "/": SQLAlchemy takes it unescaped
# Where dlforge passes a tracking URI given with a password on the command line.
TRACKING_VARIABLE = "DLFORGE_SECRET_TRACKING_TRACKING_URI"
SWEEP = ["hpo/sampler=random", "hpo/pruner=none", "hpo.n_trials=2", "hpo.n_workers=2",
         "hpo.threads_per_worker=1", "hpo.overrides.trainer.max_epochs=1", "~hpo.space",
         "+hpo.space={optimizer.lr:{type:float,low:0.005,high:0.05,log:true}}"]


@pytest.fixture(autouse=True, scope="module")
def _close_connections():
    """The server stops (at the session's end) only when no client is left."""
    yield
    close_storages()


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


# dlforge run from the project folder, the sample's configs
CONF = {"DLFORGE_CONFIG_DIR": str(ROOT / "conf")}


def test_a_planted_password_connects_and_is_never_recorded(postgres, tmp_path):
    root = tmp_path / "project"
    make_snapshot(root, toy_rows(300))
    tracking, storage = with_password(postgres.database()), with_password(postgres.database())
    experiment = f"secrets-{tmp_path.name}"
    common = ["experiment=intent", f"paths.root={root}", "dataset.name=toy",
              f"tracking.experiment={experiment}", *FAST, *SMALL_MODEL, "trainer.max_epochs=1"]
    # Each URL both ways: the sweep's tracking URI and the training's storage from the
    # environment, the sweep's storage and the training's tracking URI on the command line.
    swept = dlforge("sweep", *common, *SWEEP, f"hpo.storage={storage}", cwd=root,
                    env={**CONF, "MLFLOW_TRACKING_URI": tracking}, check=True)
    launched = dlforge("train", *common, "launch=false", f"tracking.tracking_uri={tracking}",
                       "hpo.storage=${oc.env:OPTUNA_STORAGE}", cwd=root,
                       env={**CONF, "OPTUNA_STORAGE": storage}, check=True)
    # The training's worker command, started where the user set the variable (the README
    # says which); a sweep's workers inherit theirs.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DLFORGE_SECRET_")}
    worker = subprocess.run([sys.executable, "-m", "dlforge.train.worker",
                             json.loads(launched.stdout)["config"]], cwd=root, text=True,
                            capture_output=True, timeout=300,
                            env={**inherited, TRACKING_VARIABLE: tracking,
                                 "OPTUNA_STORAGE": storage})
    assert worker.returncode == 0, worker.stderr[-3000:]

    # Both databases were used: the study's two trials, and four runs (sweep, 2 trials, train).
    (summary,) = optuna.get_all_study_summaries(open_storage(storage))
    study = optuna.load_study(study_name=summary.study_name, storage=open_storage(storage))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    client = mlflow.MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    # Where a run was tracked, and its study stored, is no parameter of it.
    assert [k for r in runs for k in r.data.params if k.endswith(("_uri", "storage"))] == []

    records = {f"{name} stdout/stderr": p.stdout + p.stderr
               for name, p in (("sweep", swept), ("train", launched), ("worker", worker))}
    records.update(files(root))
    records.update(mlflow_records(client, runs, tmp_path / "downloads"))
    records["study"] = json.dumps([study.user_attrs, *[[t.user_attrs, t.system_attrs]
                                                       for t in trials]])
    assert [name for name, text in records.items() if MARK in text] == []

    # The frozen configs keep the interpolation that gives each URL.
    (sweep_file,) = (root / "outputs/intent/sweep").glob("*/sweep.yaml")
    assert given(sweep_file, "train.hpo.storage") == "${oc.env:DLFORGE_SECRET_HPO_STORAGE}"
    assert given(sweep_file, "train.tracking.tracking_uri").startswith(
        "${oc.env:MLFLOW_TRACKING_URI,")
    train_file = root / "outputs/intent/train/config.yaml"
    assert given(train_file, "tracking.tracking_uri") == f"${{oc.env:{TRACKING_VARIABLE}}}"
    assert given(train_file, "hpo.storage") == "${oc.env:OPTUNA_STORAGE}"
    hydra_record = (root / "outputs/intent/logs/train/.hydra/overrides.yaml").read_text()
    assert f"tracking.tracking_uri=${{oc.env:{TRACKING_VARIABLE}}}" in hydra_record


def given(path: Path, key: str):
    """``key`` in the YAML file ``path``, as written (interpolations unresolved)."""
    tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for part in key.split("."):
        tree = tree[part]
    return tree


def files(root: Path) -> dict[str, str]:
    """Every file under ``root``, as text (bytes that are not UTF-8 replaced)."""
    return {str(p): p.read_bytes().decode(errors="replace")
            for p in root.rglob("*") if p.is_file()}


def mlflow_records(client, runs: list, downloads: Path) -> dict[str, str]:
    """Each run's params and tags, and every artifact it holds, downloaded."""
    records = {}
    for run in runs:
        name = run.info.run_name
        records[f"{name} params"] = json.dumps(run.data.params)
        records[f"{name} tags"] = json.dumps(run.data.tags)
        folder = Path(client.download_artifacts(run.info.run_id, "", str(downloads / name)))
        records.update({f"{name} artifact {k}": v for k, v in files(folder).items()})
    assert any(".yaml" in name for name in records)  # the frozen configs were among them
    return records
