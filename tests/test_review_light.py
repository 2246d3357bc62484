"""`dlforge review` installed light (dlforge without its dependencies, plus its `review`
extra), and the pull-request workflow `dlforge init` writes, which installs it so."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from dlforge import __version__
from tests.helpers import BIN, ROOT, commit, dlforge_wheel, git
from tests.initialised import initialised

HEAVY = ("torch", "lightning", "mlflow")  # what the review must run without
# ...and the other heavy dependencies of dlforge, which the review never imports either
NEVER_IMPORTED = (*HEAVY, "pytorch_lightning", "pandas", "pyarrow", "pandera", "sklearn",
                  "matplotlib", "optuna", "snakemake", "dvc", "litserve", "uvicorn")
MARKER = "<!-- dlforge-review -->"


def review_extra() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]["optional-dependencies"]["review"]


def finished(*command, cwd: Path | None = None, env: dict | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """The finished process of ``command``, for a test that reads its streams apart or
    its exit status (:func:`tests.helpers.run` gives the output of one that must pass);
    with ``check``, the test fails if the command does."""
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True,
                            text=True, env=env, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def commit_results(project: Path, lr: float, accuracy: float, message: str) -> None:
    """The results a reviewer reads for the experiment ``intent``, committed."""
    out = project / "outputs" / "intent"
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(exist_ok=True)
    (out / "train/config.yaml").write_text(yaml.safe_dump({"optimizer": {"lr": lr}}))
    (out / "eval/metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    right = int(accuracy * 100)
    (out / "eval/confusion.csv").write_text("actual,predicted\n" + "".join(
        f"a,{'a' if i < right else 'b'}\n" for i in range(100)))
    commit(message, cwd=project)


@pytest.fixture
def two_commits(tmp_path) -> Path:
    """A project whose two commits differ in the learning rate (and the accuracy)."""
    project = tmp_path / "proj"
    (project / "workflow").mkdir(parents=True)
    (project / "workflow/config.yaml").write_text("experiments: [intent]\n")
    git("init", "-q", cwd=project)
    commit_results(project, lr=0.003, accuracy=0.7, message="base")
    commit_results(project, lr=0.01, accuracy=0.9, message="higher lr")
    return project


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> tuple[Path, dict]:
    """The review workflow of a new project: its path and its YAML (read only: the
    project is shared with the other tests that read a new text project)."""
    project = Path(initialised(tmp_path_factory, kind="text")["project"])
    path = project / ".github/workflows/dlforge-review.yml"
    return path, yaml.safe_load(path.read_text())


def step(doc: dict, name: str) -> dict:
    """The review job's step whose name starts with ``name``."""
    found = [s for s in doc["jobs"]["review"]["steps"] if s.get("name", "").startswith(name)]
    assert len(found) == 1, name
    return found[0]


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory, workflow) -> Path:
    """A fresh virtual environment where the workflow's install step installed a wheel
    of this checkout (as DLFORGE_SPEC) and the review extra's requirements: nothing else."""
    work = tmp_path_factory.mktemp("light")
    venv = work / "venv"
    finished(sys.executable, "-m", "venv", venv)
    env = {key: value for key, value in os.environ.items() if key != "DLFORGE_INDEX_URL"}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}",
               DLFORGE_SPEC=str(dlforge_wheel(tmp_path_factory)),
               # What is installed is the same; pip only skips writing bytecode for it
               # (imports compile what they use) and asking for a newer pip.
               PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    finished("bash", "-e", "-c", step(workflow[1], "Install")["run"], env=env)
    return venv


def test_the_workflow_installs_dlforge_from_one_spec_without_its_dependencies(workflow):
    _, doc = workflow
    default = f"dlforge=={__version__}"  # the version that wrote the project
    assert doc["jobs"]["review"]["env"]["DLFORGE_SPEC"] == (
        "${{ vars.DLFORGE_SPEC || '" + default + "' }}")
    extra, dlforge = step(doc, "Install")["run"].splitlines()
    assert dlforge.startswith("pip install --no-deps ") and dlforge.endswith('"${DLFORGE_SPEC}"')
    assert shlex.split(extra) == ["pip", "install", *review_extra()]
    installs = [line for s in doc["jobs"]["review"]["steps"]
                for line in s.get("run", "").splitlines() if "pip install" in line]
    assert not [line for line in installs if any(name in line.lower() for name in HEAVY)]
    review = step(doc, "Review")["run"]
    assert 'dlforge review --base "origin/${BASE_REF}"' in review and "--check" in review


def test_the_workflow_comments_once_from_this_repository_and_summarises_forks(workflow):
    path, doc = workflow
    assert list(doc.get("on", doc.get(True))) == ["pull_request"]  # YAML 1.1 reads `on` as True
    assert "pull_request_target" not in path.read_text()
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    summary = step(doc, "Write the review to the job summary")
    assert '>> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    assert summary["if"] == "${{ !cancelled() }}"  # forks too, and after a failed review
    comment = step(doc, "Comment")
    assert comment["if"] == ("${{ !cancelled() && github.event.pull_request.head.repo.full_name"
                             " == github.repository }}")
    assert doc["concurrency"]["cancel-in-progress"] is True  # one run per pull request


