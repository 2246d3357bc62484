"""Ingest refuses what it cannot store faithfully, and reads any file in bounded memory.

Text sources may end their lines with ``\\n``, ``\\r\\n`` or a classic Mac ``\\r``;
a row is one line of at most ``MAX_LINE_BYTES`` bytes without NUL bytes, and an
utterance holds at most as many characters as serving takes. Images hold at most
as many pixels as serving takes, read from the header before decoding; class
names hold no control characters. Every refusal names the file, the row (or the
folder) and the fix, and leaves the store as it was.
"""

from __future__ import annotations

from importlib.resources import files

import pyarrow.csv as pcsv
import pytest
from omegaconf import OmegaConf
from PIL import Image

from dlforge.core.errors import InvalidInput
from dlforge.core.limits import MAX_IMAGE_PIXELS, MAX_TEXT_CHARS
from dlforge.data.types.lines import MAX_LINE_BYTES
from dlforge.data.types.text_intent import TextIntent
from tests.helpers import tree_digest
from tests.toy import png_header

ROWS = [f"utterance number {i},label{i % 3}" for i in range(300)]


def assert_refused(store, source, *fragments: str) -> InvalidInput:
    """Committing ``source`` to dataset ``d`` fails naming every fragment, the file and a
    fix, and changes nothing in the store."""
    before = tree_digest(store.root)
    with pytest.raises(InvalidInput) as caught:
        store.commit("d", source)
    message = str(caught.value)
    for fragment in (str(source), "Fix:", *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert tree_digest(store.root) == before
    return caught.value


@pytest.fixture
def texts(store, write_csv):
    """A store holding text dataset ``d``."""
    store.create("d", "text_intent", write_csv("good.csv", "hello,greet\n"))
    return store


# -- line endings and memory ------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [64, TextIntent.chunk_size])
def test_any_line_ending_gives_the_same_rows(store, write_csv, monkeypatch, chunk_size):
    monkeypatch.setattr(TextIntent, "chunk_size", chunk_size)
    body = "\n".join(ROWS[:100]) + "\n\n" + '"quoted, with a comma",greet\n'
    commits = {ending: store.create(f"d{i}", "text_intent",
                                    write_csv(f"{i}.csv", body.replace("\n", ending)))
               for i, ending in enumerate(["\n", "\r\n", "\r"])}
    tables = [store.read_table(c).to_pylist() for c in commits.values()]
    assert len(tables[0]) == 101 and tables[0][-1]["utterance"] == "quoted, with a comma"
    assert tables[1] == tables[0] and tables[2] == tables[0]
    assert len({c.digest for c in commits.values()}) == 1


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_the_parser_is_never_handed_more_than_a_chunk(store, write_csv, monkeypatch, ending):
    read_csv, sizes = pcsv.read_csv, []

    def spy(buffer, *args, **kwargs):
        sizes.append(buffer.size)
        return read_csv(buffer, *args, **kwargs)

    monkeypatch.setattr(TextIntent, "chunk_size", 4096)
    monkeypatch.setattr(pcsv, "read_csv", spy)
    source = write_csv("big.csv", ending.join(ROWS * 20) + ending)  # 170 KB, rows of < 32 B
    commit = store.create("d", "text_intent", source)
    assert commit.rows == len(ROWS) * 20
    assert len(sizes) > 40 and max(sizes) < 4096 + 32  # a chunk and the rest of a line


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize(("bad", "words"), [(b"caf\xe9,b", "not valid UTF-8"),
                                            (b"a,b,c", "3 column(s)"),
                                            (b" ,b", "empty utterance")])
def test_rows_are_numbered_whatever_the_line_ending(texts, write_csv, ending, bad, words):
    lines = [row.encode() for row in ROWS[:50]] + [b"", bad]
    source = write_csv("bad.csv", ending.encode().join(lines) + ending.encode())
    assert_refused(texts, source, "row 52", words)


# -- NUL bytes, line breaks in values, long rows ----------------------------------


def test_a_nul_byte_is_refused_anywhere_naming_its_row(texts, write_csv):
    body = "\n".join(ROWS) + "\nhello\x00there,greet\n"  # far past the first 4 KB
    assert_refused(texts, write_csv("nul.csv", body), "row 301", "NUL byte")


@pytest.mark.parametrize("chunk_size", [8, TextIntent.chunk_size])
@pytest.mark.parametrize(("content", "row", "column"), [
    ('ok,a\n"hello\nworld",greet\n', 2, "utterance"),
    ('ok,a\n\nhello,"greet\nsmalltalk"\n', 3, "labels"),
    ('ok,a\r\rb,y\r"c\rd",z\r', 4, "utterance"),
    ('ok,a\n"hello\rworld",greet\n', 2, "utterance"),
])
def test_a_value_over_two_lines_is_refused_naming_its_row(texts, write_csv, monkeypatch,
                                                          chunk_size, content, row, column):
    monkeypatch.setattr(TextIntent, "chunk_size", chunk_size)  # 8: the record is cut in two
    error = assert_refused(texts, write_csv("lines.csv", content), f"row {row}", "single-line",
                           "on one line")
    assert error.row == row


def test_an_unclosed_quote_is_refused_as_a_value_over_several_lines(texts, write_csv):
    assert_refused(texts, write_csv("q.csv", 'ok,a\n"hello,greet\n'), "row 2", "not closed",
                   "close every quote")


@pytest.mark.parametrize("size", [10 << 20, TextIntent.chunk_size // 2, MAX_LINE_BYTES + 1])
def test_a_row_longer_than_the_line_limit_is_refused_naming_its_row(texts, write_csv, size):
    body = "\n".join(ROWS[:2]) + "\n" + "x" * size + ",greet\n" + "\n".join(ROWS) + "\n"
    assert_refused(texts, write_csv("long.csv", body), "row 3", f"longer than {MAX_LINE_BYTES}")


def test_utterances_hold_at_most_as_many_characters_as_serving_takes(texts, write_csv):
    longest = "é" * MAX_TEXT_CHARS
    commit = texts.commit("d", write_csv("ok.csv", f"{longest},greet\n"))
    assert texts.read_table(commit).column("utterance").to_pylist() == [longest]
    body = f"ok,a\n{longest}é,greet\n"
    assert_refused(texts, write_csv("long.csv", body), "row 2", "column 'utterance'",
                   f"more than {MAX_TEXT_CHARS}", f"at most {MAX_TEXT_CHARS} characters")


# -- images -----------------------------------------------------------------------


@pytest.fixture
def images(store, tmp_path):
    """A store holding image dataset ``d``."""
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    Image.new("L", (8, 8), 40).save(root / "cat" / "a.png")
    store.create("d", "image_class", root)
    return store


@pytest.mark.parametrize(("width", "height"), [(14000, 14000), (12000, 12000), (4097, 4096)])
def test_an_image_over_the_serving_pixel_limit_is_refused_from_its_header(images, tmp_path,
                                                                        width, height):
    source = tmp_path / "big"
    (source / "cat").mkdir(parents=True)
    (source / "cat" / "huge.png").write_bytes(png_header(width, height))  # no pixel data
    assert_refused(images, source, str(source / "cat" / "huge.png"),
                   f"more than {MAX_IMAGE_PIXELS}", "downscale")


def test_an_image_at_the_pixel_limit_is_stored(images, tmp_path):
    source = tmp_path / "edge"
    (source / "cat").mkdir(parents=True)
    Image.new("L", (4096, 4096), 7).save(source / "cat" / "edge.png")
    commit = images.commit("d", source)
    assert images.read_table(commit).column("width").to_pylist() == [4096]


@pytest.mark.parametrize("name", ["cat\ndog", "cat\t", "\x7fcat"])
def test_a_class_folder_named_with_a_control_character_is_refused(images, tmp_path, name):
    source = tmp_path / "odd"
    (source / name).mkdir(parents=True)
    Image.new("L", (8, 8), 90).save(source / name / "x.png")
    assert_refused(images, source, repr(name), "control character", "rename the folder")


def test_a_manifest_label_with_a_line_break_is_refused_naming_its_row(images, tmp_path):
    Image.new("L", (8, 8), 90).save(tmp_path / "x.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text('x.png,cat\nx.png,"cat\ndog"\n', encoding="utf-8")
    assert_refused(images, manifest, "row 2", "control character")


def test_the_limits_are_the_serving_defaults():
    serve = OmegaConf.load(files("dlforge") / "conf" / "serve.yaml")
    assert serve.max_image_pixels == MAX_IMAGE_PIXELS
    assert serve.max_input_chars == MAX_TEXT_CHARS
