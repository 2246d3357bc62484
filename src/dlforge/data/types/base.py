"""What a dataset type provides to the store: reading, validation, identity, statistics.

A type reads a user's source (a CSV file, a folder of images, ...), validates
and normalises it into an Arrow table with its pandera schema, and stages that
table as parquet. The store never looks inside: it publishes the staged files
content-addressed and records the commit. Snapshots then ask the type for each
example's identity (for de-duplication and the split) and its labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from dlforge.data.stats import Feature, Statistics

if TYPE_CHECKING:
    import pandera.pandas as pda

LABEL_SEP = ";"


@dataclass
class Staged:
    """A validated source, written to a staging folder and not yet published.

    Attributes:
        table: path of the staged parquet table (the commit's content).
        digest: content digest of the table (its object name in the store).
        rows: number of examples.
        stats: :class:`Statistics` result for the commit.
        blobs: extra content-addressed files the table refers to (digest -> staged path).
        source_digest: digest of the source as given, to recognise it when ingested again.
        notes: things the user should know (a skipped header row, ...).
    """

    table: Path
    digest: str
    rows: int
    stats: dict
    source_digest: str
    blobs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class DatasetType(ABC):
    """One kind of dataset. Subclass, then :func:`dlforge.data.types.register` it."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Columns whose values make up a commit's content (hashed for its object name).
    content_columns: ClassVar[tuple[str, ...]]
    # Column that holds digests of blob objects (image bytes, ...), if any.
    blob_column: ClassVar[str | None] = None
    # Snapshot column a model reads (text, image bytes).
    input_column: ClassVar[str]
    # Snapshot column with the digest of the object whose bytes are the model's input
    # (read from the store, never copied into a snapshot), if the input is a blob. Its
    # example key is that digest: a snapshot derives the example id from it.
    input_digest_column: ClassVar[str | None] = None
    # The Hugging Face task id of a classifier of this data ("text-classification"), for
    # the task of a model card's model-index; None: none fits.
    hub_task: ClassVar[str | None] = None

    @abstractmethod
    def stage(self, source: Path, staging: Path) -> Staged:
        """Read and validate ``source``; write the normalised table under ``staging``.

        Raises:
            InvalidInput: naming the file, row and fix, before anything is published.
        """

    @abstractmethod
    def schema(self) -> pda.DataFrameSchema:
        """The pandera schema of a stored (committed) table."""

    @abstractmethod
    def example_keys(self, table: pa.Table) -> pa.Array:
        """One string per row identifying the example's input, for de-duplication and the split."""

    @abstractmethod
    def features(self) -> dict[str, Feature]:
        """Integer features summarised in statistics (see :class:`Statistics`)."""

    def snapshot_columns(self, table: pa.Table, objects: Path) -> pa.Table:
        """The input columns a snapshot carries (blobs by their digests, for example)."""
        return table.drop_columns(["labels"])

    def label_lists(self, table: pa.Table) -> pa.ListArray:
        """Stored ``a;b`` label strings as ``list<string>``."""
        return pc.split_pattern(table.column("labels"), LABEL_SEP).combine_chunks()

    def statistics(self, table: pa.Table, labels: pa.Array | None = None) -> Statistics:
        stats = Statistics(self.features())
        labels = self.label_lists(table) if labels is None else labels
        stats.update(table.drop_columns(["labels"]).append_column("labels", labels))
        return stats


def normalise_labels(raw: str) -> str:
    """``" b ; a"`` -> ``"a;b"``: parts stripped, sorted and de-duplicated.

    A value with an empty part is returned as given (stripped) so that
    validation rejects it and the error shows what the user wrote.
    """
    parts = [part.strip() for part in raw.split(LABEL_SEP)]
    if not all(parts):
        return LABEL_SEP.join(parts)
    return LABEL_SEP.join(sorted(set(parts)))
