"""`dlforge review`: config, data, metric (with bootstrap intervals) and gate deltas from git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dlforge.core.errors import DlforgeError
from dlforge.registry import scores
from dlforge.registry.scores import bootstrap_differences, single_label
from dlforge.stages.review import bootstrap_interval, review, to_markdown

LABELS = ["balance", "transfer", "weather", "music"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def write_results(repo: Path, exp: str, lr: float, right: int, version: str, champion: str,
                  snapshot: str = "s1", commits=(1, 2)) -> None:
    """The files the stages write for ``exp``: ``right`` of 200 test examples correct."""
    out = repo / "outputs" / exp
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(exist_ok=True)
    config = {"paths": {"root": "."}, "optimizer": {"lr": lr}, "trainer": {"max_epochs": 5}}
    (out / "train/config.yaml").write_text(yaml.safe_dump(config))
    actual = [LABELS[i % 4] for i in range(200)]
    predicted = [a if i < right else LABELS[(i + 1) % 4] for i, a in enumerate(actual)]
    rows = "".join(f"{a},{p}\n" for a, p in zip(actual, predicted, strict=True))
    (out / "eval/confusion.csv").write_text("actual,predicted\n" + rows)
    (out / "eval/metrics.json").write_text(json.dumps(
        {"accuracy": right / 200, "examples": 200, "snapshot": snapshot}))
    f1 = {label: 1.0 for label in LABELS}
    if right < 150:
        f1["music"] = 0.5
    (out / "eval/per_class.csv").write_text("label,precision,recall,f1,support\n" + "".join(
        f"{label},1,1,{f1[label]},50\n" for label in LABELS))
    (out / "snapshot.json").write_text(json.dumps(
        {"version": snapshot, "commits": list(commits), "counts": {"train": 800, "test": 200},
         "label_counts": {"balance": 250, "transfer": 250}}))
    promote = version == champion
    (out / "register.json").write_text(json.dumps(
        {"version": version, "champion": champion, "promote": promote,
         "reason": f"accuracy={right / 200} {'beats' if promote else 'does not beat'} the "
                   "champion"}))


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A project with a committed baseline (intent only), then a change on disk: a higher
    learning rate that helps intent, and a new experiment, digits."""
    repo = tmp_path / "proj"
    (repo / "workflow").mkdir(parents=True)
    (repo / "workflow/config.yaml").write_text("experiments: [intent]\n")
    write_results(repo, "intent", lr=0.003, right=140, version="1", champion="1")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "base")
    (repo / "workflow/config.yaml").write_text("experiments: [intent, digits]\n")
    write_results(repo, "intent", lr=0.01, right=180, version="2", champion="2")
    write_results(repo, "digits", lr=0.003, right=190, version="1", champion="1")
    monkeypatch.chdir(repo)
    return repo


def test_review_shows_the_config_metric_and_gate_deltas_of_a_change(repo):
    report = review("HEAD")
    intent = report["experiments"]["intent"]
    assert intent["problems"] == []
    assert intent["config"] == [{"key": "optimizer.lr", "old": 0.003, "new": 0.01}]
    accuracy = next(m for m in intent["metrics"] if m["metric"] == "accuracy")
    assert accuracy["delta"] == pytest.approx(0.2) and accuracy["paired"] is True
    low, high = accuracy["interval"]
    assert 0 < low < 0.2 < high  # a clear gain: the interval excludes no change
    assert intent["gate"] == {"version": "2", "promoted": True, "champion": ["1", "2"],
                              "reason": "accuracy=0.9 beats the champion"}
    assert intent["per_class"] == []  # music's F1 rose
    # digits exists on the head side only: said so, and intent is still reviewed.
    digits = report["experiments"]["digits"]
    assert any("HEAD has no results for digits" in p for p in digits["problems"])
    text = to_markdown(report)
    for words in ("### intent", "| `optimizer.lr` | 0.003 | 0.01 |", "| accuracy | 0.7 | 0.9 |",
                  "paired", "**Gate**: v2 promoted", "champion v1 → v2", "dvc plots diff HEAD",
                  "HEAD has no results for digits"):
        assert words in text, (words, text)


