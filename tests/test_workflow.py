"""The workflow front ends: Snakemake and DVC run the same stages, incrementally."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dlforge.core.config import PACKAGED_CONF, compose
from dlforge.core.errors import DlforgeError
from dlforge.stages.dvcfiles import (
    CONFIG_STAGE,
    built_dvc_stages,
    dvc_stages,
    dvc_yaml,
    write_dvc_yaml,
)
from dlforge.stages.params import (
    digest,
    experiment_params,
    overrides,
    refresh_params_file,
    write_params_file,
)
from dlforge.stages.sections import section_text, section_values
from dlforge.stages.serve import server_settings
from dlforge.stages.workflow import experiment_config, experiments
from tests import workflow_fixtures
from tests.helpers import ROOT, running
from tests.workflow_fixtures import (
    BIN,
    copy_of,
    dvc_ran,
    planned_rules,
    run,
    set_sweep,
    snakemake,
    without_sweep,
)

pipeline = workflow_fixtures.pipeline  # the fixture: the project after a real Snakemake run
quick = workflow_fixtures.quick  # the fixture: the quick project, written once


@pytest.fixture
def quick_copy(quick, tmp_path) -> Path:
    """A copy of the quick project (:func:`tests.workflow_fixtures.quick_project`),
    not yet run."""
    return copy_of(quick, tmp_path / "project")


def test_dvc_yaml_is_generated_from_the_stage_graph():
    committed = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert committed == dvc_yaml(experiments(ROOT / "workflow" / "config.yaml")), (
        "dvc.yaml is stale: run `dlforge workflow dvc`")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for exp in ("intent", "digits"):
        assert params[exp] == experiment_params(exp), "params.yaml is stale: run `dlforge " \
                                                      "workflow dvc`"
        assert overrides(exp, ROOT / "params.yaml") == []
    # What each experiment trains with, not the defaults: digits has its own model.
    assert params["digits"]["model"]["net"]["_target_"].endswith("SmallCNN")
    assert params["digits"]["trainer"]["max_epochs"] == 15


def test_values_set_in_an_experiments_section_become_its_overrides(tmp_path):
    path = write_params_file(["intent", "digits"], tmp_path / "params.yaml")
    given = yaml.safe_load(path.read_text())
    given["digits"]["trainer"]["max_epochs"] = 5  # as `dvc exp run -S digits.trainer...`
    given["digits"]["optimizer"]["lr"] = 0.01
    path.write_text(yaml.safe_dump(given))
    assert overrides("digits", path) == ["optimizer.lr=0.01", "trainer.max_epochs=5"]
    assert overrides("intent", path) == []  # the other experiment is untouched


def test_a_generated_params_yaml_never_undoes_a_later_config_edit(tmp_path):
    path = write_params_file(["intent"], tmp_path / "params.yaml")
    # conf/ said lr 0.5 when the file was written and has changed back since: the
    # section still matches its digest, so conf/ decides.
    given = yaml.safe_load(path.read_text())
    given["intent"]["optimizer"]["lr"] = 0.5
    given["_generated"]["intent"] = digest(given["intent"])
    path.write_text(yaml.safe_dump(given))
    assert overrides("intent", path) == []
    given["_generated"]["intent"] = "something else"  # then set by DVC: applied
    path.write_text(yaml.safe_dump(given))
    assert overrides("intent", path) == ["optimizer.lr=0.5"]


def test_a_stale_dvc_yaml_is_not_recorded_for_dvc(tmp_path, monkeypatch, caplog):
    for name in ("conf", "workflow", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp"))
    monkeypatch.chdir(tmp_path)
    write_dvc_yaml()
    assert built_dvc_stages(["intent", "digits"]) == []  # current, but nothing built yet
    assert "dvc.yaml is not the stage graph" not in caplog.text
    assert built_dvc_stages(["intent"]) == []  # dvc.yaml also lists digits
    assert "dvc.yaml is not the stage graph" in caplog.text


def test_a_stage_whose_inputs_are_missing_is_not_recorded_for_dvc(tmp_path, monkeypatch):
    """A clone that pulled only the data stages holds the evaluation git keeps, newer
    than dvc.lock, but not the model it was computed from: no run made it, and DVC
    could not record it."""
    for name in ("conf", "workflow", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp"))
    monkeypatch.chdir(tmp_path)
    write_dvc_yaml()
    evaluate = dvc_stages(["intent", "digits"])["evaluate-intent"]

    def make(paths) -> None:
        for path in map(Path, paths):
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix:
                path.write_text("{}\n")
            else:  # a folder: a model package
                path.mkdir()

    make([*evaluate.files, *evaluate.persist])
    assert built_dvc_stages(["intent", "digits"]) == []
    make(evaluate.inputs)  # what it reads: then it was built here
    assert built_dvc_stages(["intent", "digits"]) == [CONFIG_STAGE, "evaluate-intent"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A copy of the project (both experiments) as after a complete run, without one: each
    output a placeholder written after what its stage reads, all recorded in dvc.lock."""
    root = tmp_path_factory.mktemp("built")
    for name in ("conf", "workflow"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "Snakefile", root / "Snakefile")
    shutil.copytree(ROOT / "data" / "raw" / "clinc150", root / "data" / "raw" / "clinc150")
    run(root, f"{BIN}/dvc", "init", "--no-scm", "-q")
    run(root, f"{BIN}/dlforge", "workflow", "dvc")  # the config sections too
    written = time.time() - 1000
    for path in root.rglob("*"):
        os.utime(path, (written, written))
    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        written += 10  # each stage after the one before it
        for out in (next(iter(o)) if isinstance(o, dict) else o for kind in
                    ("outs", "metrics", "plots") for o in stage.get(kind, [])):
            path = root / out
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                if "." in path.name:
                    path.write_text("{}\n" if path.suffix == ".json" else "x\n")
                else:  # a folder: a model package, the dataset store, the snapshots
                    path.mkdir()
                    (path / "placeholder").write_text("x\n")
                    os.utime(path / "placeholder", (written, written))
            os.utime(path, (written, written))
    run(root, f"{BIN}/dvc", "commit", "--force", "--quiet")
    return root


