"""The disk memo behind the workflow graph: reused while the configs are unchanged."""

from __future__ import annotations

from dlforge.core import memo


def test_values_are_reused_until_a_config_file_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text("x: 1\n")
    calls = []

    @memo.memo("conf")
    def read(name: str) -> dict:
        calls.append(name)
        return {"name": name, "calls": len(calls)}

    assert read("e") == read("e") == {"name": "e", "calls": 1}
    memo.config_digest.cache_clear()  # a new process
    assert read("e")["calls"] == 1 and calls == ["e"]  # from the file on disk
    (tmp_path / "conf" / "a.yaml").write_text("x: 2\n")
    memo.config_digest.cache_clear()
    assert read("e")["calls"] == 2  # a changed config: computed again
    memo.CACHE_FILE.write_text("{not json")
    memo.config_digest.cache_clear()
    assert read("e")["calls"] == 3  # a damaged memo is recomputed, not an error