@pytest.fixture
def fake_gh(tmp_path) -> Path:
    """A ``gh`` on PATH that answers the comment listing from comments.json (through
    jq, as ``gh api --jq`` does) and keeps what it is sent in sent.json."""
    fake = tmp_path / "bin" / "gh"
    fake.parent.mkdir()
    fake.write_text('#!/bin/bash\necho "$*" >> calls.txt\n'
                    'if [ "$2" = --paginate ]; then jq -r "$5" comments.json; fi\n'
                    'if [ "${*: -2:1}" = --input ]; then cp "${*: -1}" sent.json; fi\n')
    fake.chmod(0o755)
    return fake.parent


@pytest.mark.parametrize(("comments", "call"), [
    ([{"id": 3, "user": {"login": "someone"}, "body": f"{MARKER} quoted"},
      {"id": 7, "user": {"login": "github-actions[bot]"}, "body": f"{MARKER}\nold"}],
     "api --method PATCH repos/o/r/issues/comments/7 --input comment.json"),
    ([{"id": 3, "user": {"login": "github-actions[bot]"}, "body": "another bot's"}],
     "api --method POST repos/o/r/issues/5/comments --input comment.json"),
], ids=["its-own-is-updated", "none-of-its-own-adds-one"])
def test_the_comment_step_updates_its_own_marked_comment_or_adds_one(
        workflow, fake_gh, tmp_path, comments, call):
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    (tmp_path / "review.md").write_text("## dlforge review\n")
    env = {**os.environ, "PATH": f"{fake_gh}:{os.environ['PATH']}", "REPO": "o/r", "PR": "5",
           "RUN": "https://example.org/run"}
    finished("bash", "-e", "-c", step(workflow[1], "Comment")["run"], cwd=tmp_path, env=env)
    assert (tmp_path / "calls.txt").read_text().splitlines()[1:] == [call]
    sent = json.loads((tmp_path / "sent.json").read_text())
    assert sent == {"body": f"{MARKER}\n## dlforge review\n"}


def test_the_workflow_is_valid_for_github_and_its_shell_steps_pass_shellcheck(workflow):
    path, doc = workflow
    finished(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path)
    for s in doc["jobs"]["review"]["steps"]:
        if "run" in s:
            result = subprocess.run([BIN / "shellcheck", "--shell=bash", "-"], input=s["run"],
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"{s['name']}: {result.stdout}"


def test_the_review_imports_no_deep_learning_library(two_commits):
    code = ("import json, sys; from dlforge.cli import main; main(['review', '--base', "
            "'HEAD~1']); print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = finished(sys.executable, "-c", code, cwd=two_commits).stdout
    assert "`optimizer.lr` | 0.003 | 0.01" in out
    imported = json.loads(out.strip().splitlines()[-1])  # the list printed last
    assert not set(imported) & set(NEVER_IMPORTED)


@pytest.mark.slow
def test_the_review_runs_with_only_the_review_extra_installed(light_venv, two_commits):
    listed = finished(light_venv / "bin" / "pip", "list", "--format", "json").stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "dlforge" in installed and not installed & {*HEAVY, "pandas", "pyarrow"}
    result = finished(light_venv / "bin" / "dlforge", "review", "--base", "HEAD~1", cwd=two_commits)
    assert "| `optimizer.lr` | 0.003 | 0.01 |" in result.stdout
    assert "| accuracy | 0.7 | 0.9 | +0.2000 | [" in result.stdout  # with its interval
    site = next((light_venv / "lib").glob("python3*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    assert size < 200 * 2**20, f"{size / 2**20:.0f} MiB"


@pytest.mark.slow
def test_a_missing_requirement_is_named_with_the_install_command(light_venv, two_commits):
    code = ("import sys; sys.modules['numpy'] = None; from dlforge.cli import main; "
            "sys.exit(main(['review', '--base', 'HEAD~1']))")
    result = finished(light_venv / "bin" / "python", "-c", code, cwd=two_commits, check=False)
    assert result.returncode == 1, result.stderr
    assert "needs the module 'numpy'" in result.stderr
    command = shlex.split(result.stderr.split("Fix: ", 1)[1])
    assert command[:2] == ["pip", "install"]
    assert [Requirement(r) for r in command[2:]] == [Requirement(r) for r in review_extra()]


@pytest.mark.slow
def test_the_workflows_check_fails_its_step_on_stale_results(light_venv, workflow, tmp_path,
                                                            monkeypatch):
    from tests.test_review_check import commit, git, make_project, set_lr

    monkeypatch.chdir(tmp_path)
    make_project()
    git("update-ref", "refs/remotes/origin/main", "HEAD")  # the base branch, as checked out
    env = {**os.environ, "PATH": f"{light_venv / 'bin'}:{os.environ['PATH']}",
           "BASE_REF": "main"}
    review = ["bash", "-eo", "pipefail", "-c", step(workflow[1], "Review")["run"]]
    assert finished(*review, cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "review.md").read_text().startswith("**Verdict: pass**")
    set_lr(0.01)
    commit("lr 0.01, not run")
    failed = finished(*review, cwd=tmp_path, env=env, check=False)
    assert failed.returncode == 1, failed.stderr
    assert (tmp_path / "review.md").read_text().startswith("**Verdict: stale**")
