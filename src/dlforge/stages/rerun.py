"""Training again from a record: its snapshot recreated by id, its frozen config moved
to a scratch folder (what ``dlforge verify`` re-runs).

    recorded_snapshot(paths, selection)     the snapshot the run trained on: found in
                                            ``paths.snapshot_dir``, or rebuilt from the
                                            store's commits; :class:`Unavailable`
                                            naming ``dvc pull`` when the store lacks them
    reproducible(frozen, run_metrics)       whether the record promises the same weights
                                            bit for bit, and why (not)
    carried_target(package)                 ``model.net._target_`` of the class the
                                            package carries, under names of its own
    rerun_config(frozen, cfg, scratch, ...) the frozen config to train in ``scratch``:
                                            every output there, its MLflow run in the
                                            experiment ``verify.experiment``, not resumed
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.tracking import Tag
from dlforge.data.snapshot import Snapshot, SnapshotStore, SplitRule
from dlforge.data.store import Store
from dlforge.registry.attest import Unavailable
from dlforge.train.cost import METRIC_PREFIX

# Keys of a frozen config that belong to its own run, not to what is trained.
RUN_KEYS = ("run_id", "config_hash", "resume_from", "snapshot", "snapshot_path", "hydra",
            "record")
GPU_SECONDS = METRIC_PREFIX + "gpu_seconds"  # recorded by a run that trained on GPUs
PULL = "Fix: run `dvc pull` (the project's data/ as DVC tracks it), then verify again"


@dataclass(frozen=True)
class Selection:
    """The recorded snapshot: its dataset, version id, commit ids, split rule and the
    commit tags it was selected with."""

    dataset: str
    version: str
    commits: tuple[int, ...]
    split: dict
    tags: dict


def recorded_snapshot(paths, selection: Selection) -> Snapshot:
    """The snapshot ``selection`` names, from ``paths.snapshot_dir``; rebuilt there from
    the store (``paths.store_dir``) when it is absent or damaged.

    Raises:
        Unavailable: when the store lacks the commits (naming them and ``dvc pull``), or
            its commits give another snapshot than the recorded one.
    """
    store = Store(paths.store_dir)
    name, version = selection.dataset, selection.version
    missing = _missing(store, name, selection.commits)
    if missing:
        try:  # without the commits, a sealed snapshot already there still does
            return Snapshot.open(Path(paths.snapshot_dir) / name / version, store=store.root)
        except DlforgeError:
            raise Unavailable(f"snapshot {name}/{version} is not in {paths.snapshot_dir}, and "
                              f"the store {paths.store_dir} lacks {missing} to build it "
                              f"from. {PULL}") from None
    try:
        ref = SnapshotStore(paths.snapshot_dir, store).build(
            name, upto=max(selection.commits), tags=selection.tags,
            split=SplitRule(**selection.split))
    except DlforgeError as err:
        raise Unavailable(f"snapshot {name}/{version} cannot be rebuilt from the store: "
                          f"{str(err).split(' Fix: ')[0]}. {PULL}") from None
    if ref.version != version:
        raise Unavailable(f"commits {list(selection.commits)} of dataset {name} in the store "
                          f"{paths.store_dir} give snapshot {ref.version}, not {version}, "
                          f"which the model was trained on. {PULL}")
    return Snapshot.open(ref.path, store=store.root)


def _missing(store: Store, name: str, commits: tuple[int, ...]) -> str:
    """What the store lacks of ``commits`` of dataset ``name``, in words ("" nothing)."""
    if not commits:
        return "the record of its commits"
    try:
        have = {c.id for c in store.commits(name)}
    except NotFound:
        return f"dataset {name} (commits {', '.join(map(str, commits))})"
    lacking = [str(c) for c in commits if c not in have]
    return f"commits {', '.join(lacking)} of dataset {name}" if lacking else ""


def selection_of(frozen: dict, run_tags: dict, manifest: dict | None) -> Selection:
    """The recorded snapshot, from the snapshot manifest logged with a registered model
    when there is one, else from the training run's tags and the frozen config."""
    select = (frozen.get("dataset") or {}).get("select") or {}
    if manifest:
        commits = [c["id"] for c in manifest["commits"]]
        return Selection(manifest["dataset"], manifest["version"], tuple(commits),
                         manifest["split"], _str_tags(select.get("tags")))
    commits = [int(c) for c in run_tags.get(Tag.COMMITS, "").split(",") if c.strip()]
    return Selection(run_tags.get(Tag.DATASET) or frozen["dataset"]["name"],
                     run_tags.get(Tag.SNAPSHOT) or frozen["snapshot"], tuple(commits),
                     frozen["split"], _str_tags(select.get("tags")))


