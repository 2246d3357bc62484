"""Seals: the store's own record of the split files each snapshot was built as.

A snapshot folder is a cache of what the store's commits give, and its manifest
lists the sha256 of each split; but whoever rewrites a split can rewrite that
manifest too, and the version id hashes only the selection (the commits), not
the files. So when a snapshot is published, the digests of the files just
built from the store are recorded in the store, keyed by the version id::

    <store>/.seals/<dataset>/<version>.json

Why a record in the store, and not split files derived from the version id
alone: parquet bytes depend on the writer (pyarrow's version), and a digest of
the logical rows could only be checked by rebuilding the snapshot. The store is
the authority, the snapshot folder a cache: a split is used only when its bytes
are the ones sealed for its version.

A record holds what a reader takes from the manifest besides the files (the
label vocabulary, ``multi_label``) and, per writer (dlforge's and pyarrow's
versions), the sha256 and rows of each split. Entries are only ever added: a
rebuild by another writer adds its own, a rebuild by the same writer must give
the same bytes or is refused (builds are deterministic). Records are written
under the dataset's store lock with a rename, before the snapshot is published:
a process killed at any point leaves the old record or the new one, and never a
published snapshot without its seal.

Every reader that knows the project's store (training, the sweep, evaluation,
registration, monitoring, ``dlforge data fetch``, ``load_snapshot``: from
``paths.store_dir``) opens a snapshot with it, ``Snapshot.open(path, store=...)``,
and the seal is looked up *there*, by the manifest's dataset and version, which
must be the folder's own (``<dataset>/<version>``). Whatever the manifest says
about where its store is (``store``) is then ignored: rewriting a split, its
sha256 and that key gets the split refused, as does a manifest whose labels are
not the sealed ones. Only a reader given nothing but a folder (a notebook's
``Snapshot.open(path)``) finds the store through the manifest (``store``: a path
relative to the folder, like an image snapshot's ``objects``); ``dlforge data
verify`` and ``dlforge snapshot`` also check that the manifest leads there.

The seals sit beside the datasets, not inside ``<store>/<dataset>`` (the ingest
stage's DVC output, which a snapshot must not change): they travel with DVC
when the store folder is tracked as a whole. Manifests written by a sealing
dlforge say so (``"sealed": true``, and their ``store``); one of those without
a record in the store it is read with is refused (the record was lost, or the
folder came from another store), naming the seal and ``dlforge data snapshot``,
which rebuilds and seals it. A snapshot without a record whose manifest has
neither key (built before seals) is *unsealed*: it opens with a warning, checked
against its manifest only, and the next ``dlforge snapshot`` of it rebuilds it
from the store, publishes the rebuild and seals it.

The trade-off: a manifest is only a file, so whoever rewrites a split of a
snapshot that was never sealed, and strips those two keys, makes it look like
one from before seals: it opens with that warning. A snapshot the store sealed
cannot be passed off so to a reader that knows the store (its seal is found by
version, not through the manifest). What remains is that ``dlforge snapshot``
never reuses an unsealed snapshot: it rebuilds it. Under ``dvc repro`` the
snapshot stage re-runs when the snapshot folder (one of its outputs) changes,
so training never reads such a folder without that rebuild; Snakemake re-runs
it only when its inputs change (the ingest summary, the stage's config
section), so a snapshot changed after the stage ran is read with the warning.
Refusing every unsealed snapshot would close that gap at the price of refusing
every snapshot built before seals.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from dlforge import __version__
from dlforge.core.errors import DlforgeError
from dlforge.core.io import fsync_dir, read_json, staging_dir, write_json
from dlforge.data.store import Store

log = logging.getLogger(__name__)

SEALS = ".seals"
SEALED = ("dataset", "type", "labels", "multi_label")  # manifest keys a reader relies on
MARKS = ("sealed", "store")  # manifest keys written only by a dlforge that seals snapshots
VERSION = re.compile(r"[0-9a-f]{12}")
_warned: set[str] = set()  # unsealed snapshot folders already logged in this process


def writer() -> str:
    """Who writes split files in this process: their bytes depend on these versions."""
    import pyarrow as pa

    return f"dlforge {__version__}, pyarrow {pa.__version__}"


def seal_path(store_root: Path, dataset: str, version: str) -> Path:
    """Where the store seals snapshot ``version`` of ``dataset``."""
    folder = Store(store_root).path(dataset)  # validates the name
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise DlforgeError(f"{version!r} is not a snapshot version id (12 hex digits). Fix: "
                           "build the snapshot again with `dlforge data snapshot "
                           f"{dataset}`")
    return folder.parent / SEALS / dataset / f"{version}.json"


def read_seal(store_root: Path, dataset: str, version: str) -> dict | None:
    """The store's seal of a snapshot version (None: it has none: unsealed)."""
    path = seal_path(store_root, dataset, version)
    if not path.exists():
        return None
    try:
        record = read_json(path)
        if not all(isinstance(e.get("sha256"), str) and isinstance(e.get("rows"), int)
                   for build in record["builds"].values() for e in build.values()):
            raise ValueError("a split without its sha256 and rows")
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
        raise DlforgeError(f"the seal {path} is unreadable ({err}). Fix: restore the store "
                           "from its DVC remote (`dvc pull`), or delete the seal and build the "
                           f"snapshot again with `dlforge data snapshot {dataset}`") from None
    return record


