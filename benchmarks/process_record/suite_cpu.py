"""A pytest plugin that ``bench_suite.py --processes`` loads (``-p suite_cpu``): the CPU
seconds each test takes in the process that runs it (an xdist worker: its setup, call
and teardown, module fixtures included where the test is the first to need them),
appended to ``$DLFORGE_PROCESS_RECORD/in-process-<worker>.jsonl``."""

import json
import os

import pytest

_FOLDER = os.environ.get("DLFORGE_PROCESS_RECORD")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = os.times()
    yield
    end = os.times()
    if _FOLDER:
        cpu = (end.user - start.user) + (end.system - start.system)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(_FOLDER, f"in-process-{worker}.jsonl"), "a") as f:
            f.write(json.dumps({"test": item.nodeid, "cpu_s": round(cpu, 3)}) + "\n")