def edit(project: Path, text: str) -> None:
    """Append ``text`` to the intent experiment (conf/experiment/intent.yaml)."""
    experiment = project / "conf" / "experiment" / "intent.yaml"
    experiment.write_text(experiment.read_text() + text)


# What an edit of the intent experiment makes stale, by what each stage reads of its
# config: the stage that reads the changed value and, for Snakemake, all that follows.
EDITS = {
    "nothing": ("", set()),
    "training": ("trainer:\n  max_epochs: 3\n", {"sweep", "train", "evaluate", "register"}),
    "split": ("split:\n  salt: other\n", {"snapshot", "sweep", "train", "evaluate",
                                          "register"}),
    "tracking": ("tracking:\n  tracking_uri: sqlite:///elsewhere.db\n", set()),
}


@pytest.mark.parametrize("change", EDITS)
def test_snakemake_plans_the_stages_that_read_what_an_edit_changed(built, tmp_path, change):
    project = copy_of(built, tmp_path / "project")
    text, stale = EDITS[change]
    edit(project, text)
    plan = run(project, f"{BIN}/snakemake", "--dry-run", "--cores", "1")
    planned = {line.removeprefix("rule ").rstrip(":") for line in plan.splitlines()
               if line.startswith("rule ")}
    assert planned - {"all"} == stale, plan
    assert "exp=digits" not in plan  # the other experiment reads nothing that changed


@pytest.mark.parametrize("change", EDITS)
def test_dvc_finds_stale_the_stages_that_read_what_an_edit_changed(built, tmp_path, change):
    project = copy_of(built, tmp_path / "project")
    text, stale = EDITS[change]
    edit(project, text)
    run(project, f"{BIN}/dvc", "repro", "--single-item", "config")  # DVC's first stage
    status = run(project, f"{BIN}/dvc", "status")
    changed = {line.rstrip(":").rsplit("-intent", 1)[0] for line in status.splitlines()
               if line.endswith("-intent:")}
    # DVC lists the stages whose own inputs changed; the rest follow when those run.
    first = {"sweep", "train"} if stale == {"sweep", "train", "evaluate", "register"} else (
        {"snapshot"} if "snapshot" in stale else set())
    assert changed == first, status
    assert "digits" not in status
    if not stale:
        assert "Data and pipelines are up to date" in status


