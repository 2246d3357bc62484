"""Shared fixtures: a store in a temporary folder, small sources, a CLI runner, a toy
project that trains, evaluates and registers models; and each test's kind (``unit``,
``integration`` or ``e2e``), a marker given by where the test lives."""

from __future__ import annotations

import gc
import json
import os
import subprocess
from pathlib import Path

import pytest

# One thread per process: each xdist worker has a core, and so does each process a test
# starts; torch's own threads beside them would only contend.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
# After each command in a project that has not opted out, DVC starts a process of its own
# to send a usage report: not from a test run.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from dlforge.data import SnapshotStore, Store  # noqa: E402 - after the threads are set
from tests.helpers import built_once, dlforge, shared_folder  # noqa: E402
from tests.toy import copy_project, make_project  # noqa: E402

TESTS = Path(__file__).resolve().parent

# Whole pipelines and projects: the workflow, DVC, starters, secrets, the light review.
E2E_FILES = {"test_dvc_remote.py", "test_own_project.py", "test_init_starters.py",
             "test_secrets_flow.py", "test_review_light.py"}
# Tests that train, start PostgreSQL or use MLflow, approximated by folder.
INTEGRATION_DIRS = {"train", "hpo", "registry", "serve", "monitor", "gpu"}
INTEGRATION_FILES = {"models/test_pretrained.py"}


def kind_of(item: pytest.Item) -> str:
    """``e2e``, ``integration`` or ``unit``: the first that fits, in that order.

    ``slow`` tests (real server processes, fresh venvs, whole pipelines) are e2e
    wherever they live; a test that asks for the ``postgres`` fixture is integration.
    """
    if item.get_closest_marker("slow"):
        return "e2e"
    kind = kind_by_place(item.path.relative_to(TESTS).as_posix())
    if kind == "unit" and "postgres" in item.fixturenames:
        return "integration"
    return kind


def kind_by_place(rel: str) -> str:
    """The kind of every test in the file or folder ``rel`` (relative to tests/), where
    its place decides it; ``unit`` where its tests may be any kind."""
    if rel in E2E_FILES or rel.startswith("test_workflow"):
        return "e2e"
    if rel.split("/")[0] in INTEGRATION_DIRS or rel in INTEGRATION_FILES:
        return "integration"
    return "unit"


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """With ``-m unit`` (``make test-fast``), the files and folders that hold no unit
    test by their place are not imported: theirs import Lightning, MLflow and LitServe,
    seconds of every worker's start."""
    if config.getoption("markexpr") != "unit" or not collection_path.is_relative_to(TESTS):
        return None
    rel = collection_path.relative_to(TESTS).as_posix()
    return True if rel != "." and kind_by_place(rel) != "unit" else None


KINDS = ("e2e", "integration", "unit")  # the order the tests run in


def pytest_collection_modifyitems(config, items):
    """Mark every test with its kind, so that ``-m unit`` is the inner loop; and order
    the tests for the workers (:func:`worker_order`)."""
    kinds = {item.nodeid: kind_of(item) for item in items}
    for item in items:
        item.add_marker(kinds[item.nodeid])
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    items[:] = worker_order(items, kinds, workers)


