"""One training rank: ``python -m dlforge.train.worker FROZEN_CONFIG``.

Started by torchrun (or srun) with the rank layout in the environment. Every
rank writes ``ranks/rank<N>.json`` with a digest of its final weights, so the
launcher can check that data-parallel ranks ended identical.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.core.process import preload

# What a process that trains imports: loaded first by each rank and each sweep worker.
TRAINING_LIBRARIES = ("lightning.pytorch", "mlflow", "dlforge.train.fit")


def main(path: str) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from dlforge.train.fit import fit

    frozen = yaml.safe_load(Path(path).read_text())
    report = {}
    metrics = fit(frozen, report=report)
    files = ExperimentLayout.from_paths(frozen["paths"]).train
    write_json_atomic(files.rank_report(report["rank"]), report)
    if metrics:
        logging.getLogger(__name__).info("rank 0 done: %s", metrics)


if __name__ == "__main__":
    preload(TRAINING_LIBRARIES)  # a process of its own
    main(sys.argv[1])