def test_params_yaml_follows_conf_and_keeps_the_values_set_in_it(built, tmp_path,
                                                                 monkeypatch):
    project = copy_of(built, tmp_path / "project")
    monkeypatch.chdir(project)
    edit(project, "optimizer:\n  lr: 0.02\n")
    given = yaml.safe_load(Path("params.yaml").read_text())
    given["digits"]["trainer"]["max_epochs"] = 2  # as `dvc exp run -S digits.trainer...`
    Path("params.yaml").write_text(yaml.safe_dump(given))
    assert refresh_params_file(["intent", "digits"]) is True
    refreshed = yaml.safe_load(Path("params.yaml").read_text())
    assert refreshed["intent"]["optimizer"]["lr"] == 0.02  # `dvc params diff` shows it
    assert overrides("intent") == []  # as dlforge wrote it: conf/ decides
    assert refreshed["digits"]["trainer"]["max_epochs"] == 2
    assert overrides("digits") == ["trainer.max_epochs=2"]
    before = Path("params.yaml").stat().st_mtime_ns
    assert refresh_params_file(["intent", "digits"]) is False  # current: not written again
    assert Path("params.yaml").stat().st_mtime_ns == before


def test_a_section_holds_no_connection_and_names_a_value_that_does_not_resolve(monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.delenv("DLFORGE_UNSET_LR", raising=False)
    cfg = OmegaConf.create({"experiment_name": "intent", "seed": 1,
                            "hpo": {"n_trials": 2, "storage": "postgresql://u:pw@db/optuna"},
                            "optimizer": {"lr": "${oc.env:DLFORGE_UNSET_LR,0.1}"}})
    text = section_text(section_values(cfg, "sweep"))
    assert '"hpo.n_trials": 2' in text and '"optimizer.lr": "0.1"' in text
    assert "storage" not in text and "pw" not in text  # where to connect: no parameter
    cfg.optimizer.lr = "${oc.env:DLFORGE_UNSET_LR}"
    with pytest.raises(DlforgeError, match=r"experiment intent: `optimizer`, which `dlforge "
                                           r"sweep` reads, does not resolve .*Fix: "):
        section_values(cfg, "sweep")


def test_dvcs_first_stage_rewrites_a_stale_dvc_yaml_and_asks_for_another_run(built, tmp_path):
    project = copy_of(built, tmp_path / "project")
    without_sweep(project)  # another graph: train no longer reads best.yaml
    result = subprocess.run([f"{BIN}/dvc", "repro", "--single-item", CONFIG_STAGE],
                            cwd=project, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert result.returncode != 0
    assert "dvc.yaml was not the stage graph" in result.stderr + result.stdout
    assert "Fix: run `dvc repro` again" in result.stderr + result.stdout
    written = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert "sweep-intent" not in written
    assert "outputs/intent/sweep/best.yaml" not in written["train-intent"]["deps"]


def snakemake_plan(cwd: Path) -> dict[str, dict]:
    """Every job of a forced dry run: ``{"rule-exp": {"cmd", "redirect", "log", "deps",
    "outs"}}``, the command without its redirection to the log."""
    out = run(cwd, f"{BIN}/snakemake", "--dry-run", "--forceall", "--printshellcmds",
              "--cores", "1")
    jobs = {}
    for block in out.split("\nrule ")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:]
                      if ": " in line and not line.startswith("Shell command"))
        if "wildcards" not in fields:
            continue  # rule all: targets only
        command, redirect = block.split("Shell command: ", 1)[1].splitlines()[0].split(" > ")
        name = f"{block.split(':', 1)[0]}-{fields['wildcards'].removeprefix('exp=')}"
        jobs[name] = {"cmd": command, "redirect": redirect, "log": fields["log"],
                      "deps": set(fields["input"].split(", ")),
                      "outs": set(fields["output"].split(", "))}
    return jobs