def seal_snapshot(store: Store, manifest: dict) -> Path:
    """Seal the files of a snapshot just built from ``store`` (see the module docstring).

    Raises:
        DlforgeError: when the store has sealed other values for this version: another
            vocabulary, or other bytes from the same writer.
    """
    name, version = manifest["dataset"], manifest["version"]
    path = seal_path(store.root, name, version)
    files = {f: {"sha256": e["sha256"], "rows": e["rows"]} for f, e in manifest["files"].items()}
    who = writer()
    with store.locked(name):
        record = read_seal(store.root, name, version)
        if record is None:
            record = {"version": version, **{k: manifest[k] for k in SEALED}, "builds": {}}
        differs = meaning_problem(record, manifest)
        if not differs and record["builds"].get(who, files) != files:
            changed = [f for f in files if record["builds"][who].get(f) != files[f]]
            differs = f"this writer ({who}) sealed other bytes for {', '.join(changed)}"
        if differs:
            raise DlforgeError(f"snapshot {name}/{version} does not match its seal {path}: "
                               f"{differs}. Fix: run `dlforge data verify`; if the store is "
                               "intact, delete the seal and build the snapshot again")
        if record["builds"].get(who) == files:
            return path
        record["builds"][who] = files
        with staging_dir(store.root) as stage:
            write_json(stage / "seal.json", record)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / "seal.json", path)
            fsync_dir(path.parent)
    log.info("snapshot %s/%s sealed in %s", name, version, path)
    return path


def meaning_problem(record: dict, manifest: dict) -> str | None:
    """How the manifest's labels, type or ``multi_label`` differ from the seal (None: not)."""
    for key in SEALED:
        if manifest.get(key) != record.get(key):
            return (f"its manifest's {key} ({_short(manifest.get(key))}) is not the sealed one "
                    f"({_short(record.get(key))})")
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def file_problem(record: dict, manifest: dict, file_name: str, sha256: str) -> str | None:
    """Why split ``file_name`` (whose bytes have ``sha256``) is not a sealed one (None: it is)."""
    rows = manifest.get("files", {}).get(file_name, {}).get("rows")
    sealed = [b[file_name] for b in record["builds"].values() if file_name in b]
    if any(s["sha256"] == sha256 and s["rows"] == rows for s in sealed):
        return None
    expected = " or ".join(f"sha256 {s['sha256']} ({s['rows']} rows)" for s in sealed)
    return (f"does not match the digest the store sealed for it ({expected or 'none'}; it has "
            f"sha256 {sha256}, {rows} rows)")


def manifest_store(folder: Path, manifest: dict) -> Path | None:
    """The store a snapshot's manifest names (relative to its folder), if any: ``store``,
    or, in an image snapshot from before seals, the one its ``objects`` are in."""
    where = manifest.get("store")
    if isinstance(where, str):
        return Path(os.path.normpath(folder / where))
    objects = manifest.get("objects")
    return Path(os.path.normpath(folder / objects)).parents[1] if isinstance(objects, str) else None


def store_mismatch(folder: Path, manifest: dict, store_root: Path) -> str | None:
    """How a snapshot's manifest fails to lead its readers to the seal of ``store_root``
    (None: it names that store, or the snapshot is unsealed there)."""
    named = manifest_store(folder, manifest)
    if named is not None and named.resolve() == Path(store_root).resolve():
        return None
    if named is None and read_seal(store_root, manifest.get("dataset"),
                                   manifest.get("version")) is None:
        return None
    return (f"its manifest leads readers to the seal in {named or 'no store'}, not in the "
            f"store {store_root}")