def test_a_regression_is_listed_per_class_and_data_changes_are_shown(repo):
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "good")
    write_results(repo, "intent", lr=0.05, right=120, version="3", champion="2",
                  snapshot="s2", commits=(1, 2, 3))
    intent = review("HEAD")["experiments"]["intent"]
    assert intent["per_class"] == [{"label": "music", "old_f1": 1.0, "new_f1": 0.5,
                                    "support": 50}]
    assert intent["data"]["commits_added"] == [3] and intent["data"]["new_version"] == "s2"
    accuracy = next(m for m in intent["metrics"] if m["metric"] == "accuracy")
    assert accuracy["paired"] is False and accuracy["interval"][1] < 0  # other test split
    assert intent["gate"]["promoted"] is False and intent["gate"]["champion"] == ["2", "2"]
    assert "champion stays v2" in to_markdown(review("HEAD"))


def test_the_bootstrap_interval_of_no_change_is_zero_when_paired():
    actual = [LABELS[i % 4] for i in range(100)]
    predicted = [a if i % 3 else "x" for i, a in enumerate(actual)]
    side = (actual, predicted)
    assert bootstrap_interval("accuracy", side, side, paired=True) == [0.0, 0.0]
    assert bootstrap_interval("macro_f1", side, side, paired=True) == [0.0, 0.0]
    low, high = bootstrap_interval("accuracy", side, side, paired=False)
    assert low < 0 < high  # resampled apart, the same model still varies


def test_review_names_a_bad_revision_and_a_folder_outside_git(repo, tmp_path, monkeypatch):
    with pytest.raises(DlforgeError, match="--base nope: git knows no such revision"):
        review("nope")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(DlforgeError, match="is not inside a git repository"):
        review("HEAD")


def test_the_command_prints_json_and_markdown(repo):
    command = [sys.executable, "-m", "dlforge", "review", "--base", "HEAD"]
    report = json.loads(subprocess.run([*command, "--format", "json"], cwd=repo, check=True,
                                       capture_output=True, text=True).stdout)
    assert set(report["experiments"]) == {"intent", "digits"}
    markdown = subprocess.run([*command, "--experiment", "intent"], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    verdict, _, title = markdown.splitlines()[:3]
    assert verdict == "**Verdict: pass**" and title.startswith("## dlforge review: `HEAD`")
    assert "### digits" not in markdown
    failed = subprocess.run([*command[:-1], "nope"], cwd=repo, capture_output=True, text=True)
    assert failed.returncode != 0 and "no such revision" in failed.stderr


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message)


def both_formats(report: dict) -> str:
    return json.dumps(report) + to_markdown(report)


