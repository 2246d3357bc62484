"""A command's start-up: imports with the garbage collector paused, then one
collection and what is left frozen.

Each check runs in a process of its own: what a process freezes stays frozen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from dlforge.cli.stage import LIBRARIES
from tests.helpers import ROOT

# A library whose import makes enough objects for the collector to run many times,
# and leaves one unreachable (a cycle only the collector frees).
LIBRARY = """
import weakref

objects = [[] for _ in range(20000)]


class Node:
    pass


node = Node()
node.itself = node
unreachable = weakref.ref(node)
del node
"""
STAGE = """
import gc, json, sys

def stage(cfg):
    with open("stage.json", "w") as out:
        json.dump({"collecting": gc.isenabled(), "frozen": gc.get_freeze_count(),
                   "loaded": "library" in sys.modules}, out)
    return {}
"""
# `dlforge train` with the stage and its libraries replaced by the ones above: as the
# program (sys.argv) or called by another program (main's argument).
RUN = """
import gc, json, sys
from dlforge import cli
from dlforge.cli import stage

cli.STAGES["train"] = "stage:stage"
stage.LIBRARIES["train"] = ("library",)
args = ["train", "experiment=intent", "paths.root=."]
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info))
if sys.argv[1] == "program":
    sys.argv = ["dlforge", *args]
    code = cli.main()
else:
    code = cli.main(args)
print(json.dumps({"code": code, "passes": len(passes)}))
"""
PRELOAD = """
import gc, json, sys
from dlforge.core.process import preload

passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info))
try:
    preload(sys.argv[1:])
    error = None
except ImportError as err:
    error = str(err)
library = sys.modules.get("library")
print(json.dumps({"passes": len(passes), "collecting": gc.isenabled(), "error": error,
                  "frozen": gc.get_freeze_count(), "loaded": library is not None,
                  "freed": library is not None and library.unreachable() is None}))
"""


def python(tmp_path, code: str, *args: str) -> dict:
    """The JSON that ``code`` prints last, run in ``tmp_path`` with the library and
    the stage above importable."""
    (tmp_path / "library.py").write_text(LIBRARY)
    (tmp_path / "stage.py").write_text(STAGE)
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, text=True,
                         capture_output=True, env={"PYTHONPATH": str(tmp_path),
                                                   "DLFORGE_CONFIG_DIR": str(ROOT / "conf"),
                                                   "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_preload_imports_with_one_collection_and_freezes_what_is_left(tmp_path):
    loaded = python(tmp_path, PRELOAD, "library")
    assert loaded["loaded"] and loaded["collecting"]
    # One pass, at the end: it frees what the imports left unreachable, and the rest
    # is frozen.
    assert loaded["passes"] == 1 and loaded["freed"]
    assert loaded["frozen"] >= 20000


def test_a_library_that_does_not_import_fails_and_the_collector_runs_again(tmp_path):
    failed = python(tmp_path, PRELOAD, "no_such_library")
    assert "no_such_library" in failed["error"]
    assert failed["collecting"]


def test_a_stage_run_as_the_program_starts_with_its_libraries_loaded_and_frozen(tmp_path):
    out = python(tmp_path, RUN, "program")
    assert out["code"] == 0
    # One pass in start-up (composing, checking, importing), as the stage starts, and
    # none in the stage's own short work here; at the stage, the library loaded, all
    # frozen, collecting again.
    assert out["passes"] == 1
    seen = json.loads((tmp_path / "stage.json").read_text())
    assert seen["loaded"] and seen["frozen"] >= 20000 and seen["collecting"]


def test_a_stage_called_by_another_program_leaves_its_collector_alone(tmp_path):
    out = python(tmp_path, RUN, "library")
    assert out["code"] == 0 and out["passes"] > 0
    seen = json.loads((tmp_path / "stage.json").read_text())
    assert seen == {"collecting": True, "frozen": 0, "loaded": False}


def installed(module: str) -> bool:
    """Whether ``module`` (dotted) is there to import, without importing it."""
    top, *rest = module.split(".")
    spec = find_spec(top)
    if spec is None or not rest:
        return spec is not None
    folder = Path(spec.origin).parent.joinpath(*rest[:-1])
    return (folder / f"{rest[-1]}.py").is_file() or (folder / rest[-1] / "__init__.py").is_file()


def test_installed_tells_a_missing_module():
    assert installed("lightning.pytorch") and installed("dlforge.train.fit")
    assert not installed("lightning.no_such_module") and not installed("no_such_package")


@pytest.mark.parametrize("stage", sorted(LIBRARIES))
def test_every_library_a_stage_loads_is_installed(stage):
    assert all(installed(module) for module in LIBRARIES[stage]), LIBRARIES[stage]