def test_snakemake_and_dvc_agree_on_stages_commands_inputs_and_outputs():
    planned = snakemake_plan(ROOT)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    # DVC's first stage writes the config sections, which Snakemake writes when it
    # reads the rules: every other stage reads its own.
    config = stages.pop(CONFIG_STAGE)
    assert [next(iter(o)) for o in config["outs"]] == [
        f"outputs/{exp}/config/{stage}.json" for exp in ("intent", "digits")
        for stage in ("ingest", "snapshot", "sweep", "train", "evaluate", "register")
        if (exp, stage) != ("digits", "sweep")]
    assert set(planned) == set(stages)
    for name, stage in stages.items():
        declared = [next(iter(o)) if isinstance(o, dict) else o for kind in
                    ("outs", "metrics", "plots") for o in stage.get(kind, [])]
        persistent = {next(iter(o)) for o in stage["outs"] if isinstance(o, dict)
                      and next(iter(o.values())) == {"persist": True}}  # DVC-cached stores
        assert planned[name]["cmd"] == stage["cmd"], name
        assert planned[name]["redirect"] == f"{planned[name]['log']} 2>&1", name
        assert planned[name]["deps"] == set(stage["deps"]), name
        stage_name, exp = name.split("-", 1)
        assert f"outputs/{exp}/config/{stage_name}.json" in stage["deps"], name
        assert not any(dep.startswith("conf/") for dep in stage["deps"]), name
        if name.startswith(("train-", "sweep-")):  # each depends on its own section only
            assert stage["params"] == [name.split("-", 1)[1]], name
        assert planned[name]["outs"] == set(declared) - persistent, name


def test_each_stage_job_logs_to_its_own_file_not_to_hydras_job_log():
    planned = snakemake_plan(ROOT)
    logs = [job["log"] for job in planned.values()]
    assert len(set(logs)) == len(logs)
    for name, job in planned.items():
        stage, exp = name.split("-", 1)
        hydra = experiment_config(exp, stage).hydra
        job_log = Path(hydra.run.dir) / f"{hydra.job.name}.log"  # conf/hydra/job_logging
        assert os.path.normpath(job_log) != job["log"], name


DRIFTED = "zorblat quuxify the frobnicated glimmerwocks " * 4  # long, out of vocabulary


DVC = f"{BIN}/dvc"
UP_TO_DATE = "Data and pipelines are up to date"


@pytest.mark.slow
def test_a_snakemake_run_registers_a_champion_and_leaves_nothing_to_do(pipeline, tmp_path):
    project = copy_of(pipeline, tmp_path / "project")
    # The sweep is off: Snakemake rewrote dvc.yaml as it started, and recorded what ran
    # in dvc.lock: DVC agrees that nothing is to be done.
    assert "sweep-intent" not in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert UP_TO_DATE in run(project, DVC, "status")
    summary = json.loads((project / "outputs" / "intent" / "snapshot.json").read_text())
    assert summary["commits"] == [1, 2] and summary["counts"]["input_rows"] == 535
    assert sum(summary["label_counts"].values()) == sum(
        summary["counts"][split] for split in ("train", "val", "test"))
    assert (project / summary["path"] / "manifest.json").is_file()
    assert json.loads((project / "outputs/intent/train/metrics.json").read_text())["epochs"] == 1
    assert (project / "outputs/intent/train/model/weights.safetensors").is_file()
    assert not (project / "outputs/intent/sweep").exists()
    registered = json.loads((project / "outputs/intent/register.json").read_text())
    assert registered["champion"] == registered["version"] == "1"  # the run ends with a champion
    assert "Nothing to be done" in snakemake(project, "--dry-run")
    # A deleted output is made again by its stage, and what reads it follows; nothing
    # before it runs, in either front end.
    (project / "outputs/intent/eval/confusion.png").unlink()
    assert planned_rules(snakemake(project, "--dry-run")) == {"evaluate", "register"}
    rerun = dvc_ran(run(project, DVC, "repro", "--dry"))
    assert "evaluate-intent" in rerun and not rerun & {"ingest-intent", "snapshot-intent",
                                                       "train-intent"}, rerun