@pytest.mark.parametrize("link", ["outputs/intent/train/config.yaml", "outputs/intent/train"])
def test_a_symbolic_link_in_the_results_is_not_followed(repo, tmp_path, link):
    """A change that commits a link (to the file, or to a folder above it) where a result
    belongs: neither the revision nor the working tree side reads through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_text("optimizer: {lr: 0.5}\ndb_password: hunter2-secret\n")
    target = repo / link
    if target.is_dir():
        for file in target.iterdir():
            file.unlink()
        target.rmdir()
        target.symlink_to(elsewhere)
    else:
        target.unlink()
        target.symlink_to(elsewhere / "config.yaml")
    commit(repo, "link")
    report = review("HEAD")
    text = both_formats(report)
    assert "hunter2" not in text and "0.5" not in text
    problems = report["experiments"]["intent"]["problems"]
    for side in ("HEAD", "working tree"):
        assert any(p.startswith(side) and f"{link} is a symbolic link" in p for p in problems)
    assert report["experiments"]["intent"]["config"] == []  # absent on both sides
    assert report["experiments"]["intent"]["metrics"], problems  # the rest is still reviewed


def test_an_interpolation_in_a_config_is_shown_as_written_never_resolved(repo, monkeypatch):
    monkeypatch.setenv("SECRET_VAR", "env-secret-value")
    config = repo / "outputs/intent/train/config.yaml"
    config.write_text(config.read_text() + "tracking:\n  tracking_uri: ${oc.env:SECRET_VAR}\n")
    report = review("HEAD")
    assert {"key": "tracking.tracking_uri", "old": None, "new": "${oc.env:SECRET_VAR}"} in \
        report["experiments"]["intent"]["config"]
    text = both_formats(report)
    assert "${oc.env:SECRET_VAR}" in text and "env-secret-value" not in text


def test_a_password_in_a_config_value_is_never_shown(repo):
    config = repo / "outputs/intent/train/config.yaml"
    base = yaml.safe_load(config.read_text())
    base["tracking"] = {"tracking_uri": "postgresql://u:old-pw@db.example.org/mlflow",
                        "mirrors": ["postgresql://u:list-pw@db2.example.org/mlflow"]}
    config.write_text(yaml.safe_dump(base))
    commit(repo, "postgres")
    base["tracking"] = {"tracking_uri": "postgresql://u:new-pw@db.example.org/mlflow"}
    config.write_text(yaml.safe_dump(base))
    report = review("HEAD")
    changes = {c["key"]: c for c in report["experiments"]["intent"]["config"]}
    assert changes["tracking.tracking_uri"]["old"] == "postgresql://u:***@db.example.org/mlflow"
    assert changes["tracking.tracking_uri"]["new"] == "postgresql://u:***@db.example.org/mlflow"
    text = both_formats(report)
    assert "old-pw" not in text and "new-pw" not in text and "list-pw" not in text
    assert "`postgresql://u:***@db.example.org/mlflow`" in text


def test_a_base_that_reads_as_an_option_is_refused(repo, tmp_path):
    written = tmp_path / "written"
    for base in (f"--output={written}", "--git-dir", "-h"):
        with pytest.raises(DlforgeError, match="no such revision"):
            review(base)
    command = [sys.executable, "-m", "dlforge", "review", f"--base=--output={written}"]
    failed = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    assert failed.returncode != 0 and "no such revision" in failed.stderr
    assert not written.exists()


def test_without_rows_a_metric_has_no_interval(repo):
    """A multi-label evaluation writes no (actual, predicted) rows: no interval, no NaN."""
    (repo / "outputs/intent/eval/confusion.csv").write_text("actual,predicted\n")
    intent = review("HEAD")["experiments"]["intent"]
    accuracy = next(m for m in intent["metrics"] if m["metric"] == "accuracy")
    assert intent["problems"] == [] and accuracy["interval"] is None
    assert accuracy["delta"] == pytest.approx(0.2)


def index_bootstrap(metric, old, new, paired, classes, samples, seed):
    """The textbook bootstrap: draw n example indices with replacement, score both sides."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        picks_old = rng.integers(0, len(old[0]), len(old[0]))
        picks_new = picks_old if paired else rng.integers(0, len(new[0]), len(new[0]))
        score = [single_label(side[0][p], side[1][p], list(range(classes)))[metric]
                 for side, p in ((new, picks_new), (old, picks_old))]
        diffs.append(score[0] - score[1])
    return np.percentile(diffs, [2.5, 97.5])


def two_models(n: int, classes: int, seed: int):
    """Test labels and two models' predictions: old right 70% of the time, new 80%."""
    rng = np.random.default_rng(seed)
    actual = rng.integers(0, classes, n)
    wrong = rng.integers(0, classes, (2, n))
    draws = rng.random(n)
    return ((actual, np.where(draws < 0.7, actual, wrong[0])),
            (actual, np.where(draws < 0.8, actual, wrong[1])))


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
@pytest.mark.parametrize("paired", [True, False])
def test_the_bootstrap_by_outcome_counts_matches_the_index_bootstrap(metric, paired):
    old, new = two_models(300, 5, seed=1)
    reference = index_bootstrap(metric, old, new, paired, 5, samples=2000, seed=2)
    found = bootstrap_differences([metric], old, new, paired, 5, samples=2000, seed=3)[metric]
    assert found == pytest.approx(reference, abs=0.01)


