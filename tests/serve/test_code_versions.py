"""One server answers two versions of one project, each with its own code, exactly as
``dlforge predict`` answers for that version alone.

The API's batch path runs in-process (as in test_isolation.py), loading the two
packages with the loader serving uses; the versions' carried code differs (version 1
favours "music", version 2 "restaurant"), their class path is the same.
"""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from dlforge.models.package import load_package
from tests.models.versions import LABELS, TEXTS, versions_of_one_project
from tests.serve.test_isolation import Registry, in_process_api, run_batch


def dlforge_predict(folder, project, output) -> list[dict]:
    """``dlforge predict FOLDER`` run in the project's folder (its src/ on the path)."""
    source = output.parent / f"{output.stem}.csv"
    source.write_text("text\n" + "".join(f"{t}\n" for t in TEXTS))
    result = subprocess.run([sys.executable, "-m", "dlforge", "predict", str(folder),
                             "--input", str(source), "--output", str(output)],
                            cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return pq.read_table(output).to_pylist()


def test_one_server_answers_each_version_with_its_own_code(tmp_path, monkeypatch):
    _, project, folders = versions_of_one_project(tmp_path, monkeypatch)
    api = in_process_api(tmp_path, lambda name, version: load_package(folders[int(version)]),
                         Registry(folders))
    answers = run_batch(api, [{"inputs": TEXTS, "version": v} for v in (1, 2, 1, 2)])
    assert [status for status, _ in answers] == [200] * 4, answers
    alone = {v: dlforge_predict(f, project, tmp_path / f"v{v}.parquet") for v, f in
             folders.items()}
    for version, (_, body) in zip((1, 2, 1, 2), answers, strict=True):
        assert body["version"] == str(version)
        assert [p["label"] for p in body["predictions"]] == \
            [r["label"] for r in alone[version]] == [LABELS[version - 1]] * len(TEXTS)
        assert [p["score"] for p in body["predictions"]] == pytest.approx(
            [r["score"] for r in alone[version]], abs=1e-6)
