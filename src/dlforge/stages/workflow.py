"""The stage graph, defined once for both workflow front ends.

``stages(exp)`` lists each stage of an experiment with its command, the files it
depends on (sources, earlier stages' outputs, the project's code), its config
section (the resolved values it reads: :mod:`dlforge.stages.sections`) and what
it writes (:data:`OUTPUTS`, placed by :class:`~dlforge.core.layout.ExperimentLayout`).
The Snakemake rules (packaged: :data:`RULES`) take their inputs and outputs from
here, and :mod:`dlforge.stages.dvcfiles` writes ``dvc.yaml`` from the same list,
so the two cannot drift apart (a test checks that the committed ``dvc.yaml`` is
current).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shlex
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import yaml

from dlforge.core.config import PACKAGED_CONF
from dlforge.core.layout import ExperimentLayout
from dlforge.core.memo import memo

WORKFLOW_CONFIG = Path("workflow/config.yaml")
# The packaged Snakemake rules: a project's Snakefile includes this file.
RULES = str(Path(__file__).resolve().parents[1] / "rules" / "dlforge.smk")
# What the stage graph and the config sections are computed from: a change in any of
# them recomputes both.
GRAPH_SOURCES = ("conf", str(WORKFLOW_CONFIG), str(PACKAGED_CONF), "src")
PROJECT_CODE = Path("src")  # the project's own code: what training builds its model from


@dataclass(frozen=True)
class Output:
    """One file or folder a stage writes.

    Attributes:
        name: its name in the Snakemake rule (``rules.train.output.model``).
        kind: how the front ends track it: the :class:`Stage` field it goes in.
        where: the :class:`~dlforge.core.layout.ExperimentLayout` attribute that
            places it (dotted: ``train.model``).
    """

    name: str
    kind: str
    where: str


# What each stage writes, declared once: the Snakemake rules, dvc.yaml and
# `rule all` take their outputs from here. Within a kind, dvc.yaml keeps this order.
OUTPUTS = {
    "ingest": (Output("summary", "outs", "ingest_summary"),
               Output("retrain", "markers", "retrain_marker")),
    "snapshot": (Output("summary", "outs", "snapshot_summary"),),
    "sweep": (Output("best", "outs", "sweep.best"), Output("summary", "outs", "sweep.summary"),
              Output("history", "outs", "sweep.history"),
              Output("importances", "outs", "sweep.importances")),
    "train": (Output("metrics", "metrics", "train.metrics"),
              Output("history", "plots", "train.history"),
              Output("curves", "outs", "train.curves"), Output("model", "dirs", "train.model")),
    "evaluate": (Output("metrics", "metrics", "eval.metrics"),
                 Output("per_class", "outs", "eval.per_class"),
                 Output("confusion", "confusion", "eval.confusion_csv"),
                 Output("plot", "outs", "eval.confusion_png")),
    "register": (Output("record", "outs", "register_record"),),
}


@dataclass(frozen=True)
class Stage:
    """One stage of one experiment.

    Attributes:
        deps: files read (sources, earlier stages' outputs, the project's code).
        config: the stage's config section: the values it reads of its config, resolved
            (:mod:`dlforge.stages.sections`), written before any stage runs; the stage
            re-runs when it changes.
        params: the sections of ``params.yaml`` read (the experiment's: DVC tracks
            them as params, so that ``dvc exp run -S`` sets them and ``dvc exp show``
            and ``dvc params diff`` list them).
        outs: small summary files written (tracked by both front ends, not cached).
        dirs: folders written whole (a model package); cached by DVC.
        persist: folders the stage appends to and never deletes (the dataset
            store, the snapshots); DVC caches them, Snakemake leaves them alone.
        markers: small files the stage creates when missing and other commands
            update (the retrain request of ``dlforge monitor``), or rewrites only when
            their content changes (the config sections): outputs of both front ends,
            kept by DVC between runs.
        metrics: JSON metrics files (``dvc metrics``), also written by the stage.
        plots: CSV files of per-epoch values (``dvc plots``).
        confusion: CSV files of (actual, predicted) rows (``dvc plots``, confusion).
    """

    name: str
    cmd: str
    deps: tuple[str, ...]
    config: str = ""
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

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every file or folder the stage reads (DVC's deps): ``deps`` and its config
        section."""
        return (*self.deps, *([self.config] if self.config else []))


