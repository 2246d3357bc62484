"""The workflow on a cluster and its report: lint, the SLURM and Kubernetes profiles,
`snakemake --report`."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dlforge.stages.dvcfiles import CONFIG_STAGE
from tests import test_workflow, workflow_fixtures
from tests.helpers import ROOT
from tests.workflow_fixtures import BIN, copy_of, run, without_sweep

quick_copy = test_workflow.quick_copy  # the fixture: a copy of the project, intent only, quick
quick = workflow_fixtures.quick  # the fixture it copies
pipeline = workflow_fixtures.pipeline  # the fixture: that project after a Snakemake run

SLURM = "workflow/profiles/slurm"
KUBERNETES = "workflow/profiles/kubernetes"
GPU_RULES = ("train", "sweep", "sweep_worker")
# Without an image (the workflow config's `container`), the rules' software is the
# environment Snakemake runs in, installed from pyproject.toml.
NO_IMAGE = "Specify a conda environment or container for each rule."


# What the Kubernetes profile reads from the environment (see its header); no
# cluster, bucket or server is reached by a dry run.
KUBERNETES_ENV = {"DLFORGE_IMAGE": "registry.example.org/dlforge:1.0",
                  "DLFORGE_STORAGE_PREFIX": "s3://dlforge-test/project",
                  "MLFLOW_TRACKING_URI": "http://mlflow.example.org:5000",
                  "OPTUNA_STORAGE": "postgresql://dlforge@db.example.org/optuna"}


# The Kubernetes profile names the pods' image as every rule's container.
@pytest.mark.parametrize(("profile", "expected"),
                         [([], {NO_IMAGE}), (["--profile", KUBERNETES], set())],
                         ids=["plain", "kubernetes"])
def test_snakemake_lint_finds_nothing_but_a_missing_image(profile, expected, monkeypatch):
    for name, value in KUBERNETES_ENV.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run([f"{BIN}/snakemake", "--lint", *profile], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    lints = {line.strip()[2:].removesuffix(":") for line in output.splitlines()
             if line.startswith("    * ")}
    assert result.returncode == (1 if expected else 0), output
    assert lints == expected, output


def planned_jobs(cwd: Path, *args: str) -> list[dict]:
    """Every job of a forced dry run: ``{"rule", "wildcards", "input", "resources"}``."""
    out = run(cwd, f"{BIN}/snakemake", "--dry-run", "--forceall", *args)
    jobs = []
    for block in out.split("\nrule ")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:]
                      if line.startswith("    ") and ": " in line)
        if "wildcards" not in fields:
            continue  # rule all: targets only
        resources = dict(item.split("=", 1) for item in fields["resources"].split(", "))
        wildcards = dict(item.split("=", 1) for item in fields["wildcards"].split(", "))
        jobs.append({"rule": block.split(":", 1)[0], "wildcards": wildcards,
                     "input": fields["input"].split(", ") if "input" in fields else [],
                     "resources": resources})
    return jobs


def profile_config(profile: str) -> dict:
    return yaml.safe_load((ROOT / profile / "config.yaml").read_text())


def sweep_jobs(profile: str) -> int:
    return int(dict(item.split("=") for item in profile_config(profile)["config"])["sweep_jobs"])


@pytest.fixture(scope="module")
def slurm_plan() -> list[dict]:
    """The plan under the SLURM profile (its executor plugin is a dev dependency)."""
    return planned_jobs(ROOT, "--profile", SLURM)


def assert_plans_every_stage(plan: list[dict], profile: str) -> None:
    """Every stage of dvc.yaml is planned, and each swept experiment's sweep runs in
    the profile's sweep_jobs (> 1) parallel sweep_worker jobs."""
    workers = sweep_jobs(profile)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    planned = [f"{job['rule']}-{job['wildcards']['exp']}" for job in plan]
    stages.pop(CONFIG_STAGE)  # DVC's: Snakemake writes the config sections as it reads the rules
    assert {name for name in planned if not name.startswith("sweep_worker-")} == set(stages)
    swept = [name.removeprefix("sweep-") for name in stages if name.startswith("sweep-")]
    assert swept and workers > 1
    assert all(planned.count(f"sweep_worker-{exp}") == workers for exp in swept)


def test_slurm_profile_plans_every_stage_with_parallel_sweep_workers(slurm_plan):
    assert_plans_every_stage(slurm_plan, SLURM)
    # The sweep job waits for its workers, which run the same study first.
    for job in (j for j in slurm_plan if j["rule"] == "sweep"):
        exp = job["wildcards"]["exp"]
        markers = {f"outputs/{exp}/sweep/workers/{n}.done" for n in range(sweep_jobs(SLURM))}
        assert markers <= set(job["input"])


