"""The retrain marker: counted requests, replaced atomically, read by other stages."""

from __future__ import annotations

import json

import pytest

from dlforge.core.errors import DlforgeError
from dlforge.monitor import request_retrain, retrain_request


def test_requests_count_up_from_one(tmp_path):
    marker = tmp_path / "retrain.json"
    assert retrain_request(marker) == 0
    first = request_retrain(marker, ["label PSI 0.5 > 0.2"], tmp_path / "report.json")
    assert first["request"] == 1 and first["reasons"] == ["label PSI 0.5 > 0.2"]
    assert first["report"] == str(tmp_path / "report.json")
    assert request_retrain(tmp_path / "retrain.json", ["again"])["request"] == 2
    assert retrain_request(tmp_path / "retrain.json") == 2
    on_disk = json.loads((tmp_path / "retrain.json").read_text())
    assert on_disk["request"] == 2 and on_disk["reasons"] == ["again"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_marker_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "retrain.json").write_text("{not json")
    with pytest.raises(DlforgeError, match=r"retrain.json is not a retrain marker.*Fix: delete"):
        retrain_request(tmp_path / "retrain.json")
