"""Reading a snapshot: :class:`Snapshot`, opened lazily, and its splits' inputs.

A split's parquet file is memory-mapped and only two compact columns are held:
the inputs themselves and the example ids for text; for images, only the 32-byte
digests of the store objects that hold the bytes (an image's example id is
derived from its digest). An image's bytes are read
when it is asked for, and checked against its digest. A reader pickles without
its columns, so a DataLoader worker started by ``spawn`` opens the file again
instead of receiving a copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.io import read_json
from dlforge.data.build import (
    ROW_GROUP_ROWS,
    SCHEMA_VERSION,
    SPLITS,
    check_file,
    example_ids,
    iter_split,
    read_split,
    read_split_table,
    stored_columns,
)
from dlforge.data.objects import ObjectReader
from dlforge.data.seal import check_sealed

CHUNK = 4096  # inputs converted to Python objects at a time when iterating


class SplitInputs(Sequence):
    """The model inputs of one split, in order: ``len``, indexing, slices (lists) and
    iteration, reading as little as each needs.

    Args:
        path: the split's parquet file, already checked against its manifest.
        column: the column that holds the inputs (or their digests, with ``objects``).
        rows: the split's number of rows (from the manifest).
        objects: where the inputs' bytes are, when ``column`` holds digests.
    """

    def __init__(self, path: Path, column: str, rows: int, objects: ObjectReader | None = None):
        self.path, self.column, self.rows, self.objects = Path(path), column, rows, objects
        self._values = self._ids = None
        self._packed = False

    def _load(self) -> None:
        if self._values is None:
            wanted, digest = stored_columns(self.path, [self.column, "example_id"])
            table = pq.read_table(self.path, columns=wanted, memory_map=True)
            self._values = table.column(self.column).combine_chunks()
            self._packed = digest == self.column
            if not self._packed:
                self._ids = table.column("example_id").combine_chunks()

    def __len__(self) -> int:
        return self.rows

    def _value(self, index: int):
        value = self._values[index].as_py()
        return value.hex() if self._packed else value

    def example_id(self, index: int) -> str:
        """The example id (see :func:`dlforge.data.build.example_ids`) of row ``index``."""
        self._load()
        if self._packed:
            return example_ids([self._value(index)])[0].as_py()
        return self._ids[index].as_py()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of a split of {len(self)} rows")
        self._load()
        value = self._value(index)
        return self.objects.read(value, self.example_id(index)) if self.objects else value

    def __iter__(self) -> Iterator:
        self._load()
        for start in range(0, len(self), CHUNK):
            values = self._values.slice(start, CHUNK).to_pylist()
            if self._packed:
                values = [v.hex() for v in values]
            if self.objects is None:
                yield from values
            else:
                ids = (example_ids(values) if self._packed
                       else self._ids.slice(start, CHUNK)).to_pylist()
                for digest, example in zip(values, ids, strict=True):
                    yield self.objects.read(digest, example)

    def sample(self, size: int | None) -> Sequence:
        """Up to ``size`` inputs evenly spaced over the split (all when ``size`` is None
        or not smaller), as a lazy sequence that may be iterated more than once."""
        if size is None or size >= len(self):
            return self
        import numpy as np

        return _Subset(self, np.linspace(0, len(self) - 1, size).round().astype(int).tolist())

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_values": None, "_ids": None, "_packed": False}


class _Subset(Sequence):
    def __init__(self, inputs: SplitInputs, rows: list[int]):
        self.inputs, self.rows = inputs, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.inputs[r] for r in self.rows[index]]
        return self.inputs[self.rows[index]]


class Snapshot:
    """One snapshot version, opened lazily: the manifest now, a split when it is asked for.

        snap = Snapshot.open("data/snapshots/clinc150/3fa2c1d0e9b7")
        snap.version, snap.labels, snap.counts      # from manifest.json
        texts = snap.inputs("train")                # lazy: len, [i], [a:b], iteration
        ids = snap.table("test", ["label_ids"])     # chosen columns, memory-mapped
        frame = snap.split("test")                  # the whole split as a DataFrame

    Every file is checked against the manifest's sha256 and the store's seal
    (:mod:`dlforge.data.seal`) when it is first read, and every image against its
    digest. ``labels`` is the merged vocabulary; a split's ``label_ids`` column indexes
    into it. Every reader of a snapshot (training, evaluation, registration,
    monitoring) goes through this class, and those that know the project's store
    (``paths.store_dir``) open it with ``store=``.
    """

    def __init__(self, path: Path, manifest: dict, store: Path | None = None):
        self.path, self.manifest = Path(path), manifest
        self.store = Path(store) if store is not None else None
        self._splits: dict[str, object] = {}

    @classmethod
    def open(cls, path: str | Path, store: str | Path | None = None) -> Snapshot:
        """Open the snapshot in folder ``path``; reads only its manifest (and its seal).

        Args:
            path: the snapshot's folder, ``<snapshot_dir>/<dataset>/<version>``.
            store: the dataset store whose seal the splits must match (``paths.store_dir``);
                None: the store the manifest names, found through the manifest alone.

        Raises:
            NotFound: when ``path`` holds no snapshot, naming the command that builds one.
            DlforgeError: with ``store``, when the manifest names another snapshot than its
                folder, says it was sealed where ``store`` holds no seal for it, or gives
                labels the store did not seal.
        """
        folder = Path(path)
        listing = folder / "manifest.json"
        if not listing.is_file():
            raise NotFound(f"no snapshot at {folder} ({listing} is missing). Fix: build it "
                           "with `dlforge snapshot experiment=<name>` or `dlforge data "
                           "snapshot <dataset>`")
        try:
            manifest = read_json(listing)
        except ValueError as err:
            raise DlforgeError(f"{listing} is not valid JSON ({err}). Fix: delete {folder} "
                               "and build the snapshot again") from None
        if store is not None:
            check_sealed(folder, manifest, Path(store))
        return cls(folder, manifest, store)

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def type(self) -> str:
        """The dataset type's name (see :mod:`dlforge.data.types`)."""
        return self.manifest["type"]

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    @property
    def multi_label(self) -> bool:
        return bool(self.manifest["multi_label"])

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest["counts"]

    @property
    def commits(self) -> list[dict]:
        return self.manifest["commits"]

    @property
    def input_column(self) -> str:
        """The column of a split that holds the model's input (text, image bytes)."""
        from dlforge.data.types import get_type

        return get_type(self.type).input_column

    @property
    def objects(self) -> ObjectReader | None:
        """The store objects that hold the inputs' bytes (None: the inputs are in the
        splits themselves, as texts are).

        Raises:
            DlforgeError: for an image snapshot of layout 1 (built by an older dlforge,
                with the image bytes inside), telling to build it again.
        """
        from dlforge.data.types import get_type

        if get_type(self.type).input_digest_column is None:
            return None
        if "objects" not in self.manifest:
            raise DlforgeError(
                f"snapshot {self.path} has the layout of an older dlforge "
                f"(schema_version {self.manifest.get('schema_version')}, image bytes inside "
                f"the splits); this one reads images from the store by digest "
                f"(schema_version {SCHEMA_VERSION}). Fix: build it again with `dlforge data "
                f"snapshot {self.dataset}` (or `dlforge snapshot experiment=...`)")
        return ObjectReader(self.path / self.manifest["objects"], self.dataset)

    def _file(self, name: str) -> Path:
        if name not in SPLITS:
            raise NotFound(f"snapshot {self.version} has no split {name!r} (splits: "
                           f"{', '.join(SPLITS)})")
        path = self.path / f"{name}.parquet"
        check_file(path, self.manifest, self.store)
        return path

    def rows(self, name: str) -> int:
        """The number of examples in split ``name`` (from the manifest)."""
        self._file(name)
        return int(self.manifest["files"][f"{name}.parquet"]["rows"])

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Columns of split ``name`` as an Arrow table, memory-mapped (the default:
        every column; an image split holds digests, never bytes)."""
        return read_split_table(self._file(name), columns)

    def batches(self, name: str, columns: list[str] | None = None,
                rows: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
        """Split ``name`` in record batches of up to ``rows`` rows (memory stays flat)."""
        for table in iter_split(self._file(name), rows, columns):
            yield from table.to_batches()

    def inputs(self, name: str) -> SplitInputs:
        """The model inputs of split ``name``, in order, read lazily: texts, or image
        bytes read from the store by digest and checked against it."""
        from dlforge.data.types import get_type

        objects = self.objects
        column = get_type(self.type).input_digest_column if objects else self.input_column
        return SplitInputs(self._file(name), column, self.rows(name), objects)

    def split(self, name: str):
        """Split ``name`` (train, val or test) as a DataFrame, read whole: its file is
        checked against the manifest's sha256 and validated when it is first read.
        Large splits are better read with :meth:`inputs`, :meth:`table` or :meth:`batches`."""
        if name not in self._splits:
            self._file(name)
            self._splits[name] = read_split(self.path / f"{name}.parquet")
        return self._splits[name]

    @property
    def train(self):
        return self.split("train")

    @property
    def val(self):
        return self.split("val")

    @property
    def test(self):
        return self.split("test")
