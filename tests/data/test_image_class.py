"""The ``image_class`` dataset type: folder and manifest sources, blobs, snapshots, fetch.

Images are tiny PNG/JPEG files made on the fly with Pillow; every bad source
must fail with a message naming the file (and row) and leave the store as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from dlforge.core.errors import InvalidInput
from dlforge.data import Snapshot, SnapshotStore, Store
from tests.helpers import tree_digest

TYPE = "image_class"


def save_image(path: Path, value: int, mode: str = "L", fmt: str = "PNG",
               size: tuple[int, int] = (8, 8)) -> Path:
    """A one-colour image of intensity ``value`` (distinct values give distinct bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, colour).save(path, fmt)
    return path


def noisy_png(path: Path) -> Path:
    """A PNG with varied pixels, so that cutting it in half really truncates pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", (32, 32))
    image.putdata([(x * 37 + x * x * 11) % 256 for x in range(32 * 32)])
    image.save(path, "PNG")
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def folder(tmp_path) -> Path:
    """cat: 2 grayscale PNGs + 1 JPEG; dog: 1 RGB PNG (12x6) + 1 grayscale PNG."""
    root = tmp_path / "pets"
    save_image(root / "cat" / "a.png", 10)
    save_image(root / "cat" / "b.png", 60)
    save_image(root / "cat" / "c.jpg", 110, fmt="JPEG")
    save_image(root / "dog" / "d.png", 160, mode="RGB", size=(12, 6))
    save_image(root / "dog" / "e.png", 210)
    return root


@pytest.fixture
def pets(store, folder) -> Store:
    """A store holding dataset ``pets`` created from ``folder``."""
    store.create("pets", TYPE, folder, "pets")
    return store


def objects(store: Store, name: str = "pets") -> dict[str, str]:
    return tree_digest(store.path(name) / "objects")


def blob_files(store: Store, name: str = "pets") -> list[Path]:
    """Stored image blobs (the objects that are not parquet tables)."""
    return [p for p in (store.path(name) / "objects").rglob("*")
            if p.is_file() and p.suffix != ".parquet"]


def snapshot_rows(snapshots: SnapshotStore, name: str = "pets") -> tuple[pd.DataFrame, Snapshot]:
    """Build the snapshot of ``name``; return all its rows (every split) and the snapshot."""
    ref = snapshots.build(name)
    snap = snapshots.load(name, ref.version)
    return pd.concat([snap.train, snap.val, snap.test], ignore_index=True), snap


# -- sources -------------------------------------------------------------------


def test_folder_per_class_commits_rows_labels_and_image_sizes(pets):
    commit = pets.commits("pets")[0]
    assert commit.rows == 5
    assert commit.stats["label_counts"] == {"cat": 3, "dog": 2}
    assert commit.stats["num_labels"] == 2
    assert commit.stats["width"]["min"] == 8 and commit.stats["width"]["max"] == 12
    assert commit.stats["height"]["min"] == 6 and commit.stats["height"]["max"] == 8
    assert commit.notes == []


def test_folder_commit_records_path_mode_and_format_of_each_image(pets, folder):
    table = pets.read_table(pets.commits("pets")[0]).to_pandas().set_index("path")
    assert sorted(table.index) == ["cat/a.png", "cat/b.png", "cat/c.jpg", "dog/d.png", "dog/e.png"]
    assert table.loc["cat/a.png", "mode"] == "L"
    assert table.loc["dog/d.png", "mode"] == "RGB"
    assert table.loc["cat/c.jpg", "format"] == "JPEG"
    assert table.loc["cat/a.png", "format"] == "PNG"
    assert (table.loc["dog/d.png", "width"], table.loc["dog/d.png", "height"]) == (12, 6)
    assert table.loc["cat/b.png", "image"] == sha((folder / "cat" / "b.png").read_bytes())


def test_manifest_paths_are_relative_to_the_manifest_not_the_cwd(store, tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    save_image(lists / "img" / "x.png", 20)
    save_image(lists / "more" / "deep" / "y.png", 220, mode="RGB")
    (lists / "m.csv").write_text("img/x.png,cat\nmore/deep/../deep/y.png,dog\n",
                                 encoding="utf-8")
    save_image(tmp_path / "elsewhere" / "img" / "x.png", 99)  # same names, relative to the cwd
    monkeypatch.chdir(tmp_path / "elsewhere")

    commit = store.create("m", TYPE, lists / "m.csv")

    assert commit.rows == 2
    assert commit.stats["label_counts"] == {"cat": 1, "dog": 1}
    assert commit.notes == []
    table = store.read_table(commit).to_pandas()
    assert list(table["path"]) == ["img/x.png", "more/deep/../deep/y.png"]
    assert list(table["labels"]) == ["cat", "dog"]
    assert table["image"][0] == sha((lists / "img" / "x.png").read_bytes())


def test_manifest_header_row_is_detected_skipped_and_reported(store, tmp_path):
    save_image(tmp_path / "x.png", 20)
    save_image(tmp_path / "y.png", 90)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.png,cat\ny.png,dog\n", encoding="utf-8")

    commit = store.create("m", TYPE, manifest)

    assert commit.rows == 2
    assert commit.stats["label_counts"] == {"cat": 1, "dog": 1}
    assert len(commit.notes) == 1
    assert "header" in commit.notes[0] and "row 1" in commit.notes[0]
    assert str(manifest) in commit.notes[0]


def test_manifest_and_folder_with_the_same_images_have_the_same_content(store, folder):
    manifest = folder / "list.csv"
    manifest.write_text("cat/a.png,cat\ncat/b.png,cat\ncat/c.jpg,cat\ndog/d.png,dog\n"
                        "dog/e.png,dog\n", encoding="utf-8")
    from_folder = store.create("f", TYPE, folder)  # list.csv is in no class folder: ignored
    from_manifest = store.create("m", TYPE, manifest)
    assert from_folder.digest == from_manifest.digest


# -- content addressing ----------------------------------------------------------


def test_committing_the_same_folder_again_stores_no_new_bytes(pets, folder):
    before = objects(pets)
    assert len(blob_files(pets)) == 5

    again = pets.commit("pets", folder, "same again")

    assert again.id == 2
    assert again.digest == pets.commits("pets")[0].digest
    assert objects(pets) == before


def test_images_shared_between_commits_are_stored_once(pets, folder, tmp_path):
    more = tmp_path / "more"
    (more / "cat").mkdir(parents=True)
    (more / "cat" / "a-copy.png").write_bytes((folder / "cat" / "a.png").read_bytes())
    (more / "dog").mkdir()
    (more / "dog" / "e.png").write_bytes((folder / "dog" / "e.png").read_bytes())
    save_image(more / "bird" / "f.png", 240)

    commit = pets.commit("pets", more)

    assert commit.rows == 3
    blobs = blob_files(pets)
    assert len(blobs) == 6  # 5 from the first commit + the one new image
    stored = {p.parent.name + p.name for p in blobs}
    assert len(stored) == len(blobs)
    assert sha((more / "bird" / "f.png").read_bytes()) in stored
    for path in blobs:  # each blob is named by the sha256 of its bytes
        assert sha(path.read_bytes()) == path.parent.name + path.name


# -- snapshots and fetch ------------------------------------------------------------


def test_snapshot_carries_decodable_images_and_consistent_label_ids(pets, snapshots, folder):
    rows, snap = snapshot_rows(snapshots)

    assert snap.labels == ["cat", "dog"]
    assert len(rows) == 5
    originals = {sha(p.read_bytes()): (p.parent.name, p.read_bytes())
                 for p in folder.rglob("*") if p.is_file()}
    read = [data for split in ("train", "val", "test") for data in snap.inputs(split)]
    assert "image" not in rows.columns  # the snapshot refers to the store's bytes
    for row, data_read in zip(rows.itertuples(), read, strict=True):
        label, data = originals[row.image_digest]
        assert data_read == data  # the very bytes that were committed
        image = decode(data_read)
        assert (image.width, image.height) == (row.width, row.height)
        assert image.mode == row.mode
        assert list(row.labels) == [label]
        assert [snap.labels[i] for i in row.label_ids] == list(row.labels)


def test_snapshot_of_two_commits_keeps_each_image_once_and_later_label_wins(pets, snapshots,
                                                                             folder, tmp_path):
    relabel = tmp_path / "relabel"
    (relabel / "dog").mkdir(parents=True)
    (relabel / "dog" / "a.png").write_bytes((folder / "cat" / "a.png").read_bytes())
    pets.commit("pets", relabel, "a is a dog after all")

    rows, snap = snapshot_rows(snapshots)

    assert snap.manifest["counts"]["input_rows"] == 6
    assert snap.manifest["counts"]["duplicates_removed"] == 1
    assert rows["image_digest"].is_unique and len(rows) == 5
    moved = rows[rows["image_digest"] == sha((folder / "cat" / "a.png").read_bytes())]
    assert list(moved.iloc[0]["labels"]) == ["dog"]
    assert moved.iloc[0]["commit"] == 2


def test_fetch_writes_decodable_images_under_split_and_label(pets, snapshots, folder, tmp_path):
    ref = snapshots.build("pets")
    out = tmp_path / "fetched"

    snapshots.fetch("pets", ref.version, out)

    originals = {sha(p.read_bytes()): p for p in folder.rglob("*") if p.is_file()}
    written = sorted((out / "images").rglob("*.*"))
    assert len(written) == 5
    for split in ("train", "val", "test"):
        in_split = list((out / "images" / split).rglob("*.*"))
        assert len(in_split) == ref.manifest["counts"][split]
    for path in written:
        split, label = path.relative_to(out / "images").parts[:2]
        assert split in ("train", "val", "test")
        original = originals[sha(path.read_bytes())]
        assert label == original.parent.name
        image = decode(path.read_bytes())
        assert path.suffix == {"PNG": ".png", "JPEG": ".jpg"}[image.format]
    assert json.loads((out / "manifest.json").read_text())["version"] == ref.version


# -- bad input: clear error, store unchanged ----------------------------------------


def assert_rejected(store: Store, call, *fragments: str) -> InvalidInput:
    """``call()`` raises InvalidInput mentioning every fragment; the store is untouched."""
    before = tree_digest(store.root)
    with pytest.raises(InvalidInput) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Fix:" in message
    assert tree_digest(store.root) == before
    return info.value


def test_random_bytes_named_png_is_rejected_naming_the_file(pets, tmp_path):
    source = tmp_path / "bad"
    save_image(source / "cat" / "ok.png", 30)
    (source / "cat" / "x.png").write_bytes(bytes(range(256)) * 4)
    assert_rejected(pets, lambda: pets.commit("pets", source),
                    str(source / "cat" / "x.png"), "does not decode")


def test_truncated_png_is_rejected_naming_the_file(pets, tmp_path):
    source = tmp_path / "bad"
    save_image(source / "cat" / "ok.png", 30)
    whole = noisy_png(tmp_path / "whole.png").read_bytes()
    (source / "dog").mkdir(parents=True)
    (source / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    assert_rejected(pets, lambda: pets.commit("pets", source),
                    str(source / "dog" / "cut.png"), "does not decode")


def test_manifest_row_pointing_at_a_missing_image_names_row_and_image(pets, tmp_path):
    save_image(tmp_path / "x.png", 20)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.png,cat\nmissing.png,dog\n", encoding="utf-8")
    error = assert_rejected(pets, lambda: pets.commit("pets", manifest),
                            str(manifest), "row 3", "missing.png", "does not exist")
    assert error.row == 3


def test_manifest_row_with_three_columns_is_rejected_with_its_row(pets, tmp_path):
    save_image(tmp_path / "x.png", 20)
    save_image(tmp_path / "y.png", 90)
    manifest = tmp_path / "m.csv"
    manifest.write_text("x.png,cat\ny.png,dog,extra\n", encoding="utf-8")
    error = assert_rejected(pets, lambda: pets.commit("pets", manifest),
                            str(manifest), "row 2", "3 column(s)")
    assert error.row == 2


def test_manifest_row_with_an_empty_label_is_rejected_with_its_row(pets, tmp_path):
    save_image(tmp_path / "x.png", 20)
    save_image(tmp_path / "y.png", 90)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.png,cat\ny.png,  \n", encoding="utf-8")
    error = assert_rejected(pets, lambda: pets.commit("pets", manifest),
                            str(manifest), "row 3", "empty label")
    assert (error.row, error.column) == (3, "labels")


def test_empty_folder_is_rejected(pets, tmp_path):
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    assert_rejected(pets, lambda: pets.commit("pets", empty), str(empty), "no images")


def test_missing_source_path_is_rejected(pets, tmp_path):
    missing = tmp_path / "nowhere"
    assert_rejected(pets, lambda: pets.commit("pets", missing), str(missing), "no such file")


def test_rejected_create_leaves_no_dataset_behind(pets, tmp_path):
    source = tmp_path / "bad"
    (source / "cat").mkdir(parents=True)
    (source / "cat" / "x.png").write_bytes(b"not an image")
    assert_rejected(pets, lambda: pets.create("other", TYPE, source), "x.png", "does not decode")
    assert pets.names() == ["pets"]


# -- sources name only files inside their own folder -------------------------------


@pytest.fixture
def outside(tmp_path) -> Path:
    """An image next to (not inside) the source folders of the tests below."""
    return save_image(tmp_path / "outside.png", 77)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "file link", "folder link"])
def test_manifest_rows_leading_outside_its_folder_are_rejected(pets, tmp_path, outside, kind):
    src = tmp_path / "src"
    save_image(src / "ok.png", 20)
    (src / "linked").mkdir()
    (src / "linked" / "x.png").symlink_to(outside)
    (src / "escape").symlink_to(tmp_path, target_is_directory=True)
    path = {"dotdot": "../outside.png", "absolute": str(outside),
            "file link": "linked/x.png", "folder link": "escape/outside.png"}[kind]
    manifest = src / "m.csv"
    manifest.write_text(f"ok.png,cat\n{path},dog\n", encoding="utf-8")
    error = assert_rejected(pets, lambda: pets.commit("pets", manifest),
                            str(manifest), "row 2", repr(path), f"outside {src}",
                            "Fix: name images by paths relative to the manifest's folder")
    assert (error.row, error.column) == (2, "path")


def test_manifest_links_that_stay_inside_its_folder_are_read(store, tmp_path):
    src = tmp_path / "src"
    image = save_image(src / "img" / "x.png", 20)
    (src / "alias.png").symlink_to(image)
    (src / "m.csv").write_text("alias.png,cat\n", encoding="utf-8")
    commit = store.create("m", TYPE, src / "m.csv")
    assert store.read_table(commit).to_pandas()["image"][0] == sha(image.read_bytes())


@pytest.mark.parametrize("kind", ["file link", "class folder link"])
def test_folder_sources_do_not_follow_links_outside(pets, tmp_path, outside, kind):
    source = tmp_path / "bad"
    save_image(source / "cat" / "ok.png", 30)
    if kind == "file link":
        (source / "cat" / "x.png").symlink_to(outside)
        named = source / "cat" / "x.png"
    else:
        save_image(tmp_path / "private" / "secret.png", 66)
        (source / "dog").symlink_to(tmp_path / "private", target_is_directory=True)
        named = source / "dog" / "secret.png"
    assert_rejected(pets, lambda: pets.commit("pets", source), str(named),
                    "symbolic link", f"outside {source}", "Fix: copy the image into the folder")


def test_a_blob_digest_with_a_trailing_newline_fails_the_schema():
    import pyarrow as pa

    from dlforge.data.types import get_type
    from dlforge.data.types.image_class import STORED
    from dlforge.data.validation import validate

    row = {"image": "a" * 64, "labels": "cat", "path": "x.png", "width": 1, "height": 1,
           "mode": "L", "format": "PNG"}
    schema = get_type(TYPE).schema()
    validate(schema, pa.Table.from_pylist([row], schema=STORED), Path("t.parquet"), 1, {})
    bad = pa.Table.from_pylist([{**row, "image": row["image"] + "\n"}], schema=STORED)
    with pytest.raises(InvalidInput, match="row 1, column 'image'"):
        validate(schema, bad, Path("t.parquet"), 1, {})


# -- labels are class names, usable as folder names --------------------------------


def test_manifest_label_with_separator_is_rejected(pets, tmp_path):
    save_image(tmp_path / "x.png", 20)
    manifest = tmp_path / "m.csv"
    manifest.write_text("x.png,cat;dog\n", encoding="utf-8")
    assert_rejected(pets, lambda: pets.commit("pets", manifest), str(manifest), "row 1")


@pytest.mark.parametrize("label", ["../../../escaped", "a/b", "..", "a\\b"])
def test_labels_that_are_not_folder_names_are_rejected(pets, tmp_path, label):
    save_image(tmp_path / "src" / "x.png", 20)
    manifest = tmp_path / "src" / "m.csv"
    manifest.write_text(f"x.png,{label}\n", encoding="utf-8")
    assert_rejected(pets, lambda: pets.commit("pets", manifest), str(manifest), "invalid label")


# -- CLI ---------------------------------------------------------------------------


def test_cli_create_then_fetch_writes_images_a_user_can_open(cli, snapshots, folder, tmp_path):
    created = cli("create", "pets", "--type", TYPE, "--source", str(folder), check=True)
    assert json.loads(created.stdout)["rows"] == 5
    version = snapshots.build("pets").version  # the same store and snapshot folders as the CLI
    out = tmp_path / "fetched"

    cli("fetch", "pets", version, "--out", str(out), check=True)

    written = sorted((out / "images").rglob("*.*"))
    assert len(written) == 5
    assert {p.parent.name for p in written} == {"cat", "dog"}
    for path in written:
        decode(path.read_bytes())


def test_cli_commit_of_undecodable_image_fails_and_leaves_store_unchanged(cli, pets, tmp_path):
    source = tmp_path / "bad"
    save_image(source / "cat" / "ok.png", 30)
    (source / "cat" / "x.png").write_bytes(b"\x89PNG not really")
    before = tree_digest(pets.root)

    result = cli("commit", "pets", "--source", str(source))

    assert result.returncode != 0
    assert str(source / "cat" / "x.png") in result.stderr
    assert "does not decode" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(pets.root) == before
