"""The experiment layout: every file a stage writes, placed from conf/paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.core.layout import ExperimentLayout, MonitorFiles, StudyFiles, check_experiment_name
from tests.helpers import ROOT, dlforge


def test_files_are_placed_in_the_folders_of_the_composed_paths():
    layout = ExperimentLayout.from_paths(compose("train", ["experiment=intent"]).paths)
    exp = Path("outputs/intent")
    assert layout.snapshot_summary == exp / "snapshot.json"
    assert layout.retrain_marker == exp / "retrain.json"
    assert layout.train.run_state == exp / "train" / "run.json"
    assert layout.train.model == exp / "train" / "model"
    assert layout.sweep.best == exp / "sweep" / "best.yaml"
    assert layout.eval.confusion_csv == exp / "eval" / "confusion.csv"
    assert layout.log_file("train") == exp / "logs" / "train.log"


def test_a_frozen_configs_paths_place_a_trials_files_in_its_own_folder(tmp_path):
    trial = StudyFiles(tmp_path / "sweep" / "study-1").trial(7)
    frozen = {"exp_dir": str(tmp_path), "train_dir": str(trial.dir),
              "sweep_dir": str(tmp_path / "sweep"), "eval_dir": str(tmp_path / "eval")}
    layout = ExperimentLayout.from_paths(frozen)
    assert layout.train == trial
    assert layout.train.history == tmp_path / "sweep" / "study-1" / "trial-0007" / "history.csv"


def test_no_two_outputs_share_a_file():
    layout = ExperimentLayout.from_paths({"exp_dir": "e", "train_dir": "e/t", "sweep_dir": "e/s",
                                          "eval_dir": "e/v"})
    groups = [layout, layout.train, layout.sweep, layout.eval, MonitorFiles(Path("e/m"))]
    files = [getattr(group, name) for group in groups for name in dir(type(group))
             if isinstance(getattr(type(group), name), property)]
    files += [layout.log_file(stage) for stage in ("ingest", "train", "sweep-worker-0")]
    assert len(files) == len(set(files)) > 20


def test_importing_the_layout_loads_neither_omegaconf_nor_torch():
    code = ("import sys, dlforge.core.layout; "
            "print(sorted({'omegaconf', 'torch', 'hydra'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["../../x", "a\nb", "intent\n", "a/b", "..", ".hidden", "",
                                  " intent", "x" * 101, None, True, 1.5])
def test_an_experiment_name_that_is_not_one_folder_is_refused_naming_it(name):
    with pytest.raises(DlforgeError) as refused:
        check_experiment_name(name)
    message = str(refused.value)
    assert message.startswith(f"experiment_name={name!r} is not a valid experiment name")
    assert "letters, digits, '.', '_' and '-'" in message and "Fix: set experiment_name" in message


def test_the_experiment_names_in_use_are_accepted():
    for name in ["intent", "digits", "my_proj", "exp-2.1", "x" * 100]:
        assert check_experiment_name(name) == name
    assert check_experiment_name(2024) == "2024"  # experiment_name=2024 on the command line


STAGES = {"ingest": "dlforge.stages.data:ingest", "snapshot": "dlforge.stages.data:snapshot",
          "sweep": "dlforge.stages.sweep:sweep", "train": "dlforge.stages.train:train",
          "evaluate": "dlforge.stages.evaluate:evaluate",
          "register": "dlforge.stages.register:register",
          "monitor": "dlforge.stages.monitor:monitor"}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_refuses_an_escaping_experiment_name_before_it_writes(tmp_path, stage):
    from importlib import import_module

    root = tmp_path / "project"  # outputs/../../x is tmp_path/x
    module, function = STAGES[stage].split(":")
    cfg = compose(stage, ["experiment=intent", f"paths.root={root}",
                          "experiment_name=../../x"])
    with pytest.raises(DlforgeError, match=r"experiment_name='\.\./\.\./x' is not a valid"):
        getattr(import_module(module), function)(cfg)
    assert list(tmp_path.iterdir()) == []  # no folder, no MLflow store, no run


def test_the_stage_command_refuses_it_before_hydra_makes_its_log_folder(tmp_path):
    root = tmp_path / "project"
    answer = dlforge("train", "experiment=intent", f"paths.root={root}",
                     "experiment_name=../../x", cwd=ROOT)
    assert answer.returncode == 1, answer.stderr
    assert "experiment_name='../../x' is not a valid experiment name" in answer.stderr
    assert list(tmp_path.iterdir()) == []
