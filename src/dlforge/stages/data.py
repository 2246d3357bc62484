"""The data stages of the workflow: ``dlforge ingest`` and ``dlforge snapshot``.

Each is a plain function of the composed config that returns its summary and
writes it under ``paths.exp_dir`` for Snakemake/DVC to track. The summaries
hold no timestamps, so an unchanged result leaves the file unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.data.snapshot import SnapshotStore, SplitRule
from dlforge.data.store import Store
from dlforge.monitor.retrain import ensure_marker

log = logging.getLogger(__name__)


def ingest(cfg: DictConfig) -> dict:
    """Commit each of ``dataset.sources`` once, in order (idempotent); a source with a
    ``build`` target is built first when it is not there (``dlforge.data.sources``)."""
    layout = ExperimentLayout.from_config(cfg)
    store = Store(cfg.paths.store_dir)
    name, type_name = cfg.dataset.name, cfg.dataset.type
    sources = []
    for source in OmegaConf.to_container(cfg.dataset.sources, resolve=True):
        if source.get("build") and not Path(source["path"]).exists():
            from hydra.utils import instantiate

            log.info("building %s <dataset.sources.build>", source["path"])
            instantiate(source["build"], out=source["path"])
        commit, created = store.ingest(name, type_name, source["path"], source.get("message", ""),
                                       _str_tags(source.get("tags")))
        log.info("%s: %s commit %d of dataset %s <dataset.sources>", source["path"],
                 "created" if created else "already", commit.id, name)
        sources.append({"path": source["path"], "commit": commit.id, "digest": commit.digest,
                        "rows": commit.rows})
    ensure_marker(layout.retrain_marker)  # training's input; `dlforge monitor` raises requests
    summary = {"dataset": name, "type": type_name, "sources": sources,
               "commits": [c.id for c in store.commits(name)]}
    write_json_atomic(layout.ingest_summary, summary)
    return summary


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
               "label_counts": _label_counts(manifest)}
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
