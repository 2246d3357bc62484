"""The intent target: `dlforge train experiment=intent` as a user runs it.

Usage:
    python benchmarks/bench_intent.py

Runs the default training of the ``intent`` experiment (the snapshot named by
outputs/intent/snapshot.json; run `make run` or the ingest and snapshot stages
first) in a fresh process with its outputs and MLflow store in a temporary
folder, and reports the whole command's wall time and the test accuracy.
Targets: test accuracy >= 0.85 in under 3 minutes on a 2-core CPU machine.
Writes benchmarks/results/bench_intent.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_ACC, TARGET_SECONDS = 0.85, 180.0


def main() -> int:
    summary = json.loads((ROOT / "outputs" / "intent" / "snapshot.json").read_text())
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "dlforge", "train", "experiment=intent",
                   f"paths.root={root}", f"paths.snapshot_dir={ROOT / 'data' / 'snapshots'}",
                   f"snapshot={summary['version']}", "trainer.enable_progress_bar=false"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1
        metrics = json.loads(result.stdout)
    report = {"snapshot": summary["version"], "wall_seconds": round(seconds, 1),
              "test_acc": metrics["test/acc"], "val_acc": metrics["val/acc"],
              "epochs": metrics["epochs"], "fit_seconds": metrics["train_seconds"],
              "ok": metrics["test/acc"] >= TARGET_ACC and seconds < TARGET_SECONDS}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_intent.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"dlforge train experiment=intent: {seconds:.1f} s wall ({metrics['epochs']} epochs, "
          f"fit {metrics['train_seconds']} s), test acc {metrics['test/acc']:.4f} "
          f"(targets: >= {TARGET_ACC} in < {TARGET_SECONDS:.0f} s) "
          f"{'ok' if report['ok'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
