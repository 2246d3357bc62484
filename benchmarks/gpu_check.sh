#!/usr/bin/env bash
# The GPU check: what only a machine with a CUDA GPU can tell, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh      # from anywhere; results in ${OUT:-benchmarks/results}
#
# Steps, each under `timeout` (seconds; all of them within GPU_CHECK_SECONDS, 450):
#   0. preflight  (60)   a Python that imports torch, lightning and dlforge ($PYTHON, else
#                        .venv/bin/python, else python3; src/ on PYTHONPATH if dlforge is not
#                        installed) and sees a CUDA device; else a message and exit 2.
#   1. pytest     (120)  pytest tests/gpu; the pass/fail counts.
#   2. bench      (150)  benchmarks/bench_gpu.py: dlforge's training path against a plain
#                        PyTorch loop, bf16-mixed and 32-true; the snapshot image loader's
#                        images/s against that appetite.
#   3. verify     (rest) in a scratch copy of conf/ (the repository's outputs/, data/ and
#                        mlruns/ untouched): ingest and snapshot digits, then twice (with
#                        trainer.deterministic=true, then false) train 2 epochs on the GPU,
#                        evaluate, register and `dlforge verify experiment=digits`. A GPU
#                        training is compared on its test metrics within verify.tolerance,
#                        deterministic or not (bit for bit only on CPU: stages/rerun.py).
#                        Each command: train 120, verify 150, the others 60 (~240 in all).
#   4. report     (30)   benchmarks/gpu_report.py writes gpu.json and prints a summary.
#
# Logs and each step's output stay in ${OUT:-benchmarks/results}/gpu_check/. Exit status:
# 0 all well, 1 a step, a GPU test or the deterministic verify failed, 2 no usable Python
# or no GPU. GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (a slow dry run of the
# script itself; give it GPU_CHECK_SECONDS=1500 on a small machine).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=${OUT:-$ROOT/benchmarks/results}
WORK=$RESULTS/gpu_check
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_SECONDS:-450}
REPORT_SECONDS=30 # kept back for step 4
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8} # deterministic cuBLAS

rm -rf "$WORK"
mkdir -p "$WORK"
: >"$WORK/steps.tsv"

# run_step NAME SECONDS CMD...: run CMD under timeout (never past the budget), its stdout
# to NAME.out, stderr to NAME.log; record its exit status and time in steps.tsv.
run_step() {
	local name=$1 limit=$2 left start rc=0
	shift 2
	left=$((BUDGET - REPORT_SECONDS - SECONDS))
	if [ "$left" -lt "$limit" ]; then limit=$left; fi
	if [ "$limit" -le 0 ]; then
		printf '%s\tskipped\t0\n' "$name" >>"$WORK/steps.tsv"
		echo "[$name] skipped: the time budget is spent"
		return 124
	fi
	start=$SECONDS
	timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" || rc=$?
	printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$WORK/steps.tsv"
	echo "[$name] exit $rc in $((SECONDS - start)) s (limit $limit s)"
	return "$rc"
}

# --- 0. preflight -------------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
	PY=$PYTHON
elif [ -x .venv/bin/python ]; then
	PY=$ROOT/.venv/bin/python
else
	PY=$(command -v python3 || true)
fi
# One interpreter start (torch takes seconds to import): the imports, Lightning found
# (the tests import it next), then "1" or "0" for a CUDA device, and the build of torch.
PROBE='import importlib.util, torch, dlforge
assert importlib.util.find_spec("lightning"), "No module named lightning"
print(int(torch.cuda.is_available()), "torch", torch.__version__, "built for CUDA", torch.version.cuda)'
if [ -z "$PY" ]; then
	echo "gpu_check: no python3 on PATH. Fix: set PYTHON=/path/to/python" >&2
	exit 2
elif ! FOUND=$(timeout 60 "$PY" -c "$PROBE" 2>"$WORK/preflight.log"); then
	if FOUND=$(PYTHONPATH=$ROOT/src timeout 60 "$PY" -c "$PROBE" 2>>"$WORK/preflight.log"); then
		export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
	else
		echo "gpu_check: $PY cannot import torch, lightning and dlforge:" >&2
		tail -n 3 "$WORK/preflight.log" >&2
		echo "Fix: build .venv with a CUDA build of torch (make test, or python3 -m venv .venv" \
			"&& .venv/bin/pip install -e '.[dev]'), or set PYTHON to such an interpreter" >&2
		exit 2
	fi
fi
FOUND=${FOUND##*$'\n'}  # the probe's line, after anything an import printed
if [ "$DEVICE" = cuda ] && [ "${FOUND%% *}" != 1 ]; then
	echo "gpu_check: $PY sees no CUDA device (${FOUND#* }). Fix: run on a machine with a" \
		"GPU and a CUDA build of torch, or GPU_CHECK_DEVICE=cpu for a dry run" >&2
	exit 2
fi
echo "gpu_check: $PY on $DEVICE, results in $RESULTS, logs in $WORK"

# --- 1. the GPU tests ---------------------------------------------------------------
run_step pytest 120 "$PY" -m pytest tests/gpu -q -p no:cacheprovider \
	--junitxml="$WORK/pytest.xml" || true
tail -n 1 "$WORK/pytest.out" || true

# --- 2. training throughput and the image loader ------------------------------------
BENCH=(--device "$DEVICE")
if [ "$DEVICE" = cpu ]; then BENCH+=(--steps 3); fi
run_step bench 150 "$PY" benchmarks/bench_gpu.py "${BENCH[@]}" --out "$WORK/bench.json" || true

# --- 3. dlforge verify on the GPU, in a scratch project -----------------------------
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/dlforge-gpu-check.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
cp -r conf "$SCRATCH/"
DLFORGE=(env -C "$SCRATCH" -u MLFLOW_TRACKING_URI -u DLFORGE_CONFIG_DIR "$PY" -m dlforge)
ACCELERATOR=$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)

# verify_round NAME DETERMINISTIC: train digits, evaluate, register, verify.
verify_round() {
	local name=$1 deterministic=$2
	run_step "$name.train" 120 "${DLFORGE[@]}" train experiment=digits trainer.max_epochs=2 \
		"trainer.accelerator=$ACCELERATOR" "trainer.deterministic=$deterministic" \
		trainer.enable_progress_bar=false || return 0
	run_step "$name.evaluate" 60 "${DLFORGE[@]}" evaluate experiment=digits || return 0
	run_step "$name.register" 60 "${DLFORGE[@]}" register experiment=digits || return 0
	run_step "$name.verify" 150 "${DLFORGE[@]}" verify experiment=digits --json || true
}

if run_step setup.ingest 60 "${DLFORGE[@]}" ingest experiment=digits &&
	run_step setup.snapshot 60 "${DLFORGE[@]}" snapshot experiment=digits; then
	verify_round det true
	verify_round nondet false
fi

# --- 4. the results file --------------------------------------------------------------
rc=0
timeout "$REPORT_SECONDS" "$PY" benchmarks/gpu_report.py --work "$WORK" \
	--out "$RESULTS/gpu.json" || rc=$?
echo "gpu_check: done in $SECONDS s, exit $rc"
exit "$rc"
