"""The dataset manager: versioned datasets, validated commits, training snapshots.

For notebooks and for the trainer::

    from dlforge.data import Store, SnapshotStore

    store = Store("data/store")
    store.create("clinc150", "text_intent", "data/raw/clinc150/part-a.csv", "part A")
    snapshots = SnapshotStore("data/snapshots", store)
    ref = snapshots.build("clinc150")               # or upto=1, tags={"part": "a"}
    snap = snapshots.load("clinc150", ref.version)  # snap.train / .val / .test DataFrames

or, with the folders from ``conf/paths``::

    from dlforge.data import load_snapshot
    snap = load_snapshot("clinc150")                # the latest snapshot
"""

from __future__ import annotations

from dlforge.data.snapshot import Snapshot, SnapshotRef, SnapshotStore, SplitRule
from dlforge.data.store import Commit, Store
from dlforge.data.types import DatasetType, get_type, register

__all__ = ["Commit", "DatasetType", "Snapshot", "SnapshotRef", "SnapshotStore", "SplitRule",
           "Store", "get_type", "load_snapshot", "open_snapshots", "register"]


def open_snapshots(overrides: list[str] | tuple[str, ...] = ()) -> SnapshotStore:
    """The project's snapshot store, located by ``conf/paths`` (with Hydra overrides)."""
    from dlforge.core.config import compose

    cfg = compose("data", overrides)
    return SnapshotStore(cfg.paths.snapshot_dir, Store(cfg.paths.store_dir))


def load_snapshot(name: str, version: str | None = None,
                  overrides: list[str] | tuple[str, ...] = ()) -> Snapshot:
    """Load snapshot ``version`` of dataset ``name`` (``None``: the latest built)."""
    return open_snapshots(overrides).load(name, version)
