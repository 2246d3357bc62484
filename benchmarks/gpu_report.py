"""The GPU check's results file, assembled from what ``gpu_check.sh``'s steps left.

Usage:
    python benchmarks/gpu_report.py --work DIR --out benchmarks/results/gpu.json

``DIR`` (``gpu_check.sh`` fills it) holds:

    steps.tsv           one line per step: name, exit status (or "skipped"), seconds
    pytest.xml          the JUnit report of ``pytest tests/gpu``
    bench.json          ``bench_gpu.py``'s figures
    ROUND.STAGE.out     the JSON a ``dlforge`` stage printed (ROUND: det, nondet;
    ROUND.STAGE.log     STAGE: train, evaluate, register, verify) and its log

The results file holds ``bench.json``'s figures with the steps, the test counts
and each verify round's verdict beside them (a step that failed: its exit status
and the end of its log). Prints a summary; exits 1 when a step failed, a GPU test
failed or the deterministic round's verdict is not identical or within tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

COMMAND = "bash benchmarks/gpu_check.sh"
ROUNDS = {"det": True, "nondet": False}  # round -> trainer.deterministic
STAGES = ("train", "evaluate", "register", "verify")
PASSING = ("identical", "within tolerance")
VERIFY_EXIT = (0, 1)  # a verdict (1: differs); anything else: the command failed
TAIL = 600  # characters of a failed step's log kept


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def read_steps(work: Path) -> dict[str, dict]:
    """``{step: {exit, seconds}}`` from ``steps.tsv``; exit is None for a skipped step."""
    steps = {}
    path = work / "steps.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, status, seconds = line.split("\t")
        steps[name] = {"exit": None if status == "skipped" else int(status),
                       "seconds": int(seconds)}
    return steps


def test_counts(junit: Path) -> dict:
    """Passed, failed, errors and skipped of a JUnit report, and the failing tests."""
    if not junit.is_file():
        return {"ran": False}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failing = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return {"ran": True, "passed": counts["tests"] - counts["failures"] - counts["errors"]
            - counts["skipped"], "failed": counts["failures"], "errors": counts["errors"],
            "skipped": counts["skipped"], "failing": failing}


def log_tail(path: Path) -> str:
    text = path.read_text(errors="replace").strip() if path.is_file() else ""
    return " ".join(text[-TAIL:].split())


def verify_round(work: Path, name: str, steps: dict) -> dict:
    """One round: where it stopped, or the verdict and the metric differences."""
    row = {"trainer.deterministic": ROUNDS[name]}
    for stage in STAGES:
        step = steps.get(f"{name}.{stage}")
        ok = step is not None and step["exit"] in (VERIFY_EXIT if stage == "verify" else (0,))
        if not ok:
            row.update(stopped_at=stage, exit=step and step["exit"],
                       log=log_tail(work / f"{name}.{stage}.log"))
            return row
    trained = json.loads((work / f"{name}.train.out").read_text())
    verdict = json.loads((work / f"{name}.verify.out").read_text())
    differences = {k: v["difference"] for k, v in verdict["differences"].items()}
    row.update(verdict=verdict["verdict"], compared=verdict["compared"],
               details=verdict["details"], tolerance=verdict["tolerance"],
               max_difference=max(differences.values(), default=None),
               differences=differences, test_acc=trained.get("test/acc"),
               device=verdict["environment"]["device"], train_s=trained.get("train_seconds"),
               verify_s=verdict["seconds"], attested=verdict["attested"])
    return row


def problems(report: dict) -> list[str]:
    """What makes the check fail: a step that failed, a failing GPU test, a deterministic
    re-run that is not identical or within tolerance."""
    found = [f"step {name} exited {step['exit']}" for name, step in report["steps"].items()
             if step["exit"] is not None
             and step["exit"] not in (VERIFY_EXIT if name.endswith(".verify") else (0,))]
    found += [f"step {name} was skipped (out of time)" for name, step in report["steps"].items()
              if step["exit"] is None]
    tests = report["tests"]
    if tests.get("failed") or tests.get("errors"):
        found.append(f"GPU tests failing: {', '.join(tests['failing'])}")
    det = report["verify"]["det"]
    if det.get("verdict") not in PASSING:
        outcome = det.get("verdict") or f"stopped at {det['stopped_at']}"
        found.append(f"deterministic verify: {outcome}")
    return found


def assemble(work: Path) -> dict:
    """The results file's content."""
    bench_path = work / "bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.is_file() else {}
    if "environment" not in bench:
        import torch
        from bench_gpu import environment

        bench["environment"] = environment("cuda" if torch.cuda.is_available() else "cpu")
    steps = read_steps(work)
    report = {"benchmark": "bench_gpu", "command": COMMAND,
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "environment": bench.pop("environment"), "steps": steps,
              "tests": test_counts(work / "pytest.xml"),
              "verify": {name: verify_round(work, name, steps) for name in ROUNDS}}
    bench.pop("command", None), bench.pop("date", None), bench.pop("benchmark", None)
    report.update(bench)
    report["problems"] = problems(report)
    return report


def summary(report: dict) -> str:
    """A few lines for the person who ran the check."""
    lines = [f"device: {report['environment']['device']}, torch {report['environment']['torch']}"
             f", CUDA {report['environment']['cuda']}"]
    tests = report["tests"]
    lines.append("tests/gpu: " + (f"{tests['passed']} passed, {tests['failed']} failed, "
                                  f"{tests['errors']} errors, {tests['skipped']} skipped"
                                  if tests["ran"] else "did not run"))
    for precision, row in report.get("throughput", {}).items():
        lines.append(f"{precision}: plain {row['plain_samples_per_s']:,.1f}, dlforge "
                     f"{row['dlforge_samples_per_s']:,.1f} samples/s (ratio "
                     f"{row['ratio_dlforge_over_plain']}); loader keeps up: "
                     f"{row.get('loader_keeps_up')}")
    for row in report["verify"].values():
        outcome = (f"{row['verdict']} (max difference {row['max_difference']})"
                   if "verdict" in row else f"stopped at {row['stopped_at']}")
        deterministic = str(row["trainer.deterministic"]).lower()
        lines.append(f"verify, trainer.deterministic={deterministic}: {outcome}")
    lines += [f"PROBLEM: {p}" for p in report["problems"]] or ["no problems"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = assemble(args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"figures: {args.out}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
