# The two commands of the README: `make run` (the main job on the bundled
# sample) and `make test` (the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
# Without CUDA the CPU build of torch is installed first, so that no requirement
# pulls the multi-GB CUDA build. Elsewhere pass e.g.
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_VERSION  ?= 2.13.0
TORCH_PIP_ARGS ?=

.PHONY: run test test-fast lint bench services docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# A plain `torch` requirement pulls a multi-GB CUDA build; without CUDA take the CPU build.
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS); fi
	$(BIN)/pip install --quiet -e ".[dev,transformers]"
	touch $(STAMP)

# The sample data ships as an in-repository DVC remote; pulling it is offline.
SAMPLE := data/raw/clinc150/part-a.csv
$(SAMPLE): data.dvc | $(STAMP)
	$(BIN)/dvc pull --quiet --remote bundled data.dvc

run: $(STAMP) $(SAMPLE)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --profile workflow/profiles/local --cores $(CORES)

# The servers the scale-out tests start themselves (PostgreSQL, nginx), and rsync
# (Snakemake's fs storage), from Debian's packages where this machine lacks them.
services:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null \
	    || ! command -v nginx >/dev/null || ! command -v rsync >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
			postgresql nginx rsync && \
		$$SUDO sh -c 'systemctl disable --now nginx postgresql 2>/dev/null || true'; fi

# One worker more than the CPUs: a worker waiting on a server, a lock or a subprocess
# leaves its core to the others (tests/conftest.py orders the tests for them). The unit
# tests seldom wait: one worker per CPU.
CPUS         := $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)))')
TEST_WORKERS ?= $(shell echo $$(( $(CPUS) + 1 )))
FAST_WORKERS ?= $(CPUS)

# Each run's files (projects, stores, venvs) in a folder of its own, removed
# after a passing run and named after a failing one. (pytest's own would keep three
# runs and delete the oldest as the next one ends, within its time.) The run keeps the
# bytecode it compiles, even where PYTHONDONTWRITEBYTECODE is set: pip compiles none of
# an editable install, every process a test starts imports dlforge, and every xdist
# worker imports the tests.
PYTEST = runs=$$(mktemp -d "$${TMPDIR:-/tmp}/dlforge-tests.XXXXXX") && \
	PATH=$(abspath $(BIN)):$$PATH PYTHONDONTWRITEBYTECODE= $(BIN)/pytest --basetemp=$$runs/run
KEEP_ON_FAILURE = status=$$?; if [ $$status -eq 0 ]; then rm -rf "$$runs"; \
	else echo "the run's files: $$runs/run"; fi; exit $$status

test: $(STAMP) $(SAMPLE) services
	@$(PYTEST) -n $(TEST_WORKERS) --dist worksteal --durations=25; $(KEEP_ON_FAILURE)

# The inner loop: the `unit` tests only, no servers started (tests/conftest.py gives
# every test one of `unit`, `integration`, `e2e` by where it lives). Before a push,
# `make test`.
test-fast: $(STAMP) $(SAMPLE)
	@$(PYTEST) -n $(FAST_WORKERS) --dist worksteal -m unit --durations=10; $(KEEP_ON_FAILURE)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py

# The documentation site (mkdocs.yml) into site/, strictly: a warning fails it. The
# build generates the benchmarks page from benchmarks/results/*.json itself
# (benchmarks/render_docs.py); tests/test_docs.py runs the same build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
