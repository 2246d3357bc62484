"""Strict configs: a misspelt section or key fails before the stage creates anything,
naming where it was set and the nearest valid name."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from dlforge.cli import main
from dlforge.core.errors import DlforgeError
from dlforge.stages.sweep import sweep
from dlforge.stages.train import train
from tests.helpers import ROOT

EXPERIMENT_STAGES = ("ingest", "snapshot", "sweep", "train", "evaluate", "register", "monitor")


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """The sample project's configs in tmp_path, the working directory (as a user runs
    the stage commands there); returns its conf/ folder."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "conf"


def write_experiment(conf, name: str, body: str) -> None:
    (conf / "experiment" / f"{name}.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /dataset: clinc150\n\n"
        f"experiment_name: {name}\n{body}")


def test_a_misspelt_section_fails_every_stage_naming_the_file_and_the_section(conf, capsys):
    write_experiment(conf, "typo", "trainr:\n  max_epochs: 2\n")
    for stage in EXPERIMENT_STAGES:
        assert main([stage, "experiment=typo"]) == 1, stage
        assert (f"error: trainr is not a config section of `dlforge {stage}` (from "
                "conf/experiment/typo.yaml). Did you mean trainer? Fix: rename it to trainer "
                "in conf/experiment/typo.yaml") in capsys.readouterr().err
    assert not (conf.parent / "outputs").exists()


def test_a_key_added_on_the_command_line_is_checked(conf, capsys):
    assert main(["train", "experiment=intent", "+trainer.max_epoch=2"]) == 1
    assert ("error: trainer.max_epoch is not an argument of lightning.pytorch.Trainer (from "
            "the command line). Did you mean max_epochs? Fix: rename it to trainer.max_epochs "
            "on the command line") in capsys.readouterr().err
    assert main(["serve", "+prot=9000"]) == 1  # a stage without an experiment: its own keys
    assert ("error: prot is not a config section of `dlforge serve` (from the command line). "
            "Did you mean port?") in capsys.readouterr().err
    assert not (conf.parent / "outputs").exists()


def test_a_misspelt_optimizer_argument_names_the_arguments_it_takes(conf, capsys):
    write_experiment(conf, "rate", "optimizer:\n  learning_rate: 0.1\n")
    assert main(["train", "experiment=rate"]) == 1
    error = capsys.readouterr().err
    assert ("optimizer.learning_rate is not an argument of torch.optim.AdamW (from "
            "conf/experiment/rate.yaml). Fix: remove it from conf/experiment/rate.yaml, or use "
            "one of: ") in error
    assert re.search(r"use one of: [\w, ]*\blr\b", error), error
    # Overriding a key the config lacks fails at composition, naming the keys there.
    assert main(["train", "experiment=intent", "optimizer.learning_rate=0.1"]) == 1
    assert "Fix: check the spelling of the key (optimizer has lr, weight_decay)" in (
        capsys.readouterr().err)
    assert not (conf.parent / "outputs").exists()


MISTAKES = [
    ("+trainr.max_epochs=2", "trainr is not a config section of `dlforge train`. Did you mean "
                             "trainer? Fix: rename it to trainer"),
    ("+trainer.max_epoch=2", "trainer.max_epoch is not an argument of lightning.pytorch.Trainer."
                             " Did you mean max_epochs?"),
    ("+optimizer.learning_rate=0.1", "optimizer.learning_rate is not an argument of "
                                     "torch.optim.AdamW. Fix: remove it, or use one of:"),
    ("+scheduler.t_max=3", "scheduler.t_max is not an argument of "
                           "torch.optim.lr_scheduler.CosineAnnealingLR. Did you mean T_max?"),
    ("+callbacks.early_stopping.patiense=1", "callbacks.early_stopping.patiense is not an "
                                             "argument of lightning.pytorch.callbacks."
                                             "EarlyStopping. Did you mean patience?"),
    ("+callbacks.lr_monitor.logging_interval=epoch", "callbacks.lr_monitor has no _target_"),
    ("+datamodule.batch_sise=8", "datamodule.batch_sise is not an argument of "
                                 "dlforge.train.data.SnapshotDataModule. Did you mean batch_size?"),
    ("+model.encoder.max_token=8", "model.encoder.max_token is not an argument of "
                                   "dlforge.models.preprocessing.TextEncoder. Did you mean "
                                   "max_tokens?"),
    ("+model.net.hiden_dim=8", "Did you mean model.net.hidden_dim? Fix: remove "
                               "model.net.hiden_dim"),
    ("+trainer.logger=true", "trainer.logger is given by dlforge, not by the config. Fix: "
                             "remove trainer.logger"),
]


