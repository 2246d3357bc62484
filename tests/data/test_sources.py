"""Built sources: the digits image folder that `dlforge ingest` writes from scikit-learn."""

from __future__ import annotations

import pytest

from dlforge.core.config import compose
from dlforge.data.sources import sklearn_digits
from dlforge.stages.data import ingest
from tests.conftest import tree_digest


def test_digits_halves_are_disjoint_complete_and_the_same_bytes_every_time(tmp_path):
    first = tree_digest(sklearn_digits(tmp_path / "a", part=0, parts=2))
    again = tree_digest(sklearn_digits(tmp_path / "again", part=0, parts=2))
    second = tree_digest(sklearn_digits(tmp_path / "b", part=1, parts=2))
    images = [name for name in {**first, **second} if name.endswith(".png")]
    assert first == again
    assert len(images) == 1797 and not set(first) & {n for n in second if n.endswith(".png")}
    assert sorted(n for n in first if "/" not in n) == [str(d) for d in range(10)]
    assert not (tmp_path / ".tmp").exists()  # the staging folder is gone
    with pytest.raises(ValueError, match="part 2 must be in"):
        sklearn_digits(tmp_path / "c", part=2, parts=2)


def test_ingest_builds_the_digits_sources_once_and_commits_each_once(tmp_path):
    cfg = compose("ingest", ["experiment=digits", f"paths.root={tmp_path}"])
    summary = ingest(cfg)
    assert [s["commit"] for s in summary["sources"]] == [1, 2]
    assert sum(s["rows"] for s in summary["sources"]) == 1797
    assert ingest(cfg)["commits"] == [1, 2]  # built and committed already: nothing new