def _str_tags(tags: dict | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items()}


def reproducible(frozen: dict, run_metrics: dict) -> tuple[bool, str]:
    """Whether the record promises the same weights bit for bit (one process, on CPU,
    ``trainer.deterministic``), and why (not). The device is known from the frozen
    ``trainer.accelerator``, or for ``auto`` from the run's cost (GPU seconds)."""
    from dlforge.train.launch import world_size

    trainer = frozen.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto"))
    processes = world_size(OmegaConf.create(trainer))
    if not trainer.get("deterministic"):
        return False, "it was trained with trainer.deterministic=false"
    if processes > 1:
        return False, f"it was trained in {processes} processes"
    if accelerator not in ("cpu", "auto") or GPU_SECONDS in run_metrics:
        return False, "it was trained on a GPU"
    if accelerator == "auto" and not any(k.startswith(METRIC_PREFIX) for k in run_metrics):
        return False, "its run does not record the device it trained on"
    return True, "it was trained in one process on CPU with trainer.deterministic=true"


def carried_target(package: Path) -> str | None:
    """``model.net._target_`` naming the class the package carries in ``code/``, imported
    from there under names of its own (:mod:`dlforge.models.carried`), so that the re-run
    trains that code and not the project's current one; None for a class of an installed
    distribution (dlforge's own models)."""
    from dlforge.models.package import verify_package
    from dlforge.models.source import import_class

    spec = json.loads((package / "model.json").read_text())
    if "code" not in (spec.get("source") or {}):
        return None
    built = import_class(package, spec, verify_package(package))
    return f"{built.__module__}.{built.__qualname__}"


def rerun_config(frozen: dict, cfg: DictConfig, scratch: Path, run_tags: dict,
                 overrides: dict) -> DictConfig:
    """The frozen training config, to train again in ``scratch``.

    Every folder the training writes (``paths.exp_dir``, ``train_dir``, its checkpoints,
    ...) moves under ``scratch``; the data folders and the tracking store are this
    project's (``cfg``); the run goes to the MLflow experiment ``verify.experiment`` with
    ``run_tags``; the run is never resumed. ``overrides``: dotted keys set last.
    """
    from dlforge.core.secrets import freeze

    recorded = frozen["paths"]
    exp_dir = scratch / "outputs" / str(frozen["experiment_name"])
    moved = {"output_dir": scratch / "outputs", "exp_dir": exp_dir,
             "train_dir": exp_dir / "train", "sweep_dir": exp_dir / "sweep",
             "eval_dir": exp_dir / "eval"}
    prefixes = [(str(recorded["train_dir"]), str(moved["train_dir"])),
                (str(recorded["exp_dir"]), str(exp_dir))]
    body = {k: _moved(v, prefixes) for k, v in frozen.items()
            if k not in (*RUN_KEYS, "paths", "tracking")}
    own = freeze(cfg)  # resolved; a password stays the interpolation that gives it
    body["paths"] = {**own["paths"], **{k: str(v) for k, v in moved.items()}}
    body["tracking"] = {**own["tracking"], "experiment": cfg.verify.experiment,
                        "run_name": None, "tags": run_tags}
    body.update(resume=False, launch=True)
    rerun = OmegaConf.create(body)
    for key, value in overrides.items():
        OmegaConf.update(rerun, key, value, merge=False)
    return rerun


def _moved(value, prefixes: list[tuple[str, str]]):
    """``value`` with a path under a recorded folder moved to its scratch folder."""
    if isinstance(value, dict):
        return {k: _moved(v, prefixes) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, prefixes) for v in value]
    if isinstance(value, str):
        for old, new in prefixes:
            if value == old or value.startswith(old.rstrip("/") + "/"):
                return new + value[len(old.rstrip("/")):]
    return value