@pytest.mark.parametrize(("override", "message"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_config_mistake_leaves_no_run_and_no_output(project, tmp_path, override, message):
    mlruns = tmp_path / "mlruns"
    with pytest.raises(DlforgeError) as caught:
        train(project.config("train", f"paths.mlflow_dir={mlruns}", override))
    assert message in str(caught.value)
    assert not mlruns.exists(), "an MLflow store was opened"
    assert not (tmp_path / "outputs/intent/train").exists()


def test_the_sweep_checks_before_it_opens_its_study(project, tmp_path):
    mlruns = tmp_path / "mlruns"
    with pytest.raises(DlforgeError, match="trainer.max_epoch is not an argument"):
        sweep(project.config("sweep", f"paths.mlflow_dir={mlruns}", "+trainer.max_epoch=2"))
    with pytest.raises(DlforgeError, match="hpo.sampler.n_startup_trial is not an argument of "
                                           "optuna.samplers.TPESampler"):
        sweep(project.config("sweep", f"paths.mlflow_dir={mlruns}",
                             "+hpo.sampler.n_startup_trial=2"))
    assert not mlruns.exists()
    assert not (tmp_path / "outputs/intent/sweep").exists()


def test_the_sections_learnt_are_kept_on_disk_until_a_config_file_changes(conf, tmp_path,
                                                                          monkeypatch):
    """Each stage process reads what the configs declare from the cache, wherever the
    same files are; a new config file, an edited one or a damaged cache file is learnt
    again, never trusted."""
    from dlforge.core import strict
    from dlforge.core.io import CACHE_VARIABLE

    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    strict._entries.cache_clear()  # noqa: SLF001 - as a new process starts
    declared = strict.declared_sections("train")
    (cached,) = (tmp_path / "cache" / "sections").glob("*.json")
    strict._entries.cache_clear()  # noqa: SLF001
    assert strict.declared_sections("train") == declared  # read back
    assert "trainr" not in declared
    # The same files elsewhere, written again (a copy, a fresh checkout): read back too.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(conf, elsewhere / "conf", copy_function=shutil.copyfile)
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(strict, "_entry", lambda name: pytest.fail(f"{name} learnt again"))
    strict._entries.cache_clear()  # noqa: SLF001
    assert strict.declared_sections("train") == declared
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    # A section a project adds (a config group of its own, chosen by the entry config)
    # is declared at once: the file's arrival and the entry's edit change the key.
    (conf / "trainr").mkdir()
    (conf / "trainr" / "default.yaml").write_text("max_epochs: 2\n")
    entry = conf / "train.yaml"
    shutil.copy(ROOT / "src/dlforge/conf/train.yaml", entry)
    entry.write_text(entry.read_text().replace("defaults:\n",
                                               "defaults:\n  - trainr: default\n", 1))
    strict._entries.cache_clear()  # noqa: SLF001
    assert "trainr" in strict.declared_sections("train")
    # A damaged file is learnt again and rewritten.
    entry.unlink()
    shutil.rmtree(conf / "trainr")
    strict._entries.cache_clear()  # noqa: SLF001
    cached.write_text('{"train": [["trainr"')
    assert strict.declared_sections("train") == declared
    assert "train" in json.loads(cached.read_text())
