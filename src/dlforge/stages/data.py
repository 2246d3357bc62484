"""The data stages of the workflow: ``dlforge ingest`` and ``dlforge snapshot``.

Each is a plain function of the composed config that returns its summary and
writes it under ``paths.exp_dir`` for Snakemake/DVC to track, with its run record
(:mod:`dlforge.stages.record`). The summaries hold no timestamps, so an unchanged
result leaves the file unchanged.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.data.snapshot import SnapshotStore, SplitRule
from dlforge.data.store import Store
from dlforge.data.supersede import check_mode
from dlforge.monitor.retrain import ensure_marker
from dlforge.stages.record import stage_record

log = logging.getLogger(__name__)

SOURCE_KEYS = ("path", "build", "message", "tags", "mode")  # of an entry of dataset.sources


def ingest(cfg: DictConfig) -> dict:
    """Commit each of ``dataset.sources`` in order, when the store does not hold it as it
    is now (idempotent); a source with a ``build`` target is built first when it is not
    there (``dlforge.data.sources``).

    A changed source supersedes its earlier commits (``mode: replace``, the default) or
    adds to them (``mode: append``): :mod:`dlforge.data.supersede`. The summary gives,
    per source, its commit, what that commit supersedes and the examples it added and
    removed (null for commits recorded before deltas were).
    """
    layout = ExperimentLayout.from_config(cfg)
    store = Store(cfg.paths.store_dir)
    name, type_name = cfg.dataset.name, cfg.dataset.type
    sources = []
    for index, source in enumerate(declared_sources(cfg)):
        if source.get("build") and not Path(source["path"]).exists():
            from hydra.utils import instantiate

            log.info("building %s <dataset.sources.build>", source["path"])
            instantiate(source["build"], out=source["path"])
        commit, created = store.ingest(name, type_name, source["path"], source.get("message", ""),
                                       _str_tags(source.get("tags")), source["mode"])
        _log_source(store, commit, source["path"], created, index)
        delta = commit.delta or {}
        sources.append({"path": source["path"], "commit": commit.id, "digest": commit.digest,
                        "rows": commit.rows, "supersedes": commit.supersedes,
                        "added": delta.get("added"), "removed": delta.get("removed")})
    ensure_marker(layout.retrain_marker)  # training's input; `dlforge monitor` raises requests
    summary = {"dataset": name, "type": type_name, "sources": sources,
               "commits": [c.id for c in store.commits(name)],
               "record": stage_record(cfg, "ingest")}
    write_json_atomic(layout.ingest_summary, summary)
    return summary


def declared_sources(cfg: DictConfig) -> list[dict]:
    """``dataset.sources`` as plain dicts, each with a path, only known keys and a valid
    ``mode`` (default ``replace``), checked before anything is built or committed."""
    sources = OmegaConf.to_container(cfg.dataset.sources, resolve=True)
    for index, source in enumerate(sources):
        key = f"dataset.sources[{index}]"
        if not isinstance(source, dict) or not source.get("path"):
            raise DlforgeError(f"{key} has no path. Fix: write each source as "
                               "`- path: ${paths.raw_dir}/FILE` (with message, tags, mode)")
        for field in source:
            if field not in SOURCE_KEYS:
                near = difflib.get_close_matches(field, SOURCE_KEYS, n=1)
                fix = f"rename it to {near[0]}" if near else "remove it"
                raise DlforgeError(f"{key}.{field} is not a key of a dataset source (keys: "
                                   f"{', '.join(SOURCE_KEYS)}). Fix: {fix}")
        source["mode"] = check_mode(source.get("mode", "replace"), f"{key}.mode")
    return sources


def _log_source(store: Store, commit, path: str, created: bool, index: int) -> None:
    where = f"<dataset.sources[{index}]>"
    if not created:
        log.info("%s: already commit %d of dataset %s %s", path, commit.id, commit.dataset,
                 where)
        return
    delta = commit.delta
    if commit.supersedes:
        old = [store.commit_record(commit.dataset, i) for i in commit.supersedes]
        log.info("%s: %d rows, commit %d supersedes commit %s (%d rows): +%d -%d examples %s",
                 path, commit.rows, commit.id, ", ".join(str(c.id) for c in old),
                 sum(c.rows for c in old), delta["added"], delta["removed"], where)
    else:
        log.info("%s: %d rows, commit %d of dataset %s: +%d examples %s", path, commit.rows,
                 commit.id, commit.dataset, delta["added"], where)


def snapshot(cfg: DictConfig) -> dict:
    """Build (or reuse) the snapshot of ``dataset.select`` with the ``split`` rule."""
    layout = ExperimentLayout.from_config(cfg)
    snapshots = SnapshotStore(cfg.paths.snapshot_dir, Store(cfg.paths.store_dir))
    select = OmegaConf.to_container(cfg.dataset.select, resolve=True)
    ref = snapshots.build(cfg.dataset.name, upto=select.get("upto"),
                          tags=_str_tags(select.get("tags")), split=split_rule(cfg.split))
    manifest = ref.manifest
    summary = {"dataset": ref.dataset, "version": ref.version, "path": str(ref.path),
               "commits": [c["id"] for c in manifest["commits"]],
               "labels": len(manifest["labels"]), "counts": manifest["counts"],
               "label_counts": _label_counts(manifest), "record": stage_record(cfg, "snapshot")}
    write_json_atomic(layout.snapshot_summary, summary)
    return summary


def _label_counts(manifest: dict) -> dict[str, int]:
    """Examples per label over every split (what a review shows moving)."""
    total: dict[str, int] = {}
    for stats in manifest.get("stats", {}).values():
        for label, count in stats.get("label_counts", {}).items():
            total[label] = total.get(label, 0) + count
    return dict(sorted(total.items()))


def _str_tags(tags: dict | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items()}


def split_rule(cfg: DictConfig) -> SplitRule:
    return SplitRule(**OmegaConf.to_container(cfg, resolve=True))
