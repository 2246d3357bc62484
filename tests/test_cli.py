"""The command line as a user meets it: exit codes, stdout results, stderr errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import SAMPLE, dlforge, tree_digest

pytestmark = pytest.mark.slow  # each test starts interpreters


def test_importing_the_cli_is_light():
    code = ("import sys, dlforge.cli; heavy = {'torch', 'lightning', 'mlflow', 'pandas', "
            "'pyarrow', 'pandera', 'hydra'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_and_unknown_command():
    assert dlforge("--help").returncode == 0
    result = dlforge("frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_create_commit_snapshot_show_list_fetch_verify(cli, tmp_path):
    created = cli("create", "clinc", "--type", "text_intent", "--source",
                  str(SAMPLE / "part-a.csv"), "--tag", "part=a", "-m", "part A", check=True)
    assert json.loads(created.stdout)["rows"] == 7600
    cli("commit", "clinc", "--source", str(SAMPLE / "part-b.csv"), "--tag", "part=b", check=True)
    version = cli("snapshot", "clinc", check=True).stdout.strip()
    assert len(version) == 12
    assert cli("snapshot", "clinc", "--upto", "2", check=True).stdout.strip() == version
    shown = json.loads(cli("show", "clinc", "--json", check=True).stdout)
    assert [c["id"] for c in shown["commits"]] == [1, 2]
    assert shown["snapshots"][0]["version"] == version
    assert "clinc" in cli("show", "clinc", check=True).stdout
    listed = json.loads(cli("list", "--json", check=True).stdout)
    assert listed[0]["rows"] == 10700 and listed[0]["snapshots"] == 1
    fetched = cli("fetch", "clinc", version, "--out", str(tmp_path / "f"), check=True)
    assert json.loads(fetched.stdout)["files"] == 4
    assert (tmp_path / "f" / "train.parquet").is_file()
    verified = cli("verify", check=True)
    assert "nothing is corrupt" in verified.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["commit", "clinc", "--source", "/no/such.csv"], "/no/such.csv: no such file"),
        (["commit", "nope", "--source", str(SAMPLE / "part-b.csv")], "no dataset 'nope'"),
        (["create", "../x", "--type", "text_intent", "--source", str(SAMPLE / "part-b.csv")],
         "invalid dataset name '../x'"),
        (["snapshot", "clinc", "--upto", "5"], "no commit 5"),
        (["snapshot", "clinc", "--tag", "part=z"], "no commit of dataset 'clinc' matches"),
        (["fetch", "clinc", "ffffffffffff"], "no snapshot 'ffffffffffff'"),
        (["commit", "clinc", "--source", str(SAMPLE / "part-b.csv"), "--tag", "oops"],
         "not key=value"),
    ],
)
def test_errors_exit_non_zero_name_the_problem_and_change_nothing(cli, store, tmp_path, args,
                                                                 words):
    # The dataset as `dlforge data create` makes it (that command is run above), made
    # in this process: only the failing command needs one of its own.
    store.create("clinc", "text_intent", SAMPLE / "part-b.csv")
    before = tree_digest(tmp_path / "store")
    result = cli(*args)
    assert result.returncode == 1
    assert words in result.stderr and "Fix:" in result.stderr
    assert result.stdout == ""
    assert tree_digest(tmp_path / "store") == before


def test_bad_row_error_names_file_and_row(cli, write_csv, tmp_path):
    source = write_csv("bad.csv", "fine,a\nstill fine,b\n  ,c\n")
    result = cli("create", "d", "--type", "text_intent", "--source", str(source))
    assert result.returncode == 1
    assert f"{source}: row 3, column 'utterance': empty utterance" in result.stderr
    assert not (tmp_path / "store").exists()


def test_verify_reports_a_damaged_object(cli, tmp_path):
    cli("create", "d", "--type", "text_intent", "--source", str(SAMPLE / "part-b.csv"), check=True)
    (obj,) = (tmp_path / "store" / "d" / "objects").rglob("*.parquet")
    obj.write_bytes(obj.read_bytes()[:-100] + b"\0" * 100)
    result = cli("verify")
    assert result.returncode == 1 and "commit 1" in result.stdout
