"""`dlforge init`: a new project is complete, refuses to overwrite, and the sample is one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dlforge.core.errors import DlforgeError
from dlforge.stages.project import init
from tests.helpers import ROOT, dlforge
from tests.initialised import initialised, initialised_copy


def test_init_writes_a_project_ready_for_git_dvc_and_snakemake(tmp_path):
    summary = init(tmp_path / "my-proj")
    project = Path(summary["project"])
    assert summary["package"] == "my_proj" and summary["experiment"] == "my_proj"
    for path in ["conf/dataset/my_proj.yaml", "conf/experiment/my_proj.yaml",
                 "conf/model/my_proj.yaml", "src/my_proj/__init__.py",
                 "src/my_proj/nets.py", "workflow/config.yaml",
                 "workflow/profiles/local/config.yaml", "Snakefile", "dvc.yaml",
                 "params.yaml", "data/raw.dvc", ".gitignore", "README.md", ".git", ".dvc",
                 ".github/workflows/dlforge-review.yml"]:
        assert (project / path).exists(), path
    assert yaml.safe_load((project / "workflow/config.yaml").read_text())[
        "experiments"] == ["my_proj"]
    ignored = (project / ".gitignore").read_text()
    assert "/outputs/**" in ignored and "!/outputs/*/eval/*" in ignored  # results stay in git
    assert "${{ github.base_ref }}" in (project / ".github/workflows/dlforge-review.yml"
                                        ).read_text()
    assert "{{" not in (project / "README.md").read_text()
    from dvc.repo import Repo

    with Repo(str(project)) as repo:  # no usage report from the project's DVC commands
        assert repo.config["core"]["analytics"] is False
    # The stage graph trains when the project's own code changes.
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    train = stages["train-my_proj"]
    assert "src/my_proj/nets.py" in train["deps"]
    # ...and when what it reads of conf/ changes (its config section, from conf/).
    assert "outputs/my_proj/config/train.json" in train["deps"]
    assert "conf" in stages["config"]["deps"]
    assert (project / "outputs/my_proj/config/train.json").is_file()
    assert "!/outputs/*/config/*.json" in ignored  # the sections stay in git with the results
    # Every stage composes from the project's conf/ plus the packaged base configs,
    # and the experiment trains the project's own network.
    shown = dlforge("train", "experiment=my_proj", "--cfg", "job", cwd=project, check=True)
    job = yaml.safe_load(shown.stdout)
    assert job["model"]["net"]["_target_"] == "my_proj.nets.TextClassifier"
    assert job["dataset"]["type"] == "text_intent" and summary["type"] == "text"
    # The starter's settings are for a first, small dataset (tests/test_init_starters.py).
    assert job["trainer"]["max_epochs"] == 30 and job["optimizer"]["lr"] == 0.01
    assert job["datamodule"]["batch_size"] == 16
    assert job["callbacks"]["early_stopping"]["monitor"] == "val/loss"
    assert not list(tmp_path.glob(".my-proj.init-*")), "the staging folder is left behind"


def test_init_type_image_writes_an_image_project(tmp_path):
    answer = json.loads(dlforge("init", "shots", "--type", "image", cwd=tmp_path,
                                check=True).stdout)
    project = Path(answer["project"])
    assert answer["type"] == "image" and answer["experiment"] == "shots"
    assert "put a folder of images per label at data/raw/shots/" in answer["next"][1]
    shown = dlforge("train", "experiment=shots", "--cfg", "job", cwd=project, check=True)
    job = yaml.safe_load(shown.stdout)
    assert job["dataset"]["type"] == "image_class"
    assert job["dataset"]["sources"][0]["path"] == "${paths.raw_dir}/shots"
    assert job["model"]["net"]["_target_"] == "shots.nets.ImageClassifier"
    encoder = job["model"]["encoder"]
    assert encoder["_target_"] == "dlforge.models.preprocessing.ImageEncoder"
    assert encoder["channels"] is None  # from the train images
    assert job["trainer"]["max_epochs"] == 30 and job["datamodule"]["batch_size"] == 16
    assert job["callbacks"]["checkpoint"]["monitor"] == "val/loss"
    nets = (project / "src/shots/nets.py").read_text()
    assert "class ImageClassifier" in nets and "class TextClassifier" not in nets
    readme = (project / "README.md").read_text()
    assert "data/raw/shots/<label>/" in readme and "ImageEncoder" in readme
    assert "model.encoder.channels: null" in readme and "{{" not in readme
    ingest = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["ingest-shots"]
    assert "data/raw/shots" in ingest["deps"]


def test_init_refuses_an_unknown_type_or_one_its_example_is_not(tmp_path):
    with pytest.raises(DlforgeError, match="--type video: no such project type. Fix: use "
                                           "one of text, image"):
        init(tmp_path / "proj", kind="video")
    with pytest.raises(DlforgeError, match="--example digits is of --type image, not text. "
                                           "Fix: leave out --type"):
        init(tmp_path / "proj", "digits", "text")
    assert init(tmp_path / "proj", "digits", "image")["type"] == "image"
    assert list(tmp_path.iterdir()) == [tmp_path / "proj"]


def test_init_refuses_a_non_empty_or_unwritable_folder_and_writes_nothing(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    answer = dlforge("init", "full", cwd=tmp_path)
    assert answer.returncode != 0 and f"{full} exists and is not an empty folder" in (
        answer.stderr), answer.stderr
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DlforgeError, match="cannot create the project there.*Fix: choose"):
        init(blocker / "proj")
    with pytest.raises(DlforgeError, match="no Python package name"):
        init(tmp_path / "1st")
    with pytest.raises(DlforgeError, match="--example faces: no such example"):
        init(tmp_path / "proj", "faces")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full"]


@pytest.mark.parametrize(("folder", "why"), [
    ("json", "a module of Python's standard library"),
    ("Numpy", "a module of the installed distribution numpy"),
    ("hydra", "a module of the installed distribution hydra-core"),
    ("sitecustomize", "a module name Python treats specially"),
    ("__main__", "a module name Python treats specially"),
    ("dlforge", "one of dlforge's own packages"),
    ("hydra-plugins", "one of dlforge's own packages"),
    ("test", "a module Python imports already, from "),  # the stdlib's tests, not listed
])
def test_a_project_name_that_is_importable_already_is_refused(tmp_path, folder, why):
    name = folder.lower().replace("-", "_")
    with pytest.raises(DlforgeError) as refused:
        init(tmp_path / folder)
    message = str(refused.value)
    assert f"the project name {name!r} is {why}" in message
    assert f": src/{name}/ would hide it" in message
    assert f"Fix: choose another name, e.g. `dlforge init {tmp_path / name}_project`" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["_private", "café", "x" * 101])
def test_a_project_name_must_also_be_an_experiment_name(tmp_path, folder):
    with pytest.raises(DlforgeError, match="gives no Python package name"):
        init(tmp_path / folder)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_of_a_repository_becomes_the_project_with_dvc_of_its_own(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)  # a monorepo, say
    project = tmp_path / "empty"
    project.mkdir()
    summary = init(project, "digits")
    assert summary["experiment"] == "digits"
    assert summary["git"] == "inside an existing repository"
    assert (project / "conf/experiment/digits.yaml").is_file()
    assert not (project / ".git").exists()  # the repository's git, DVC's own folder
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        assert Path(repo.root_dir) == project
        assert repo.status(targets=[str(project / "data/raw.dvc")]) == {}  # tracked as is


def test_a_failing_dvc_step_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    def refuse(*args, **kwargs):
        raise DvcException("no room left on the device")

    monkeypatch.setattr(Repo, "add", refuse)
    with pytest.raises(DlforgeError, match=r"dvc add data/raw failed in the new project: "
                                           r"no room left on the device\. Fix: "):
        init(tmp_path / "proj")
    assert list(tmp_path.iterdir()) == []  # nor the staging folder


@pytest.mark.parametrize("example", ["intent", "digits"])
def test_the_sample_project_is_what_init_writes_for_its_example(tmp_path_factory, example):
    # Read only: the project tests/test_config.py checks too.
    project = Path(initialised(tmp_path_factory, example)["project"])
    same = ["Snakefile", "workflow/profiles/local/config.yaml",
            "workflow/profiles/slurm/config.yaml", "workflow/profiles/kubernetes/config.yaml",
            "workflow/profiles/kubernetes/volume.yaml",
            *(str(p.relative_to(project)) for p in (project / "conf").rglob("*.yaml")
              if p.parent.name in ("dataset", "experiment"))]
    assert len(same) == 7
    for name in same:
        assert (project / name).read_bytes() == (ROOT / name).read_bytes(), name
    if example == "intent":
        for part in ("part-a.csv", "part-b.csv"):
            raw = f"data/raw/clinc150/{part}"
            assert (project / raw).read_bytes() == (ROOT / raw).read_bytes()


def test_a_project_config_overriding_a_group_that_does_not_exist_is_named_with_the_fix(
        tmp_path, tmp_path_factory):
    project = initialised_copy(tmp_path_factory, tmp_path / "proj", kind="text")
    experiment = project / "conf/experiment/proj.yaml"
    experiment.write_text(experiment.read_text().replace(
        "  - override /model: proj\n", "  - override /model: proj\n  - override /trainr: ddp\n"))
    for command in (["train", "experiment=proj"], ["workflow", "dvc"]):
        answer = dlforge(*command, cwd=project)
        assert answer.returncode != 0 and "Traceback" not in answer.stderr, answer.stderr
        assert "In 'experiment/proj': Could not override 'trainr'" in answer.stderr
        assert "Fix: override one of the config groups (callbacks, datamodule" in answer.stderr