def test_slurm_profile_gives_gpus_to_training_and_sweep_jobs_only(slurm_plan):
    for job in slurm_plan:
        gpus = job["resources"].get("gpu", "0")
        assert gpus == ("1" if job["rule"] in GPU_RULES else "0"), job
        partition = "gpu" if job["rule"] in GPU_RULES else "cpu"
        assert job["resources"]["slurm_partition"] == partition, job
        assert {"runtime", "mem_mb", "cpus_per_task"} <= set(job["resources"]), job


def test_slurm_plugin_turns_the_gpu_resource_into_sbatch_gpus(slurm_plan):
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):  # the plugin reads a job's resources as attributes and with get
        __getattr__ = dict.__getitem__

    train = next(job for job in slurm_plan if job["rule"] == "train")
    resources = {k: int(v) if v.isdigit() else v for k, v in train["resources"].items()}
    assert set_gres_string(SimpleNamespace(resources=Resources(resources))).strip() == "--gpus=1"


@pytest.fixture(scope="module")
def kubernetes_plan(tmp_path_factory) -> list[dict]:
    """The plan under the Kubernetes profile, offline: its S3 prefix is replaced by a
    local folder that holds the project's files, as the bucket would before a run
    (snakemake-storage-plugin-fs; the S3 plugin would ask the bucket)."""
    bucket = tmp_path_factory.mktemp("bucket")
    for name in ("conf", "src", "data", "workflow", "Snakefile"):
        (bucket / name).symlink_to(ROOT / name)
    with pytest.MonkeyPatch.context() as env:
        for name, value in KUBERNETES_ENV.items():
            env.setenv(name, value)
        return planned_jobs(ROOT, "--profile", KUBERNETES, "--default-storage-provider", "fs",
                            "--default-storage-prefix", str(bucket))


def test_kubernetes_profile_runs_jobs_in_the_image_with_files_in_s3(monkeypatch):
    from snakemake.cli import parse_args

    for name, value in KUBERNETES_ENV.items():
        monkeypatch.setenv(name, value)
    _, args = parse_args(["--profile", str(ROOT / KUBERNETES)])
    assert args.executor == "kubernetes"
    assert args.container_image == KUBERNETES_ENV["DLFORGE_IMAGE"]
    assert args.default_storage_provider == "s3"
    assert args.default_storage_prefix == KUBERNETES_ENV["DLFORGE_STORAGE_PREFIX"]
    assert {"MLFLOW_TRACKING_URI", "OPTUNA_STORAGE"} <= set(args.envvars)
    # The dataset store and snapshots: on the claim of volume.yaml, at shared_dir.
    claim = yaml.safe_load((ROOT / KUBERNETES / "volume.yaml").read_text())
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    workflow_config = dict(item.split("=", 1) for item in args.config)
    assert args.kubernetes_persistent_volumes == [
        f"{claim['metadata']['name']}:{workflow_config['shared_dir']}"]
    # The rules' container is the pods' image (the rules expand the variable).
    assert workflow_config["container"] == "docker://$DLFORGE_IMAGE"


def test_a_job_under_a_storage_provider_runs_on_its_staged_files_and_the_shared_volume():
    from dlforge.stages.workflow import job_paths

    declared = "outputs/intent/train/metrics.json"
    assert job_paths(declared, declared) == ""  # in the project folder: dvc.yaml's command
    staged = ".snakemake/storage/s3/bucket/dlforge/proj"
    assert job_paths(declared, f"{staged}/{declared}", "/mnt/dlforge") == (
        f" paths.root={staged} paths.store_dir=/mnt/dlforge/data/store"
        " paths.snapshot_dir=/mnt/dlforge/data/snapshots")
    with pytest.raises(ValueError, match="not its rule's"):
        job_paths(declared, f"{staged}/outputs/other.json")


def test_where_a_job_runs_changes_no_run_identity(monkeypatch):
    from dlforge.core.config import compose
    from dlforge.train.tracking import as_dict, config_hash

    monkeypatch.chdir(ROOT)
    moved = ".snakemake/storage/s3/bucket/dlforge/proj"
    overrides = job_paths_overrides(f"{moved}/outputs/intent/train/metrics.json")
    here, there = (compose("train", ["experiment=intent", *extra])
                   for extra in ([], overrides))
    assert there.paths.store_dir == "/mnt/dlforge/data/store"
    assert there.paths.train_dir.startswith(moved)
    # What a training's identity is made of (its MLflow tag, its resume check) is the same.
    assert config_hash(as_dict(here)) == config_hash(as_dict(there))


def job_paths_overrides(staged: str) -> list[str]:
    from dlforge.stages.workflow import job_paths

    return job_paths("outputs/intent/train/metrics.json", staged, "/mnt/dlforge").split()