@pytest.mark.slow
def test_a_commit_added_by_hand_re_runs_ingest_and_snapshot_once(pipeline, tmp_path):
    from dlforge.data import Store

    project = copy_of(pipeline, tmp_path / "project")
    extra = project / "extra.csv"
    extra.write_text("please add this example,new_intent\n")
    # What `dlforge data commit clinc150 --source extra.csv` does in the project.
    Store(project / "data" / "store").commit("clinc150", str(extra))
    assert planned_rules(snakemake(project, "--dry-run")) == {
        "ingest", "snapshot", "train", "evaluate", "register"}
    # The data stages for real (the stages after them are planned above).
    assert planned_rules(snakemake(project, "--until", "snapshot")) == {"ingest", "snapshot"}
    assert json.loads((project / "outputs" / "intent" / "snapshot.json").read_text())[
        "commits"] == [1, 2, 3]
    # Once: what is left to do is what reads the new snapshot.
    assert planned_rules(snakemake(project, "--dry-run")) == {"train", "evaluate", "register"}


def serve_drifted_traffic(project: Path) -> None:
    """Serve the project's champion as `dlforge serve` in its folder would (in this
    process: tests/serve has the server's own process) and send it traffic unlike its
    training data."""
    with pytest.MonkeyPatch.context() as here:
        here.chdir(project)
        settings = server_settings(compose("serve", ["accelerator=cpu", "api_key=null"]))
        with running(settings) as client:
            for _ in range(8):
                answer = client.post("/predict", json={"inputs": [DRIFTED] * 10})
                assert answer.status_code == 200, answer.text


@pytest.mark.slow
def test_the_monitoring_loop_and_a_config_edit_retrain_and_both_front_ends_follow(
        pipeline, tmp_path):
    project = copy_of(pipeline, tmp_path / "project")
    # The loop: serve the champion, send traffic unlike the training data, monitor
    # finds drift and raises a retrain request: the workflow retrains, nothing before.
    serve_drifted_traffic(project)
    run(project, f"{BIN}/dlforge", "monitor", "experiment=intent")
    report = json.loads((project / "outputs/intent/monitor/report.json").read_text())
    assert report["decision"]["drift"] is True, report["decision"]
    assert json.loads((project / "outputs/intent/retrain.json").read_text())["request"] == 1
    assert planned_rules(snakemake(project, "--dry-run")) == {"train", "evaluate", "register"}
    # The project's copy of a packaged config replaces it: training alone re-runs
    # (once, for the request too).
    optimizer = project / "conf/optimizer/adamw.yaml"
    optimizer.parent.mkdir()
    packaged = (PACKAGED_CONF / "optimizer/adamw.yaml").read_text()
    optimizer.write_text(packaged.replace("lr: 0.003", "lr: 0.004"))
    assert planned_rules(snakemake(project)) == {"train", "evaluate", "register"}
    frozen = yaml.safe_load((project / "outputs/intent/train/config.yaml").read_text())
    base = yaml.safe_load((pipeline / "outputs/intent/train/config.yaml").read_text())
    assert frozen["optimizer"]["lr"] == 0.004
    assert frozen["seed"] == base["seed"] + 1  # seeded by the request
    after = json.loads((project / "outputs/intent/register.json").read_text())
    assert after["version"] == "2"  # a new version
    # The run brought params.yaml up to date and recorded what it built in dvc.lock: DVC
    # shows the new value and has nothing to do, nor has either front end after
    # `dlforge workflow dvc`.
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["intent"]["optimizer"]["lr"] == 0.004
    diff = run(project, DVC, "params", "diff")
    assert "intent.optimizer.lr" in diff and "0.004" in diff, diff
    assert UP_TO_DATE in run(project, DVC, "status")
    run(project, f"{BIN}/dlforge", "workflow", "dvc")
    assert UP_TO_DATE in run(project, DVC, "status")
    assert "Nothing to be done" in snakemake(project, "--dry-run")
    # The results are in git: the review and DVC's diffs show both sides.
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "a higher learning rate")
    review = subprocess.run([f"{BIN}/dlforge", "review", "--base", "HEAD~1", "--format",
                             "json"], cwd=project, capture_output=True, text=True, check=True)
    intent = json.loads(review.stdout)["experiments"]["intent"]
    assert {"key": "optimizer.lr", "old": 0.003, "new": 0.004} in intent["config"]
    assert {"key": "seed", "old": base["seed"], "new": base["seed"] + 1} in intent["config"]
    # The sweep's sampler follows the seed (hpo.sampler.seed: ${seed}); nothing else moved.
    assert {c["key"] for c in intent["config"]} == {"optimizer.lr", "seed", "hpo.sampler.seed"}
    accuracy = next(m for m in intent["metrics"] if m["metric"] == "accuracy")
    assert accuracy["paired"] is True and len(accuracy["interval"]) == 2
    assert intent["gate"]["version"] == "2" and intent["gate"]["reason"]
    metrics = run(project, DVC, "metrics", "diff", "HEAD~1", "--all")
    assert "outputs/intent/eval/metrics.json" in metrics and "accuracy" in metrics
    plots = run(project, DVC, "plots", "diff", "HEAD~1", "--json")
    assert "outputs/intent/train/history.csv" in plots and "confusion.csv" in plots


