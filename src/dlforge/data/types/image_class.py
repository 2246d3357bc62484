"""``image_class``: images with one class label each (the reference system's IMAGE_CLASS).

A source is either a folder with one sub-folder per class (``cat/001.png``) or a
CSV manifest ``path,label`` whose paths are relative to the manifest. Every
image must decode and hold at most :data:`~dlforge.core.limits.MAX_IMAGE_PIXELS`
pixels (read from its header, before decoding: the limit serving applies); its
bytes are stored once, content-addressed, and the committed table refers to
them by digest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dlforge.core.errors import InvalidInput
from dlforge.core.limits import MAX_IMAGE_PIXELS
from dlforge.data.digest import table_digest
from dlforge.data.stats import Feature, Statistics
from dlforge.data.types.base import DatasetType, Staged
from dlforge.data.validation import fullmatch, validate

STORED = pa.schema([
    ("image", pa.string()),    # sha256 of the image bytes (a blob object)
    ("labels", pa.string()),
    ("path", pa.string()),     # where it came from, relative to the source
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("mode", pa.string()),     # PIL mode: L, RGB, ...
    ("format", pa.string()),   # PNG, JPEG, ...
])
HEADER_WORDS = ({"path", "image", "file", "filename"}, {"label", "labels", "class", "target"})
# One class per image, usable as a folder name (fetch writes images/<split>/<label>/).
LABEL = r"(?!\.\.?\Z)[^;/\\\x00]+"
# Control characters (C0, DEL, C1): a line break or tab in a label would change the
# lines of every listing and file that names it.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FIXES = {"labels": "give each image exactly one class label, without ';', '/' or '\\', "
                   "and not '.' or '..'",
         "path": "give each row an image path",
         "outside": "name images by paths relative to the manifest's folder and inside it "
                    "(no absolute paths, no '..' out of it, no links out of it): copy the "
                    "images there, or move the manifest up to a folder that holds them",
         "control": "name the class without line breaks, tabs or other control characters",
         "pixels": f"downscale the image to at most {MAX_IMAGE_PIXELS} pixels (e.g. within "
                   "4096x4096), or remove it"}


class ImageClass(DatasetType):
    name = "image_class"
    input_column = "image"
    hub_task = "image-classification"
    description = "a folder per class, or a CSV manifest path,label"
    content_columns = ("image", "labels")
    blob_column = "image"
    input_digest_column = "image_digest"

    def schema(self):
        import pandera.pandas as pda

        return pda.DataFrameSchema(
            {
                "image": pda.Column(str, fullmatch(r"[0-9a-f]{64}")),
                "labels": pda.Column(str, fullmatch(LABEL, error="invalid label")),
                "path": pda.Column(str, pda.Check.str_length(min_value=1)),
                "width": pda.Column("int32", pda.Check.gt(0)),
                "height": pda.Column("int32", pda.Check.gt(0)),
                "mode": pda.Column(str),
                "format": pda.Column(str),
            },
            strict=True,
            ordered=True,
            name=self.name,
        )

    def features(self) -> dict[str, Feature]:
        return {"width": lambda t: t.column("width"), "height": lambda t: t.column("height")}

    def example_keys(self, table: pa.Table) -> pa.Array:
        return table.column("image").combine_chunks()

    def snapshot_columns(self, table: pa.Table, objects: Path) -> pa.Table:
        """Refer to each image by its digest: readers take the bytes from the store's
        objects (:class:`~dlforge.data.objects.ObjectReader`), never from a copy."""
        return table.drop_columns(["labels", "image"]).append_column(
            self.input_digest_column, table.column("image"))

    def stage(self, source: Path, staging: Path) -> Staged:
        if source.is_dir():
            entries, first_row, notes = _folder_entries(source)
        elif source.is_file():
            entries, first_row, notes = _manifest_entries(source)
        else:
            raise InvalidInput(source, "no such file or folder",
                               "give a folder with one sub-folder per class, or a CSV path,label")
        if not entries:
            raise InvalidInput(source, "no images found",
                               "put images in one sub-folder per class (e.g. cat/001.png)")
        blobs: dict[str, Path] = {}
        records = [_read_image(source, row, path, label, staging, blobs)
                   for row, path, label in entries]
        table = pa.Table.from_pylist(records, schema=STORED)
        validate(self.schema(), table, source, first_row, FIXES)
        out = staging / "table.parquet"
        pq.write_table(table, out)
        stats = Statistics(self.features())
        stats.update(table.set_column(1, "labels", self.label_lists(table)))
        listing = "\n".join(f"{r['path']}\0{r['image']}\0{r['labels']}" for r in records)
        return Staged(
            table=out,
            digest=table_digest(table, self.content_columns),
            rows=table.num_rows,
            stats=stats.result(),
            source_digest=hashlib.sha256(listing.encode()).hexdigest(),
            blobs=blobs,
            notes=notes,
        )


def _folder_entries(root: Path) -> tuple[list, int, list[str]]:
    """``(None, path, label)`` per image file in ``root/<label>/`` (hidden files skipped).

    A symbolic link (to a file or a class folder) may point anywhere inside ``root``,
    never outside it.
    """
    entries, notes = [], []
    for entry in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if entry.is_file():
            notes.append(f"{entry}: not in a class folder; it was ignored")
            continue
        if CONTROL.search(entry.name):
            raise InvalidInput(root, f"the name of class folder {entry.name!r} holds a control "
                                     "character", f"rename the folder: {FIXES['control']}")
        for path in sorted(entry.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                problem = _outside(root, path)
                if problem:
                    raise InvalidInput(path, problem, "copy the image into the folder instead "
                                                      "of linking to it, or remove the link")
                entries.append((None, path, entry.name))
    return entries, 1, notes


def _manifest_entries(manifest: Path) -> tuple[list, int, list[str]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as err:
        raise InvalidInput(manifest, f"not valid UTF-8 ({err.reason})",
                           "save it as UTF-8") from None
    first_row, notes = 1, []
    if rows and len(rows[0]) == 2 and all(
            c.strip().lower() in words for c, words in zip(rows[0], HEADER_WORDS, strict=True)):
        notes.append(f"{manifest}: row 1 is a header ({','.join(rows[0])}); it was skipped")
        rows, first_row = rows[1:], 2
    entries = []
    for row, fields in enumerate(rows, start=first_row):
        if not fields:  # a blank line
            continue
        if len(fields) != 2:
            raise InvalidInput(manifest, f"{len(fields)} column(s) where 2 are expected",
                               "each row must be 'path,label'", row=row)
        path, label = (f.strip() for f in fields)
        if CONTROL.search(label):
            raise InvalidInput(manifest, f"label {label!r} holds a control character",
                               FIXES["control"], row=row, column="label")
        if not path:
            raise InvalidInput(manifest, "empty path", FIXES["path"], row=row, column="path")
        problem = _outside(manifest.parent, manifest.parent / path)
        if problem:
            raise InvalidInput(manifest, f"path {path!r}: {problem}", FIXES["outside"], row=row,
                               column="path")
        entries.append((row, manifest.parent / path, label))
    return entries, first_row, notes


def _outside(base: Path, path: Path) -> str | None:
    """Why ``path`` is not inside folder ``base`` (None: it is, also once symbolic links
    are followed): sources may only name files under their own folder."""
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(base)):  # abspath: no '..'
        return f"it leads outside {base}"
    target = path.resolve()
    if not target.is_relative_to(base.resolve()):
        return f"it is a symbolic link to {target}, outside {base}"
    return None


def _read_image(source, row, path: Path, label: str, staging: Path, blobs: dict) -> dict:
    where = source if row is not None else path
    if not path.is_file():
        raise InvalidInput(where, f"image {path} does not exist", "fix the path or add the file",
                           row=row, column="path")
    data = path.read_bytes()  # read once: the blob is exactly what was decoded and hashed
    size, mode, fmt = _decode(data, where, path, row)
    digest = hashlib.sha256(data).hexdigest()
    if digest not in blobs:
        blobs[digest] = staging / "blobs" / digest
        blobs[digest].parent.mkdir(exist_ok=True)
        blobs[digest].write_bytes(data)
    base = source if source.is_dir() else source.parent
    relative = path.relative_to(base)  # the entries checked that it is inside
    return {"image": digest, "labels": label.strip(), "path": str(relative),
            "width": size[0], "height": size[1], "mode": mode, "format": fmt}


def _decode(data: bytes, where: Path, path: Path, row: int | None) -> tuple[tuple, str, str]:
    """``(size, mode, format)`` of the image file ``data`` (read from ``path``): its size is
    read from the header, and only an image within :data:`MAX_IMAGE_PIXELS` is decoded."""
    from PIL import Image, UnidentifiedImageError

    size = None  # None: PIL refuses to open it, its header claims far more pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is lower
            with Image.open(io.BytesIO(data)) as image:
                size, mode, fmt = image.size, image.mode, image.format or ""
                if size[0] * size[1] <= MAX_IMAGE_PIXELS:
                    image.load()  # decodes every pixel; verify() alone misses truncated files
    except Image.DecompressionBombError:
        pass
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInput(where, f"{path} does not decode as an image ({err})",
                           "replace or remove the file", row=row) from None
    if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
        pixels = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels, " if size else "far "
        raise InvalidInput(where, f"{path} has {pixels}more than {MAX_IMAGE_PIXELS} pixels (the "
                           "largest image serving takes, max_image_pixels)", FIXES["pixels"],
                           row=row)
    return size, mode, fmt
