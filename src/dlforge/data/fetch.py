"""``dlforge data fetch``: a self-contained copy of a snapshot, every byte checked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json
from dlforge.data.build import READ_ROWS, SPLITS, check_file, iter_split
from dlforge.data.objects import ObjectReader
from dlforge.data.seal import MARKS, check_sealed


def materialise(folder: Path, manifest: dict, out: Path,
                store_root: Path | None = None) -> list[Path]:
    """A self-contained copy of a snapshot in ``out``, every file checked on the way
    against the manifest and the seal of ``store_root`` (the project's store; default: the
    one the manifest names).

    The split files and the manifest are copied; the copy names no store and claims no
    seal (it is no cache of one), so it opens as an unsealed snapshot. An image snapshot
    also gets the images it refers to, content-addressed in ``out/objects/`` (its manifest
    points there, so the copy opens as a snapshot without the store), and once more as
    ``images/<split>/<label>/`` files (hard links to the same bytes where the file
    system allows), for tools that want files rather than parquet.
    """
    if store_root is not None:
        check_sealed(folder, manifest, store_root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name in manifest["files"]:
        check_file(folder / file_name, manifest, store_root)
        written.append(Path(shutil.copy2(folder / file_name, out / file_name)))
    copy = {k: v for k, v in manifest.items() if k not in MARKS}
    if manifest.get("objects"):
        reader = ObjectReader(folder / manifest["objects"], manifest["dataset"])
        written += _write_images(out, reader)
        copy["objects"] = "objects"
    write_json(out / "manifest.json", copy)
    written.append(out / "manifest.json")
    return written


def _write_images(out: Path, reader) -> list[Path]:
    written = []
    for split_name in SPLITS:
        columns = ["example_id", "image_digest", "format", "labels"]
        for batch in iter_split(out / f"{split_name}.parquet", READ_ROWS, columns):
            for row in batch.to_pylist():
                digest = row["image_digest"]
                stored = out / "objects" / digest[:2] / digest[2:]
                if not stored.is_file():
                    stored.parent.mkdir(parents=True, exist_ok=True)
                    stored.write_bytes(reader.read(digest, row["example_id"]))
                    written.append(stored)
                suffix = "." + (row["format"] or "bin").lower().replace("jpeg", "jpg")
                path = out / "images" / split_name / row["labels"][0] / (digest[:16] + suffix)
                if not path.resolve().is_relative_to(out.resolve()):  # labels are validated
                    raise DlforgeError(f"label {row['labels'][0]!r} would write outside {out}")
                path.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(stored, path)
                written.append(path)
    return written


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # another file system, or links unsupported
        shutil.copyfile(source, target)
