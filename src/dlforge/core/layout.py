"""Where an experiment's files are: one object, built from the ``paths`` config group.

The folders come from ``conf/paths`` (``exp_dir``, ``train_dir``, ``sweep_dir``,
``eval_dir``); the names of the files each stage writes in them are spelled
here and nowhere else. Stages write through it, the stage layer reads earlier
stages' files through it, and the workflow declares its outputs from it.

    layout = ExperimentLayout.from_paths(cfg.paths)
    layout.snapshot_summary     outputs/intent/snapshot.json
    layout.train.metrics        outputs/intent/train/metrics.json
    layout.log_file("train")    outputs/intent/logs/train.log

Built from a frozen config's ``paths`` it points at that run's folders (a
sweep trial trains in a ``train_dir`` of its own); composed with ``{exp}`` as
the experiment name it gives the workflow's Snakemake wildcard patterns.

A stage builds it with :meth:`ExperimentLayout.from_config`, which first checks
``experiment_name``: the name is a folder under ``outputs/`` (and Hydra's log
folder), so ``../x`` or a newline would write outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.names import NAME_RULE, is_name


@dataclass(frozen=True)
class TrainFiles:
    """What a training writes in its ``train_dir`` (``dlforge train``, each sweep trial)."""

    dir: Path

    @property
    def frozen_config(self) -> Path:
        """The resolved config every rank trains from (and evaluation reads back)."""
        return self.dir / "config.yaml"

    @property
    def run_state(self) -> Path:
        """The MLflow run id, config hash and status: how a re-run knows to resume."""
        return self.dir / "run.json"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def history(self) -> Path:
        """Per-epoch metrics, one CSV row per epoch (``dvc plots``)."""
        return self.dir / "history.csv"

    @property
    def curves(self) -> Path:
        return self.dir / "curves.png"

    @property
    def model(self) -> Path:
        """The model package folder (``dlforge.models.package``)."""
        return self.dir / "model"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def ranks(self) -> Path:
        """The folder of the ranks' reports (a digest of each rank's final weights)."""
        return self.dir / "ranks"

    def rank_report(self, rank: int) -> Path:
        return self.ranks / f"rank{rank}.json"

    def rank_reports(self) -> list[Path]:
        """The ranks' reports that are there, in name order."""
        return sorted(self.ranks.glob("rank*.json"))


@dataclass(frozen=True)
class StudyFiles:
    """One Optuna study's working folder under ``sweep_dir``: not outputs, the state a
    re-run of the sweep continues from."""

    dir: Path

    @property
    def frozen_config(self) -> Path:
        """The training config every trial starts from, with the study's settings."""
        return self.dir / "sweep.yaml"

    def trial(self, number: int) -> TrainFiles:
        """Trial ``number``'s training folder (its ``paths.train_dir``)."""
        return TrainFiles(self.dir / f"trial-{number:04d}")

    def worker_log(self, index: int) -> Path:
        """The log of sweep worker process ``index``."""
        return self.dir / f"worker-{index}.log"


@dataclass(frozen=True)
class SweepFiles:
    """What ``dlforge sweep`` writes in ``sweep_dir``."""

    dir: Path

    @property
    def best(self) -> Path:
        """The best trial's parameters as Hydra overrides (``dlforge.hpo.best``)."""
        return self.dir / "best.yaml"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    @property
    def history(self) -> Path:
        """The optimisation history plot."""
        return self.dir / "history.png"

    @property
    def importances(self) -> Path:
        return self.dir / "importances.png"

    def worker_done(self, worker: int | str) -> Path:
        """The marker of a finished sweep-worker job (Snakemake's, with ``sweep_jobs`` > 1)."""
        return self.dir / "workers" / f"{worker}.done"

    def study(self, name: str) -> StudyFiles:
        return StudyFiles(self.dir / name)


@dataclass(frozen=True)
class EvalFiles:
    """What ``dlforge evaluate`` writes in ``eval_dir``."""

    dir: Path

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.dir / "per_class.csv"

    @property
    def confusion_csv(self) -> Path:
        """(actual, predicted) rows (``dvc plots``, confusion template)."""
        return self.dir / "confusion.csv"

    @property
    def confusion_png(self) -> Path:
        return self.dir / "confusion.png"


@dataclass(frozen=True)
class MonitorFiles:
    """What ``dlforge monitor`` writes in its ``out_dir`` (conf/monitor.yaml)."""

    dir: Path

    @property
    def report(self) -> Path:
        return self.dir / "report.json"

    @property
    def labels(self) -> Path:
        """Label shares, train split against predictions."""
        return self.dir / "labels.png"

    @property
    def inputs(self) -> Path:
        """Input histograms, train split against live traffic."""
        return self.dir / "inputs.png"


@dataclass(frozen=True)
class ExperimentLayout:
    """Every file the stages write for one experiment."""

    exp_dir: Path
    train: TrainFiles
    sweep: SweepFiles
    eval: EvalFiles

    @classmethod
    def from_config(cls, cfg: Mapping) -> ExperimentLayout:
        """From a composed stage config: its ``experiment_name`` checked, then its ``paths``.

        Raises:
            DlforgeError: when ``experiment_name`` is not a folder name (see
                :func:`check_experiment_name`).
        """
        check_experiment_name(cfg["experiment_name"])
        return cls.from_paths(cfg["paths"])

    @classmethod
    def from_paths(cls, paths: Mapping) -> ExperimentLayout:
        """From the ``paths`` node of a composed config or of a frozen one (a plain dict)."""
        return cls(Path(paths["exp_dir"]), TrainFiles(Path(paths["train_dir"])),
                   SweepFiles(Path(paths["sweep_dir"])), EvalFiles(Path(paths["eval_dir"])))

    @property
    def ingest_summary(self) -> Path:
        """The commits ``dlforge ingest`` made or found, one per declared source."""
        return self.exp_dir / "ingest.json"

    @property
    def snapshot_summary(self) -> Path:
        """The snapshot ``dlforge snapshot`` built: what sweep, train and monitor use."""
        return self.exp_dir / "snapshot.json"

    @property
    def retrain_marker(self) -> Path:
        """Retrain requests: created by ingest, raised by monitor, read by train."""
        return self.exp_dir / "retrain.json"

    @property
    def register_record(self) -> Path:
        """The version ``dlforge register`` made and the gate's decision."""
        return self.exp_dir / "register.json"

    def log_file(self, stage: str) -> Path:
        """The workflow's log of one stage job: the command's stdout and stderr.

        Hydra's own job log (``hydra.run.dir``, conf/stage.yaml) is the file
        ``logs/<job>/<job>.log``, so the two never write to the same file.
        """
        return self.exp_dir / "logs" / f"{stage}.log"

    def config_section(self, stage: str) -> Path:
        """The resolved values ``stage`` reads of its config (``dlforge.stages.sections``):
        what the workflow re-runs the stage on."""
        return self.exp_dir / "config" / f"{stage}.json"


def check_experiment_name(value: object) -> str:
    """``value`` as an experiment name: the folder ``outputs/<name>`` and nothing else.

    Raises:
        DlforgeError: naming ``experiment_name``, the value and the rule, before any
            folder or MLflow run exists.
    """
    name = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not is_name(name):
        raise DlforgeError(f"experiment_name={value!r} is not a valid experiment name: it "
                           f"names the folder outputs/<experiment_name>, so use {NAME_RULE}. "
                           "Fix: set experiment_name (in conf/experiment/<name>.yaml or on "
                           "the command line) to a name like 'intent'")
    return name