def test_the_bootstrap_in_chunks_draws_the_same_resamples(monkeypatch):
    old, new = two_models(500, 7, seed=4)
    whole = bootstrap_differences(["accuracy", "macro_f1"], old, new, True, 7, seed=5)
    monkeypatch.setattr(scores, "CHUNK_CELLS", 100)  # a few resamples per chunk
    assert bootstrap_differences(["accuracy", "macro_f1"], old, new, True, 7, seed=5) == whole


def test_the_interval_covers_the_true_change_about_95_percent_of_the_time():
    """Test sets drawn from a known population where the new model is right 10 points
    more often: the paired 95% interval of the accuracy change covers 0.10 in about
    95% of them."""
    covered = 0
    for seed in range(200):
        old, new = two_models(400, 4, seed=seed)  # wrong guesses are sometimes right:
        truth = (0.8 - 0.7) * (1 - 1 / 4)  # P(right) = p + (1 - p) / 4
        low, high = bootstrap_differences(["accuracy"], old, new, True, 4, samples=1000,
                                          seed=seed)["accuracy"]
        covered += low <= truth <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_broken_result_file_is_named_without_quoting_a_secret(repo):
    (repo / "outputs/intent/train/config.yaml").write_text(
        "tracking:\n  tracking_uri: postgresql://u:yaml-pw@db.example.org/mlflow: [\n")
    (repo / "outputs/intent/eval/per_class.csv").write_text(
        "label,precision,recall,f1,support\nbalance,1,1,postgresql://u:csv-pw@h/db,50\n")
    problems = review("HEAD")["experiments"]["intent"]["problems"]
    assert any("is not what the stages write" in p and "line 2" in p for p in problems)
    (repo / "outputs/intent/train/config.yaml").write_text("optimizer: {lr: 0.01}\n")
    problems += review("HEAD")["experiments"]["intent"]["problems"]
    assert any("postgresql://u:***@h/db" in p for p in problems), problems
    assert not any("yaml-pw" in p or "csv-pw" in p for p in problems), problems


def test_the_review_shows_the_change_in_cost_beside_the_change_in_metrics(repo):
    """A batch-size change costs more CPU time: the review says how much, from the cost
    each training recorded in train/metrics.json."""
    def record_cost(cpu: float, rss: int, extra: dict | None = None) -> None:
        path = repo / "outputs/intent/train/metrics.json"
        path.write_text(json.dumps({"test/acc": 0.9, "cost": {
            "cpu_seconds": cpu, "wall_seconds": cpu / 2, "peak_rss_bytes": rss, **(extra or {})}}))

    record_cost(100.0, 2**30)
    commit(repo, "base with its cost")
    record_cost(150.0, 2**30 + 2**20, {"energy_joules": 900.0})

    report = review("HEAD")
    cost = {row["figure"]: row for row in report["experiments"]["intent"]["cost"]}
    assert cost["cpu_seconds"]["delta"] == 50.0 and cost["cpu_seconds"]["ratio"] == 1.5
    assert cost["energy_joules"]["old"] is None and cost["energy_joules"]["delta"] is None
    assert "gpu_seconds" not in cost  # recorded on neither side: not shown
    markdown = to_markdown(report)
    assert "| cpu_seconds | 100.0 s | 150.0 s | +50.0 s (×1.50) |" in markdown
    assert "| peak_rss_bytes | 1024.0 MiB | 1025.0 MiB | +1.0 MiB (×1.00) |" in markdown
    assert "| energy_joules | — | 900.0 J |  |" in markdown