@pytest.mark.slow
def test_dvc_runs_the_stages_itself_then_does_nothing(pipeline, tmp_path):
    """On the project Snakemake built, its sweep turned on: a parameter of the
    experiment's section set with DVC re-runs the sweep and training, run by DVC
    itself, and not the data stages; then `dvc repro` has nothing to do."""
    project = copy_of(pipeline, tmp_path / "project")
    set_sweep(project, True)
    run(project, f"{BIN}/dlforge", "workflow", "dvc")  # dvc.yaml gains sweep-intent
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "with a sweep")
    tried = run(project, DVC, "exp", "run", "-S", "intent.trainer.max_epochs=2")
    ran = dvc_ran(tried)
    assert {"sweep-intent", "train-intent", "evaluate-intent", "register-intent"} <= ran, tried
    assert not ran & {"ingest-intent", "snapshot-intent"}, tried
    best = (project / "outputs/intent/sweep/best.yaml").read_text()
    frozen = (project / "outputs/intent/train/config.yaml").read_text()
    assert f"lr: {best.split('optimizer.lr=')[1].split()[0]}" in frozen  # trained with it
    assert "max_epochs: 2" in frozen
    assert json.loads((project / "outputs/intent/register.json").read_text())["version"] == "2"
    shown = json.loads(subprocess.run([DVC, "exp", "show", "--json"], cwd=project,
                                      capture_output=True, text=True, check=True).stdout)
    assert "'max_epochs': 2" in str(shown) and "'intent'" in str(shown)
    assert "Running stage" not in run(project, DVC, "repro")


@pytest.mark.slow
def test_snakemake_dry_run_plans_the_dvc_stages(quick_copy):
    plan = snakemake(quick_copy, "--dry-run", "--quiet", "rules")
    stages = {name.split("-")[0] for name in dvc_yaml(["intent"])["stages"]
              if name != CONFIG_STAGE}  # DVC's first stage: Snakemake needs no rule for it
    assert all(stage in plan for stage in stages)


def test_a_value_set_for_one_experiment_changes_only_its_stages_for_dvc(built, tmp_path):
    """`dvc exp run -S digits...`'s edit of params.yaml leaves intent's stages unchanged,
    before and after DVC's first stage writes the config sections."""
    project = copy_of(built, tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["digits"]["trainer"]["max_epochs"] = 2  # what `dvc exp run -S` writes
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    changed = run(project, f"{BIN}/dvc", "status")
    assert "train-digits" in changed and "modified:" in changed
    assert "intent" not in changed, changed
    run(project, f"{BIN}/dvc", "repro", "--single-item", CONFIG_STAGE)
    changed = run(project, f"{BIN}/dvc", "status")
    assert "outputs/digits/config/train.json" in changed and "intent" not in changed, changed
