"""The workflow on a cluster and its report: lint, the SLURM profile, `snakemake --report`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests import test_workflow
from tests.conftest import ROOT
from tests.test_workflow import BIN, run, snakemake, without_sweep

project = test_workflow.project  # the fixture: a copy of the project, intent only, quick

SLURM = "workflow/profiles/slurm"
GPU_RULES = ("train", "sweep", "sweep_worker")
# dlforge is the rules' only software, installed from pyproject.toml (the only
# packaging file): a conda environment or container per rule would be a second one.
ACCEPTED_LINTS = {"Specify a conda environment or container for each rule."}


def test_snakemake_lint_finds_nothing_but_the_software_environment():
    result = subprocess.run([f"{BIN}/snakemake", "--lint"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    output = result.stdout + result.stderr
    lints = {line.strip()[2:].removesuffix(":") for line in output.splitlines()
             if line.startswith("    * ")}
    assert result.returncode == 0 or (result.returncode == 1 and "Lints for" in output), output
    assert lints <= {lint.removesuffix(":") for lint in ACCEPTED_LINTS}, output


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
                     "input": fields["input"].split(", "), "resources": resources})
    return jobs


@pytest.fixture(scope="module")
def slurm_plan() -> list[dict]:
    """The plan under the SLURM profile (its executor plugin is a dev dependency)."""
    return planned_jobs(ROOT, "--profile", SLURM)


def test_slurm_profile_plans_every_stage_with_parallel_sweep_workers(slurm_plan):
    profile = yaml.safe_load((ROOT / SLURM / "config.yaml").read_text())
    workers = int(dict(item.split("=") for item in profile["config"])["sweep_jobs"])
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    planned = [f"{job['rule']}-{job['wildcards']['exp']}" for job in slurm_plan]
    assert {name for name in planned if not name.startswith("sweep_worker-")} == set(stages)
    swept = [name.removeprefix("sweep-") for name in stages if name.startswith("sweep-")]
    assert swept and workers > 1
    assert planned.count(f"sweep_worker-{swept[0]}") == workers
    # The sweep job waits for its workers, which run the same study first.
    for job in (j for j in slurm_plan if j["rule"] == "sweep"):
        exp = job["wildcards"]["exp"]
        markers = {f"outputs/{exp}/sweep/workers/{n}.done" for n in range(workers)}
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
def test_report_holds_the_metrics_and_plots_of_a_run(project):
    without_sweep(project)
    target = "outputs/intent/eval/metrics.json"  # train and evaluate: what the report shows
    snakemake(project, target)
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


def test_report_shows_the_sweep_plots(project):
    # The sweep's outputs stand in for a run (the report reads files, not the study).
    sweep = Path("outputs/intent/sweep")
    (project / sweep).mkdir(parents=True)
    (project / sweep / "best.yaml").write_text("overrides: [optimizer.lr=0.001]\n")
    (project / sweep / "summary.json").write_text('{"counts": {"COMPLETE": 1}}\n')
    for plot in ("history.png", "importances.png"):
        (project / sweep / plot).write_bytes(b"\x89PNG\r\n\x1a\n" + plot.encode())
    run(project, f"{BIN}/snakemake", "--report", "report.html", str(sweep / "summary.json"))
    results = report_results(project / "report.html")
    assert {path: entry["category"] for path, entry in results.items()} == {
        f"outputs/intent/sweep/{name}": ("intent", "sweep")
        for name in ("summary.json", "history.png", "importances.png")}