@functools.cache
def experiment_config(exp: str, stage: str = "ingest"):
    """The composed config of ``stage`` for experiment ``exp`` (with Hydra's choices)."""
    from dlforge.core.config import compose

    return compose(stage, [f"experiment={exp}"], hydra_config=True)


def stages(exp: str) -> list[Stage]:
    """The stages of experiment ``exp``, in order."""
    return [Stage(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
            for s in _stage_records(exp)]


@memo(*GRAPH_SOURCES)
def _stage_records(exp: str) -> list[dict]:
    """The stages as plain data (kept on disk: composing the configs takes seconds)."""
    return [dataclasses.asdict(s) for s in _build_stages(exp)]


def _build_stages(exp: str) -> list[Stage]:
    cfg = experiment_config(exp)
    layout, dataset = ExperimentLayout.from_paths(cfg.paths), cfg.dataset.name
    swept = bool(experiment_config(exp, "train").hpo.enabled)
    params = (exp,)  # the experiment's section of params.yaml: what `dvc exp run -S` sets
    graph = [
        _stage(exp, "ingest", layout, _source_files(cfg.dataset.sources),
               persist=(_norm(f"{cfg.paths.store_dir}/{dataset}"),)),
        _stage(exp, "snapshot", layout, [layout.ingest_summary],
               persist=(_norm(f"{cfg.paths.snapshot_dir}/{dataset}"),
                        _norm(f"{cfg.paths.store_dir}/{SEALS}/{dataset}"))),
    ]
    code = _project_code()
    if swept:
        # The study journal and trial folders are the sweep's working state (a
        # re-run continues the study), not outputs.
        graph.append(_stage(exp, "sweep", layout, [layout.snapshot_summary, *code],
                            params=params))
    best = [layout.sweep.best] if swept else []
    graph += [
        _stage(exp, "train", layout, [layout.snapshot_summary, *best, layout.retrain_marker,
                                      *code], params=params),
        _stage(exp, "evaluate", layout, [layout.train.model, layout.train.metrics]),
        _stage(exp, "register", layout, [layout.eval.metrics, layout.train.model]),
    ]
    return graph


def _stage(exp: str, name: str, layout: ExperimentLayout, reads: list, **fields) -> Stage:
    """Stage ``name`` of ``exp``: it reads ``reads`` and its config section, writes its
    :data:`OUTPUTS` where ``layout`` puts them."""
    written: dict[str, tuple[str, ...]] = {}
    for out in OUTPUTS[name]:
        written[out.kind] = (*written.get(out.kind, ()), _place(layout, out))
    return Stage(name, f"dlforge {name} experiment={exp}", deps=tuple(map(_norm, reads)),
                 config=_norm(layout.config_section(name)), **written, **fields)


def rule_outputs(stage_name: str) -> dict[str, tuple[str, str]]:
    """The stage's outputs for its Snakemake rule: ``{name: (kind, pattern)}``, each
    path with the wildcard ``{exp}`` for the experiment."""
    layout = layout_pattern()
    return {out.name: (out.kind, _place(layout, out)) for out in OUTPUTS[stage_name]}


def layout_pattern() -> ExperimentLayout:
    """The experiment layout with the Snakemake wildcard ``{exp}`` as the experiment name:
    the rules' output and log patterns, from conf/paths."""
    return ExperimentLayout.from_paths(_pattern_paths())


@memo(*GRAPH_SOURCES)
def _pattern_paths() -> dict:
    from omegaconf import OmegaConf

    from dlforge.core.config import compose

    paths = compose("data", ["+experiment_name='{exp}'"]).paths
    return OmegaConf.to_container(paths, resolve=True)


# The folders stages keep between runs that are no rule's output (Stage.persist: the
# dataset store, the snapshots). Where jobs share no filesystem, they live on a
# volume every job mounts (the workflow config's `shared_dir`).
STATE_PATHS = ("store_dir", "snapshot_dir")
# Where the store keeps the seals of the snapshots it built (dlforge.data.seal.SEALS):
# the snapshot stage's, so that they travel with the snapshots (`dvc push`/`pull`).
SEALS = ".seals"


def job_paths(declared: str, staged: str, shared_dir: str | None = None) -> str:
    """The ``paths.*`` overrides of a rule's job, as command-line text (" KEY=VALUE..."):
    empty for a job that runs in the project folder, so its command is dvc.yaml's.

    Args:
        declared: the job's first output as its rule declares it (from the project folder).
        staged: that output as the job sees it. Under a default storage provider (the
            Kubernetes profile) Snakemake copies a job's files to and from its local copy
            of the storage prefix (``.snakemake/storage/s3/BUCKET/PREFIX/outputs/...``):
            that folder is the job's ``paths.root``.
        shared_dir: a folder every job mounts, or None: ``STATE_PATHS`` move there, each
            at its place under ``paths.root`` (``data/store``: ``SHARED/data/store``).

    Neither changes what a run is: snapshot versions are content hashes, and the
    training's config hash leaves ``paths`` out.
    """
    declared, staged = _norm(declared), _norm(staged)
    overrides = []
    if staged != declared:
        root = staged.removesuffix(os.sep + declared)
        if root == staged:
            raise ValueError(f"the job's output {staged} is not its rule's {declared} under "
                             "a storage folder")
        overrides.append(f"paths.root={root}")
    if shared_dir:
        paths = _pattern_paths()
        overrides += [f"paths.{key}="
                      + _norm(os.path.join(shared_dir, os.path.relpath(paths[key], paths["root"])))
                      for key in STATE_PATHS]
    return "".join(f" {shlex.quote(o)}" for o in overrides)


def _place(layout: ExperimentLayout, out: Output) -> str:
    return _norm(attrgetter(out.where)(layout))


def stage(exp: str, name: str) -> Stage:
    return next(s for s in stages(exp) if s.name == name)


@memo(*GRAPH_SOURCES)
def sweep_workers(exp: str) -> int:
    """``hpo.n_workers``: the sweep rule's threads (one core per worker)."""
    return int(experiment_config(exp, "train").hpo.n_workers)


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


@memo(*GRAPH_SOURCES)
def _dataset_sources(exp: str) -> dict:
    """The experiment's dataset folder in the store and its declared source paths."""
    cfg = experiment_config(exp)
    return {"store": _norm(f"{cfg.paths.store_dir}/{cfg.dataset.name}"),
            "declared": [_norm(s.path) for s in cfg.dataset.sources]}


def experiments(config_file: Path = WORKFLOW_CONFIG) -> list[str]:
    return list(yaml.safe_load(config_file.read_text())["experiments"])


def _project_code() -> list[str]:
    """The project's Python files under src/ (dlforge's own, in a checkout of it, are
    the tool, not the project)."""
    if not PROJECT_CODE.is_dir():
        return []
    tool = (PACKAGED_CONF.parent, PACKAGED_CONF.parents[1] / "hydra_plugins")
    return sorted(str(f) for f in PROJECT_CODE.rglob("*.py") if "__pycache__" not in f.parts
                  and not any(f.resolve().is_relative_to(t) for t in tool))


def _source_files(sources) -> list[str]:
    """The sources ingest reads; a source built by ingest itself (``build``) depends
    on its config only, which is in ingest's config section."""
    return [_norm(s.path) for s in sources if not s.get("build")]


def _norm(path: str) -> str:
    return os.path.normpath(str(path))
