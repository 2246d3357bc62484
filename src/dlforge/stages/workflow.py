"""The stage graph, defined once for both workflow front ends.

``stages(exp)`` lists each stage of an experiment with its command, the files it
depends on (sources and the config files it composes) and what it writes. The
Snakemake rules (``workflow/rules/*.smk``) take their inputs and outputs from
here, and ``dlforge workflow dvc`` writes ``dvc.yaml`` from the same list, so
the two cannot drift apart (a test checks that the committed ``dvc.yaml`` is
current).

    dlforge workflow dvc      # regenerate dvc.yaml after editing workflow/config.yaml
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from dlforge.core.memo import memo
from dlforge.stages.params import PARAMS_FILE

WORKFLOW_CONFIG = Path("workflow/config.yaml")
_TRAIN_GROUPS = ("paths", "experiment", "datamodule", "model", "optimizer", "scheduler",
                 "trainer", "callbacks", "tracking", "hpo", "hpo/sampler", "hpo/pruner")
CONF_GROUPS = {"ingest": ("paths", "dataset", "experiment"),
               "snapshot": ("paths", "split", "dataset", "experiment"),
               "sweep": _TRAIN_GROUPS,
               "train": _TRAIN_GROUPS,
               "evaluate": ("paths", "dataset", "experiment", "tracking"),
               "register": ("paths", "experiment", "tracking", "registry")}
ENTRY_CONFIGS = {"sweep": ("sweep", "train")}  # entry configs that include others


@dataclass(frozen=True)
class Stage:
    """One stage of one experiment.

    Attributes:
        deps: files read (sources, config files, earlier stages' outputs).
        params: parameter files read (``params.yaml``: DVC tracks them as
            params, Snakemake as inputs).
        outs: small summary files written (tracked by both front ends, not cached).
        dirs: folders written whole (a model package); cached by DVC.
        persist: folders the stage appends to and never deletes (the dataset
            store, the snapshots); DVC caches them, Snakemake leaves them alone.
        markers: small files the stage creates when missing and other commands
            update (the retrain request of ``dlforge monitor``): outputs of both
            front ends, kept by DVC between runs.
        metrics: JSON metrics files (``dvc metrics``), also written by the stage.
        plots: CSV files of per-epoch values (``dvc plots``).
        confusion: CSV files of (actual, predicted) rows (``dvc plots``, confusion).
    """

    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    persist: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    confusion: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """Every file or folder the stage writes (Snakemake's outputs)."""
        return (*self.outs, *self.markers, *self.metrics, *self.plots, *self.confusion,
                *self.dirs)


@functools.cache
def experiment_config(exp: str, stage: str = "ingest"):
    """The composed config of ``stage`` for experiment ``exp`` (with Hydra's choices)."""
    from hydra import compose, initialize_config_dir

    from dlforge.core.config import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(stage, [f"experiment={exp}"], return_hydra_config=True)


def stages(exp: str) -> list[Stage]:
    """The stages of experiment ``exp``, in order."""
    return [Stage(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
            for s in _stage_records(exp)]


@memo("conf", str(WORKFLOW_CONFIG))
def _stage_records(exp: str) -> list[dict]:
    """The stages as plain data (kept on disk: composing the configs takes seconds)."""
    return [dataclasses.asdict(s) for s in _build_stages(exp)]


def _build_stages(exp: str) -> list[Stage]:
    cfg = experiment_config(exp)
    exp_dir, paths = _norm(cfg.paths.exp_dir), cfg.paths
    ingest_out, snapshot_out = f"{exp_dir}/ingest.json", f"{exp_dir}/snapshot.json"
    retrain = f"{exp_dir}/retrain.json"  # raised by `dlforge monitor`; read by train
    train_cfg = experiment_config(exp, "train")
    train_dir, sweep_dir = _norm(train_cfg.paths.train_dir), _norm(train_cfg.paths.sweep_dir)
    best = f"{sweep_dir}/best.yaml"
    graph = [
        Stage("ingest", f"dlforge ingest experiment={exp}",
              deps=(*_source_files(cfg.dataset.sources), *_conf_files(exp, "ingest")),
              outs=(ingest_out,), markers=(retrain,),
              persist=(_norm(f"{paths.store_dir}/{cfg.dataset.name}"),)),
        Stage("snapshot", f"dlforge snapshot experiment={exp}",
              deps=(ingest_out, *_conf_files(exp, "snapshot")),
              outs=(snapshot_out,),
              persist=(_norm(f"{paths.snapshot_dir}/{cfg.dataset.name}"),)),
    ]
    swept = bool(train_cfg.hpo.enabled)
    params = (str(PARAMS_FILE),)  # what `dvc exp run -S` sets
    if swept:
        # The study journal and trial folders are the sweep's working state (a
        # re-run continues the study), not outputs.
        graph.append(Stage("sweep", f"dlforge sweep experiment={exp}",
                           deps=(snapshot_out, *_conf_files(exp, "sweep")), params=params,
                           outs=(best, f"{sweep_dir}/summary.json", f"{sweep_dir}/history.png",
                                 f"{sweep_dir}/importances.png")))
    graph.append(Stage("train", f"dlforge train experiment={exp}",
                       deps=(snapshot_out, *((best,) if swept else ()), retrain,
                             *_conf_files(exp, "train")), params=params,
                       outs=(f"{train_dir}/curves.png",), dirs=(f"{train_dir}/model",),
                       metrics=(f"{train_dir}/metrics.json",),
                       plots=(f"{train_dir}/history.csv",)))
    eval_dir = _norm(experiment_config(exp, "evaluate").paths.eval_dir)
    graph.append(Stage("evaluate", f"dlforge evaluate experiment={exp}",
                       deps=(f"{train_dir}/model", f"{train_dir}/metrics.json",
                             *_conf_files(exp, "evaluate")),
                       outs=(f"{eval_dir}/per_class.csv", f"{eval_dir}/confusion.png"),
                       metrics=(f"{eval_dir}/metrics.json",),
                       confusion=(f"{eval_dir}/confusion.csv",)))
    graph.append(Stage("register", f"dlforge register experiment={exp}",
                       deps=(f"{eval_dir}/metrics.json", f"{train_dir}/model",
                             *_conf_files(exp, "register")),
                       outs=(f"{exp_dir}/register.json",)))
    return graph


def stage(exp: str, name: str) -> Stage:
    return next(s for s in stages(exp) if s.name == name)


@memo("conf", str(WORKFLOW_CONFIG))
def sweep_workers(exp: str) -> int:
    """``hpo.n_workers``: the sweep rule's threads (one core per worker)."""
    return int(experiment_config(exp, "train").hpo.n_workers)


@memo("conf", str(WORKFLOW_CONFIG))
def exp_dir_pattern() -> str:
    """``paths.exp_dir`` with the experiment as the Snakemake wildcard ``{exp}``."""
    from dlforge.core.config import compose

    return _norm(compose("data", ["+experiment_name='{exp}'"]).paths.exp_dir)


def external_commits(exp: str) -> str:
    """Ids of the dataset's commits that did not come from its declared sources.

    A Snakemake param of ``ingest``: a commit added with ``dlforge data commit``
    changes it and re-runs ingest and everything after. Ingest's own commits do
    not change it, so a second run of the workflow does nothing. Commit records
    are read as the plain JSON they are (see ``dlforge.data.store``), without
    loading the data stack.
    """
    where = _dataset_sources(exp)
    records = sorted((Path(where["store"]) / "commits").glob("*.json"))
    ids = [json.loads(r.read_text()) for r in records]
    return ",".join(str(c["id"]) for c in ids
                    if _norm(c["source"]["path"]) not in where["declared"])


@memo("conf", str(WORKFLOW_CONFIG))
def _dataset_sources(exp: str) -> dict:
    """The experiment's dataset folder in the store and its declared source paths."""
    cfg = experiment_config(exp)
    return {"store": _norm(f"{cfg.paths.store_dir}/{cfg.dataset.name}"),
            "declared": [_norm(s.path) for s in cfg.dataset.sources]}


def experiments(config_file: Path = WORKFLOW_CONFIG) -> list[str]:
    return list(yaml.safe_load(config_file.read_text())["experiments"])


def dvc_yaml(exps: list[str]) -> dict:
    """``dvc.yaml`` for the given experiments: one DVC stage per (stage, experiment)."""
    out: dict = {}
    for exp in exps:
        for s in stages(exp):
            stage = {"cmd": s.cmd, "deps": list(s.deps)}
            if s.params:
                stage["params"] = [{p: None} for p in s.params]  # every key of the file
            outs = [{o: {"cache": False}} for o in s.outs] + list(s.dirs)
            outs += [{m: {"cache": False, "persist": True}} for m in s.markers]
            outs += [{p: {"persist": True}} for p in s.persist]
            stage["outs"] = outs
            if s.metrics:
                stage["metrics"] = [{m: {"cache": False}} for m in s.metrics]
            plots = [{p: {"cache": False, "x": "epoch"}} for p in s.plots]
            plots += [{p: {"cache": False, "template": "confusion", "x": "actual",
                           "y": "predicted"}} for p in s.confusion]
            if plots:
                stage["plots"] = plots
            out[f"{s.name}-{exp}"] = stage
    return {"stages": out}


def write_dvc_yaml(path: Path = Path("dvc.yaml")) -> Path:
    header = ("# Generated by `dlforge workflow dvc` from dlforge.stages.workflow.stages and\n"
              "# workflow/config.yaml: edit those, not this file.\n")
    body = yaml.safe_dump(dvc_yaml(experiments()), sort_keys=False, width=100)
    path.write_text(header + body)
    return path


def _conf_files(exp: str, stage_name: str) -> list[str]:
    from dlforge.core.config import conf_dir

    root = Path(os.path.relpath(conf_dir()))
    choices = experiment_config(exp, stage_name).hydra.runtime.choices
    entries = ENTRY_CONFIGS.get(stage_name, (stage_name,))
    files = [*(root / f"{name}.yaml" for name in entries), root / "stage.yaml"]
    files += [root / group / f"{choices[group]}.yaml" for group in CONF_GROUPS[stage_name]
              if choices.get(group)]
    return [str(f) for f in files]


def _source_files(sources) -> list[str]:
    """The sources ingest reads; a source built by ingest itself (``build``) depends
    on its config only, which is already a dependency."""
    return [_norm(s.path) for s in sources if not s.get("build")]


def _norm(path: str) -> str:
    return os.path.normpath(str(path))
