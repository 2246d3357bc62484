"""The experiment layout: every file a stage writes, placed from conf/paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dlforge.core.config import compose
from dlforge.core.layout import ExperimentLayout, MonitorFiles, StudyFiles


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