def test_kubernetes_profile_plans_every_stage_with_parallel_sweep_workers(kubernetes_plan):
    assert_plans_every_stage(kubernetes_plan, KUBERNETES)
    for job in kubernetes_plan:  # every file a job reads comes from the storage prefix
        assert all(f.endswith("(retrieve from storage)") for f in job["input"]), job


def test_kubernetes_profile_gives_gpus_to_training_and_sweep_jobs_only(kubernetes_plan):
    for job in kubernetes_plan:
        gpus = job["resources"].get("gpu", "0")
        assert gpus == ("1" if job["rule"] in GPU_RULES else "0"), job
        if job["rule"] in GPU_RULES:
            assert job["resources"]["gpu_manufacturer"] == "nvidia", job
        assert {"mem_mb", "disk_mb"} <= set(job["resources"]), job


def test_kubernetes_plugin_turns_the_gpu_resource_into_a_pod_with_an_nvidia_gpu(
        kubernetes_plan):
    from snakemake_executor_plugin_kubernetes import Executor

    train = next(job for job in kubernetes_plan if job["rule"] == "train")
    resources = {k: int(v) if v.isdigit() else v for k, v in train["resources"].items()}
    resources["_cores"] = profile_config(KUBERNETES)["set-threads"]["train"]
    submitted = []
    # The plugin's run_job, without the cluster: it builds the Job and hands it to
    # the Kubernetes API, here a list.
    executor = object.__new__(Executor)
    vars(executor).update(
        container_image=KUBERNETES_ENV["DLFORGE_IMAGE"], persistent_volumes=[],
        k8s_cpu_scalar=0.95, k8s_service_account_name=None, privileged=False,
        secret_envvars={}, run_namespace="run", namespace="default",
        logger=logging.getLogger("kubernetes"),
        workflow=SimpleNamespace(deployment_settings=SimpleNamespace(deployment_method=set())),
        batchapi=SimpleNamespace(create_namespaced_job=lambda ns, body: submitted.append(body)),
        format_job_exec=lambda job: "python -m snakemake", _kubernetes_retry=lambda f: f(),
        report_job_submission=lambda info: None)
    executor.run_job(SimpleNamespace(resources=resources, jobid=1, attempt=1,
                                     is_containerized=False))
    pod = submitted[0].spec.template.spec
    container = pod.containers[0]
    assert container.image == KUBERNETES_ENV["DLFORGE_IMAGE"]
    # Kubernetes schedules nvidia.com/gpu only with a limit (the profile's scale 0).
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert container.resources.requests["memory"] == "32000M"
    assert container.resources.requests["cpu"] == "7600m"  # 8 threads, times 0.95
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]


# A pod of the Kubernetes executor, for snakemake-executor-plugin-cluster-generic: the
# job runs in an empty folder of its own (the pod's emptyDir /workdir), deleted after
# it; its output and state stay beside the folder, for Snakemake and the test to read.
POD = """#!/bin/sh
pod=$(mktemp -d "$PODS/pod.XXXXXX")
if (cd "$pod" && sh "$1" > "$pod.log" 2>&1); then echo success; else echo failed; fi > "$pod.state"
rm -rf "$pod"
echo "$pod"
"""