def claims_seal(manifest: dict) -> bool:
    """Whether a dlforge that seals snapshots wrote ``manifest`` (see the module docstring)."""
    return any(key in manifest for key in MARKS)


def missing_seal(manifest: dict, store_root: Path | None) -> str:
    """Why a manifest that claims a seal finds none in ``store_root`` (None: it names none)."""
    if store_root is None:
        return "names no store that holds its seal, though its manifest says it was sealed"
    path = seal_path(store_root, manifest.get("dataset"), manifest.get("version"))
    return (f"has no seal in the store {store_root} (no {path}), though its manifest says it "
            "was sealed")


def check_sealed(folder: Path, manifest: dict, store_root: Path) -> None:
    """Raise unless the snapshot in ``folder`` may be read with the seals of ``store_root``,
    the store its reader knows: its manifest must name the folder's own dataset and
    version and give the sealed labels, and the store must hold its seal: a snapshot from
    before seals (or a copy stripped of its marks) is refused with the command that
    rebuilds and seals it.
    """
    name, version = manifest.get("dataset"), manifest.get("version")
    rebuild = (f"Fix: delete {folder} and build it again from the store with `dlforge data "
               f"snapshot {folder.parent.name}` and the same --upto/--tag (or `dlforge "
               "snapshot experiment=...`, which also replaces it)")
    if (name, version) != (folder.parent.name, folder.name):
        raise DlforgeError(f"{folder / 'manifest.json'} names snapshot {name}/{version}, not "
                           f"{folder.parent.name}/{folder.name}: the snapshot is not used. "
                           f"{rebuild}")
    record = read_seal(store_root, name, version)
    if record is None and claims_seal(manifest):
        raise DlforgeError(f"snapshot {folder} {missing_seal(manifest, store_root)}: it is "
                           f"not used. {rebuild}")
    if record is None:  # from before seals, or a copy made to look so: never read unchecked
        raise DlforgeError(f"snapshot {folder} has no seal in the store {store_root}, so its "
                           "splits cannot be checked against what the store built: it is not "
                           f"used. Fix: run `dlforge data snapshot {name}` (or `dlforge "
                           "snapshot experiment=...`): it rebuilds the snapshot from the store "
                           "and seals it")
    if problem := meaning_problem(record, manifest):
        raise DlforgeError(f"snapshot {folder}: {problem} (seal: "
                           f"{seal_path(store_root, name, version)}): it was changed after it "
                           f"was built from the store and is not used. {rebuild}")


def warn_unsealed(folder: Path, name: str, store_root: Path | None) -> None:
    """Log, once per folder in a process, that a snapshot is read without a seal."""
    if str(folder) in _warned:
        return
    _warned.add(str(folder))
    log.warning("snapshot %s has no seal in its store (%s): it was built before seals, "
                "or the store came without them, so its splits are checked against "
                "its manifest only. Fix: run `dlforge data snapshot %s` (or `dlforge "
                "snapshot experiment=...`): it rebuilds the snapshot from the store "
                "and seals it", folder, store_root or "its manifest names none", name)


def seal_check(path: Path, manifest: dict, sha256: str,
               store_root: Path | None = None) -> str | None:
    """Why split file ``path`` (whose bytes have ``sha256``) is not the one the store sealed
    (None: it is, or the snapshot is unsealed and its manifest claims no seal).

    ``store_root``: the store to ask (its reader's, from ``paths.store_dir``); without
    it, the one the manifest names, and an unsealed snapshot is then logged once, as a
    warning (a reader given the store warns when it opens the snapshot,
    :func:`check_sealed`).
    """
    given = store_root is not None
    store_root = store_root if given else manifest_store(path.parent, manifest)
    name, version = manifest.get("dataset"), manifest.get("version")
    record = read_seal(store_root, name, version) if store_root is not None else None
    if record is None and claims_seal(manifest):
        return missing_seal(manifest, store_root)
    if record is None:
        if not given:
            warn_unsealed(path.parent, name, store_root)
        return None
    problem = meaning_problem(record, manifest) or file_problem(record, manifest, path.name,
                                                                sha256)
    return problem and f"{problem}; seal: {seal_path(store_root, name, version)}"
