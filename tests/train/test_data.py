"""The snapshot data module: training reads only snapshot files that match their manifest."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlforge.core.errors import DlforgeError
from dlforge.data.snapshot import Snapshot
from dlforge.models.preprocessing import TextEncoder
from dlforge.train.data import SnapshotDataModule
from tests.toy import make_snapshot, toy_rows


def test_a_split_whose_labels_were_replaced_is_not_trained_on(tmp_path):
    folder = Path(make_snapshot(tmp_path, toy_rows(60))["path"])
    split = folder / "train.parquet"
    table = pq.read_table(split)  # still a valid split: every row gets the first row's label
    for column in ("labels", "label_ids"):
        field = table.schema.field(column)
        same = pa.array([table.column(column)[0].as_py()] * table.num_rows, field.type)
        table = table.set_column(table.schema.get_field_index(column), column, same)
    pq.write_table(table, split)

    data = SnapshotDataModule(Snapshot.open(folder), TextEncoder(), batch_size=8)
    with pytest.raises(DlforgeError) as info:
        data.setup("fit")
    message = str(info.value)
    assert str(split) in message and "does not match its manifest hash" in message
    assert "Fix:" in message
    assert data.splits == {}