@pytest.mark.slow
def test_jobs_that_share_no_folder_run_the_stages_from_storage(quick_copy, tmp_path):
    """Ingest, snapshot and train as under the Kubernetes profile, on this machine: each
    job in a folder of its own that is deleted after it, its files through the default
    storage prefix (snakemake-storage-plugin-fs stands in for S3), the dataset store and
    snapshots on `shared_dir` (the volume), MLflow in one database (the server)."""
    assert shutil.which("rsync"), ("snakemake-storage-plugin-fs copies files with rsync: "
                                   "install it (`make test` does)")
    without_sweep(quick_copy)
    bucket, shared, pods = (tmp_path / name for name in ("bucket", "shared", "pods"))
    pods.mkdir()
    # Uploaded once before the first run (the profile's header): the raw data, conf/.
    for name in ("data", "conf"):
        shutil.copytree(quick_copy / name, bucket / name)
    # Each job starts from the project's git files, which Snakemake ships through storage.
    run(quick_copy, "git", "init", "-q")
    run(quick_copy, "git", "add", "conf", "workflow", "Snakefile", "dvc.yaml", "params.yaml")
    (tmp_path / "pod.sh").write_text(POD)
    target = "outputs/intent/train/metrics.json"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PODS": str(pods),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = subprocess.run(
        [f"{BIN}/snakemake", "--executor", "cluster-generic",
         "--cluster-generic-submit-cmd", f"sh {tmp_path / 'pod.sh'}",
         "--cluster-generic-status-cmd", "sh -c 'cat $0.state'",
         "--seconds-between-status-checks", "1", "--jobs", "1",
         # As the Kubernetes plugin: no shared folder, the project's files shipped.
         "--shared-fs-usage", "none", "--job-deploy-sources",
         "--default-storage-provider", "fs", "--default-storage-prefix", str(bucket),
         "--config", f"shared_dir={shared}", "--printshellcmds", target],
        cwd=quick_copy, env=env, capture_output=True, text=True, timeout=600)
    jobs = {log.name: log.read_text() for log in sorted(pods.glob("pod.*.log"))}
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(jobs.values())
    # Three jobs, each in its own folder, none left: nothing crossed through a folder (the
    # project folder holds the config sections `dlforge workflow dvc` wrote, nothing else).
    assert len(jobs) == 3 and not [pod for pod in pods.iterdir() if pod.is_dir()]
    assert {f.parent.name for f in (quick_copy / "outputs").rglob("*") if f.is_file()} == {
        "config"}
    assert not (quick_copy / "data" / "store").exists()
    # Each command ran on Snakemake's local copy of the storage prefix.
    staged = f".snakemake/storage/fs/{str(bucket).lstrip('/')}"
    for stage in ("ingest", "snapshot", "train"):
        command = f"dlforge {stage} experiment=intent paths.root={staged} " \
                  f"paths.store_dir={shared}/data/store " \
                  f"paths.snapshot_dir={shared}/data/snapshots > {staged}/outputs/intent/logs/"
        assert sum(command in text for text in jobs.values()) == 1, (stage, jobs)
    # The outputs and logs are in storage; the store and snapshot on the shared folder.
    experiment = bucket / "outputs" / "intent"
    metrics = json.loads((experiment / "train" / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1, metrics
    assert (experiment / "train" / "model").is_dir()
    assert {log.name for log in (experiment / "logs").iterdir()} >= {
        "ingest.log", "snapshot.log", "train.log"}
    snapshot = json.loads((experiment / "snapshot.json").read_text())
    assert Path(snapshot["path"]).is_relative_to(shared / "data" / "snapshots" / "clinc150")
    assert Path(snapshot["path"]).is_dir()
    assert (shared / "data" / "store" / "clinc150" / "commits").is_dir()


def report_results(html: Path) -> dict[str, dict]:
    """The files a Snakemake report embeds: ``{path: {"category", "content", ...}}``."""
    text = html.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", text).group(1))
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", text).group(1))
    for name, sub in ((c, s) for c, subs in categories.items() for s in subs):
        for path in categories[name][sub]:
            results[path]["category"] = (name, sub)
    for entry in results.values():
        entry["content"] = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
    return results


@pytest.mark.slow
def test_report_holds_the_metrics_and_plots_of_a_run(pipeline, tmp_path):
    project = copy_of(pipeline, tmp_path / "project")  # as a complete run left it
    target = "outputs/intent/eval/metrics.json"  # train and evaluate: what the report shows
    run(project, f"{BIN}/snakemake", "--report", "report.html", target)
    results = report_results(project / "report.html")
    expected = {"outputs/intent/train/metrics.json": ("intent", "training"),
                "outputs/intent/train/curves.png": ("intent", "training"),
                "outputs/intent/eval/metrics.json": ("intent", "evaluation"),
                "outputs/intent/eval/per_class.csv": ("intent", "evaluation"),
                "outputs/intent/eval/confusion.png": ("intent", "evaluation")}
    assert {path: entry["category"] for path, entry in results.items()} == expected
    for path, entry in results.items():
        assert entry["content"] == (project / path).read_bytes(), path
        assert "intent" in entry["caption"], path  # the caption, with the experiment
    metrics = json.loads(results["outputs/intent/eval/metrics.json"]["content"])
    assert 0 <= metrics["accuracy"] <= 1 and metrics["examples"] > 0


def test_report_shows_the_sweep_plots(quick_copy):
    # The sweep's outputs stand in for a run (the report reads files, not the study).
    sweep = Path("outputs/intent/sweep")
    (quick_copy / sweep).mkdir(parents=True)
    (quick_copy / sweep / "best.yaml").write_text("overrides: [optimizer.lr=0.001]\n")
    (quick_copy / sweep / "summary.json").write_text('{"counts": {"COMPLETE": 1}}\n')
    for plot in ("history.png", "importances.png"):
        (quick_copy / sweep / plot).write_bytes(b"\x89PNG\r\n\x1a\n" + plot.encode())
    run(quick_copy, f"{BIN}/snakemake", "--report", "report.html", str(sweep / "summary.json"))
    results = report_results(quick_copy / "report.html")
    assert {path: entry["category"] for path, entry in results.items()} == {
        f"outputs/intent/sweep/{name}": ("intent", "sweep")
        for name in ("summary.json", "history.png", "importances.png")}