def worker_order(items: list, kinds: dict[str, str], workers: int) -> list:
    """The tests in the order that gives ``workers`` xdist workers equal shares.

    ``make test`` schedules with ``--dist worksteal``: worker i takes the i-th of
    ``workers`` contiguous, equal parts of this order, and a worker that runs out
    takes the end of another's queue. So each part starts with its share of the
    end-to-end files, dealt round-robin (whole files: their module fixtures are
    built once), then integration tests, and ends with unit tests, the short
    ones a worker may take from another. The file of the shared Snakemake build
    (``pipeline``) is dealt first and its first test on it starts the run; in the
    other files, the tests on the build come last, when it is there to copy.
    """
    def on_pipeline(item) -> bool:
        return "pipeline" in item.fixturenames

    by_kind = {kind: [item for item in items if kinds[item.nodeid] == kind] for kind in KINDS}
    files: dict[Path, list] = {}
    for item in sorted(by_kind["e2e"], key=lambda item: not on_pipeline(item)):  # stable
        files.setdefault(item.path, []).append(item)
    parts: list[list] = [[] for _ in range(workers)]
    for index, tests in enumerate(files.values()):
        first = index == 0 and on_pipeline(tests[0])
        head = tests[:1] if first else []
        parts[index % workers] += head + sorted(tests[len(head):], key=on_pipeline)
    sizes, left = [], len(items)
    for index in range(workers):  # the share xdist's worksteal sends each worker
        sizes.append(left // (workers - index))
        left -= sizes[-1]
    integration, unit = by_kind["integration"], by_kind["unit"]
    room = [max(0, size - len(part)) for size, part in zip(sizes, parts, strict=True)]
    ordered = []
    for index, part in enumerate(parts):  # each part's share of both kinds, in that order
        share = min(room[index], round(len(integration) * room[index] / max(1, sum(room[index:]))))
        ordered += part + integration[:share] + unit[:room[index] - share]
        integration, unit = integration[share:], unit[room[index] - share:]
    return ordered + integration + unit


os.environ.pop("MLFLOW_TRACKING_URI", None)  # a shell's would send every run to its store


def pytest_collection_finish(session):
    """Once its tests are collected, a worker holds what they imported (torch, MLflow,
    Lightning, pandas): hundreds of thousands of objects that live as long as it does,
    and that each of the garbage collector's full passes would walk again. They are
    frozen out of its reach; and young objects are collected every 10,000 allocations
    rather than every 700, so that full passes come less often. (A process a test
    starts is a new interpreter, with Python's own settings; only what a worker forks,
    such as a DataLoader's workers, inherits these.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@pytest.fixture(autouse=True)
def _no_tracking_uri_in_the_environment():
    """No test sees MLFLOW_TRACKING_URI unless it sets it, nor leaves it behind:
    ``mlflow.set_tracking_uri`` exports it, and a later fixture's configs would read
    it as the user's store (monkeypatch would restore such a leaked value)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory):
    """One MLflow store for the session (creating its database takes seconds)."""
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def snapshots(tmp_path, store) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", store)


@pytest.fixture
def write_csv(tmp_path):
    """Write text (or bytes) to a file under tmp_path and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / "sources" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(tmp_path):
    """``dlforge data --store ... --snapshots ...`` against the tmp store."""

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return dlforge("data", "--store", str(tmp_path / "store"),
                       "--snapshots", str(tmp_path / "snapshots"), *args, **kwargs)

    return run


@pytest.fixture
def project(tmp_path, mlflow_dir):
    """``project.run(stage, *overrides)`` runs a stage on the toy snapshot under tmp_path.

    Each test registers under its own model name (the MLflow store is shared).
    """
    return make_project(tmp_path, mlflow_dir)


# The standard two versions: v1 (champion) learns the toy task, v2 (candidate) barely trains.
TWO_VERSIONS = (("optimizer.lr=0.02",), ("optimizer.lr=0.000001", "seed=3"))


@pytest.fixture(scope="session")
def two_versions_template(tmp_path_factory):
    """A toy project with the two standard versions registered in its own MLflow store
    (``root/mlruns``), trained once per test run (:func:`tests.helpers.built_once`);
    never handed to a test (tests get copies, see :func:`two_versions`). Its
    ``records`` are the two register records."""

    def build(root: Path) -> None:
        project = make_project(root, root / "mlruns")
        records = [project.release(*overrides) for overrides in TWO_VERSIONS]
        (root / "records.json").write_text(json.dumps(records))

    root = built_once(tmp_path_factory, "two-versions", build)
    project = make_project(root, root / "mlruns", snapshot=False)
    project.records = json.loads((root / "records.json").read_text())
    return project


@pytest.fixture
def two_versions(two_versions_template, tmp_path):
    """This test's own copy of the two standard versions (v1 champion, v2 candidate):
    folder, MLflow store and artefacts under tmp_path, the last training (v2's) in
    ``outputs/intent/train``; ``records`` holds the two register records. MLflow's
    default client points at the copy's store, as after a release in the test itself."""
    from dlforge.core.tracking import connect

    project = copy_project(two_versions_template, tmp_path / "project")
    connect(project.tracking_uri)  # never the template's store, which every test shares
    return project


def run_folder(config: pytest.Config) -> Path:
    """The folder every process of this test run shares (:func:`tests.helpers.shared_folder`)."""
    return shared_folder(config._tmp_path_factory)  # noqa: SLF001 - pytest's own factory


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """dlforge's cache (the strict check's sections, the empty MLflow store) is the
    run's, shared by its workers and their processes, not the user's."""
    from dlforge.core.io import CACHE_VARIABLE

    os.environ[CACHE_VARIABLE] = str(run_folder(config) / "dlforge-cache")


@pytest.fixture(scope="session")
def postgres(request):
    """The test run's one PostgreSQL server on loopback, started by the first worker
    that needs it (tests/services.py); a fresh database per test: ``database()``."""
    from tests.services import shared_postgres

    return shared_postgres(run_folder(request.config))


def pytest_sessionfinish(session):
    """The main process stops the run's PostgreSQL server once every worker is done."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        from tests.services import stop_shared_postgres

        stop_shared_postgres(run_folder(session.config))
