"""`dlforge review`: config, data, metric (with bootstrap intervals) and gate deltas from git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlforge.core.errors import DlforgeError
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
    assert markdown.startswith("## dlforge review: `HEAD`") and "### digits" not in markdown
    failed = subprocess.run([*command[:-1], "nope"], cwd=repo, capture_output=True, text=True)
    assert failed.returncode != 0 and "no such revision" in failed.stderr
