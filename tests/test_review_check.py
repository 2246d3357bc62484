"""`dlforge review --check`: stale results (by their run records) and regressions past the
declared tolerance fail it; a harmless change, a stale base and unrecorded results do not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlforge.cli import main
from dlforge.core.record import code_digest, make_record, text_digest
from dlforge.stages.sections import section, section_text
from tests.helpers import ROOT, commit, git
from tests.test_review import LABELS, write_results
from tests.test_review_light import NEVER_IMPORTED

STAGES = ("snapshot", "train", "evaluate", "register")
EXPERIMENT = Path("conf/experiment/intent.yaml")


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def write_json(path: Path, value: dict) -> str:
    return write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_sections() -> dict[str, str]:
    """The section files the workflow writes before it runs (also on a dry run); their
    digests by stage."""
    texts = {stage: write(Path(f"outputs/intent/config/{stage}.json"),
                          section_text(section("intent", stage))) for stage in STAGES}
    return {stage: text_digest(text) for stage, text in texts.items()}


def run_workflow(right: int, snapshot: str = "s1") -> None:
    """What a run of the workflow leaves for experiment intent, made synthetically: the
    section files, then each stage's result with its run record; ``right`` of 200 test
    examples are predicted correctly."""
    out, config, code = Path("outputs/intent"), write_sections(), code_digest()
    snap = write_json(out / "snapshot.json", {
        "version": snapshot, "commits": [1], "counts": {"train": 800, "test": 200},
        "record": make_record(config["snapshot"], None, {}, code)})
    lr = section("intent", "train")["optimizer.lr"]
    trained = write_json(out / "train/config.yaml", {  # the frozen config: a run of its own
        "optimizer": {"lr": lr}, "snapshot": snapshot, "run_id": f"run-{lr}-{right}"})
    write_json(out / "train/metrics.json", {"test/acc": right / 200, "record": (
        make_record(config["train"], snapshot, {"snapshot": text_digest(snap)}, code))})
    actual = [LABELS[i % 4] for i in range(200)]
    predicted = [a if i < right else LABELS[(i + 1) % 4] for i, a in enumerate(actual)]
    write(out / "eval/confusion.csv", "actual,predicted\n" + "".join(
        f"{a},{p}\n" for a, p in zip(actual, predicted, strict=True)))
    write(out / "eval/per_class.csv", "label,precision,recall,f1,support\n" + "".join(
        f"{label},1,1,{right / 200},50\n" for label in LABELS))
    evaluated = write_json(out / "eval/metrics.json", {
        "accuracy": right / 200, "examples": 200, "snapshot": snapshot,
        "record": make_record(config["evaluate"], snapshot, {"train": text_digest(trained)},
                              code)})
    write_json(out / "register.json", {"version": "1", "champion": "1", "promote": True,
                                       "reason": "no champion yet", "record": make_record(
        config["register"], snapshot, {"evaluate": text_digest(evaluated),
                                       "train": text_digest(trained)}, code)})


def set_lr(lr: float, extra: str = "") -> None:
    text = (ROOT / EXPERIMENT).read_text()
    EXPERIMENT.write_text(f"{text}\noptimizer:\n  lr: {lr}\n{extra}")


def make_project() -> None:
    """A project in the current folder (conf/ of the sample, its own code) whose first
    commit holds results made from it: 180 of 200 test examples right with a learning
    rate of 0.003."""
    shutil.copytree(ROOT / "conf", "conf")
    write(Path("workflow/config.yaml"), "experiments: [intent]\n")
    write(Path("src/toyproj/nets.py"), "WIDTH = 16\n")
    write(Path(".gitignore"), "/.snakemake/\n__pycache__/\n")
    git("init", "-q")
    set_lr(0.003)
    run_workflow(right=180)
    commit("lr 0.003")


@pytest.fixture(scope="module")
def made_project(tmp_path_factory) -> Path:
    """:func:`make_project`, made once for the module (composing each stage's section
    takes seconds): copy it, never change it."""
    root = tmp_path_factory.mktemp("review-check") / "proj"
    root.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        make_project()
    return root


@pytest.fixture
def project_copy(made_project, tmp_path, monkeypatch) -> Path:
    """A copy of :func:`made_project` (git history included) in a temporary folder, the
    current one."""
    root = Path(shutil.copytree(made_project, tmp_path / "proj", symlinks=True))
    monkeypatch.chdir(root)
    return root


def check(capsys, *args: str) -> tuple[int, str]:
    """``dlforge review --check ARGS``: its exit status and its Markdown."""
    capsys.readouterr()
    status = main(["review", "--check", *args])
    return status, capsys.readouterr().out


def test_a_committed_config_change_without_a_re_run_fails_and_names_the_key(project_copy, capsys):
    set_lr(0.01)
    commit("lr 0.01, not run")
    status, text = check(capsys, "--base", "HEAD~1")
    assert status == 1, text
    assert text.startswith("**Verdict: stale** — stale results in intent (train)"), text
    assert "`train` (outputs/intent/train/metrics.json): config `optimizer.lr` `0.003` → " \
        "`0.01`" in text
    assert "`snakemake` or `dvc repro`" in text
    # A dry run wrote the new section files: the section the results were made with is
    # then found in the base's files.
    write_sections()
    commit("dry run")
    status, text = check(capsys, "--base", "HEAD~2")
    assert status == 1 and "`optimizer.lr` `0.003` → `0.01`" in text, text


def test_a_collapsed_learning_rate_re_run_and_committed_is_a_regression(project_copy, capsys):
    set_lr(0.000001)
    run_workflow(right=120)
    commit("lr 1e-6")
    status, text = check(capsys, "--base", "HEAD~1")
    assert status == 1, text
    verdict = text.splitlines()[0]
    assert verdict.startswith("**Verdict: regression** — intent: accuracy 0.9 → 0.6 (-0.3000, "
                              "95% interval [-"), verdict
    assert "tolerance: a drop of 0.01" in verdict and "stale" not in verdict
    report = json.loads(capture(capsys, "review", "--base", "HEAD~1", "--format", "json"))
    (regression,) = report["experiments"]["intent"]["regressions"]
    assert regression["metric"] == "accuracy" and regression["interval"][1] < 0


def capture(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_a_harmless_change_re_run_and_committed_passes(project_copy, capsys):
    set_lr(0.003, extra="trainer:\n  log_every_n_steps: 10\n")
    run_workflow(right=179)  # one example fewer: within the noise
    commit("log more often")
    status, text = check(capsys, "--base", "HEAD~1")
    assert (status, text.splitlines()[0]) == (0, "**Verdict: pass**"), text


def test_a_stale_base_is_reported_and_passes(project_copy, capsys):
    set_lr(0.01)
    commit("lr 0.01, not run")  # the base of the change below: stale
    run_workflow(right=181)
    commit("run it")
    status, text = check(capsys, "--base", "HEAD~1")
    assert (status, text.splitlines()[0]) == (0, "**Verdict: pass**"), text
    assert "**Base**: its results are stale too: `train` (config)" in text


def test_changed_code_and_data_make_the_results_that_read_them_stale(project_copy, capsys):
    write(Path("src/toyproj/nets.py"), "WIDTH = 32\n")
    snapshot = json.loads(Path("outputs/intent/snapshot.json").read_text())
    write_json(Path("outputs/intent/snapshot.json"), {**snapshot, "version": "s2"})
    commit("wider, new data, not run")
    status, text = check(capsys, "--base", "HEAD~1")
    assert status == 1 and "stale results in intent (train)" in text, text
    line = next(x for x in text.splitlines() if x.startswith("- `train`"))
    assert "code under src/ changed: src/toyproj/nets.py" in line
    assert "outputs/intent/snapshot.json (snapshot's result) changed since" in line
    assert "the experiment's snapshot is s2, not s1" in line


def test_unrecorded_results_are_reported_not_stale(project_copy, capsys):
    shutil.rmtree("outputs")
    write_results(project_copy, "intent", lr=0.003, right=180, version="1", champion="1")
    commit("results written before records")
    status, text = check(capsys, "--base", "HEAD~1")
    assert status == 0, text
    assert "**Unrecorded**: `snapshot`, `evaluate`, `register` were written before" \
        in text and "re-run them to record it" in text


def test_an_experiment_without_results_is_stale(project_copy, capsys):
    write(Path("workflow/config.yaml"), "experiments: [intent, digits]\n")
    status, text = check(capsys, "--base", "HEAD")
    assert status == 1 and "stale results in digits (no results)" in text.splitlines()[0]


def test_a_class_past_the_projects_tolerance_is_a_regression(project_copy, capsys):
    write(Path("conf/review.yaml"), "review:\n  tolerance:\n    class_f1: {max_drop: 0.1}\n"
                                    "    accuracy: {max_drop: 0.5}\n")
    per_class = Path("outputs/intent/eval/per_class.csv")
    write(per_class, per_class.read_text().replace("music,1,1,0.9", "music,1,1,0.7"))
    status, text = check(capsys, "--base", "HEAD")
    assert status == 1, text
    assert text.startswith("**Verdict: regression** — intent: F1 of class `music` 0.9 → 0.7 "
                           "(-0.2000; tolerance: a drop of 0.1)"), text


@pytest.mark.parametrize(("written", "named"), [
    ("review:\n  tolerance:\n    acuracy: {max_drop: 0.01}\n", "review.tolerance.acuracy"),
    ("review:\n  tolerance:\n    accuracy: {max_drop: -1}\n", "review.tolerance.accuracy.max_drop"),
    ("review: [\n", "is not valid YAML"),
])
def test_a_bad_tolerance_or_revision_exits_2_naming_it(project_copy, capsys, written, named):
    write(Path("conf/review.yaml"), written)
    status = main(["review", "--check", "--base", "HEAD"])
    error = capsys.readouterr().err
    assert status == 2 and named in error and "Fix:" in error, error
    assert main(["review", "--base", "HEAD"]) == 1  # without --check: an error, as always


def test_a_bad_revision_exits_2_under_check(project_copy, capsys):
    assert main(["review", "--check", "--base", "nope"]) == 2
    assert "git knows no such revision" in capsys.readouterr().err


def test_the_check_imports_no_deep_learning_library(project_copy):
    set_lr(0.01)
    code = ("import json, sys; from dlforge.cli import main; status = main(['review', "
            "'--check', '--base', 'HEAD']); print(json.dumps([status, sorted({m.split('.')[0] "
            "for m in sys.modules})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    status, imported = json.loads(out.strip().splitlines()[-1])
    assert status == 1 and "**Verdict: stale**" in out
    assert not set(imported) & set(NEVER_IMPORTED)
