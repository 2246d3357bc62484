"""Multi-process training launched from the frozen config, never from the Hydra CLI.

``dlforge train trainer=ddp trainer.devices=N`` resolves the config once,
opens the MLflow run and writes ``paths.train_dir/config.yaml``; the ranks are
then started from that file as ``python -m dlforge.train.worker config.yaml``:

- on one machine with torchrun (``--standalone``);
- inside a SLURM allocation (sbatch) with ``srun``, across ``trainer.num_nodes``;
- elsewhere (torchrun on several hosts, Kubernetes) with ``launch=false``, which
  prints the worker command to start on every node.

Lightning reads the rank layout from the environment the launcher sets.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.core.layout import TrainFiles

log = logging.getLogger(__name__)


def world_size(trainer: DictConfig) -> int:
    devices = trainer.devices
    per_node = devices if isinstance(devices, int) else len(devices) if devices != "auto" else 1
    return max(per_node, 1) * trainer.num_nodes


def under_launcher() -> bool:
    """True inside a rank started by torchrun or srun (so we must not start ranks)."""
    return "LOCAL_RANK" in os.environ or "SLURM_PROCID" in os.environ


def in_slurm_job() -> bool:
    """True in an sbatch/salloc allocation, where ranks are started with srun."""
    return "SLURM_JOB_ID" in os.environ and "SLURM_PROCID" not in os.environ


def worker_command(frozen_path: Path) -> list[str]:
    return [sys.executable, "-m", "dlforge.train.worker", str(frozen_path)]


def check_launch(trainer: DictConfig, launching: bool) -> None:
    """Fail before any work when the ranks cannot be started from here."""
    if launching and trainer.num_nodes > 1 and not in_slurm_job():
        raise DlforgeError(
            f"<trainer.num_nodes={trainer.num_nodes}>: several machines need a launcher. Fix: "
            "run this command inside an sbatch script (ranks start with srun), or add "
            "launch=false and start the printed worker command with torchrun on every node")


def launch(frozen_path: Path, trainer: DictConfig) -> dict:
    """Start the ranks (torchrun here, or srun in a SLURM job), wait, return rank 0's metrics."""
    nodes, per_node = trainer.num_nodes, world_size(trainer) // trainer.num_nodes
    if in_slurm_job():
        command = ["srun", f"--nodes={nodes}", f"--ntasks-per-node={per_node}",
                   *worker_command(frozen_path)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={per_node}", *worker_command(frozen_path)[1:]]
    log.info("launching %d ranks <trainer.devices=%s trainer.num_nodes=%s>: %s",
             nodes * per_node, trainer.devices, nodes, " ".join(command))
    # torchrun --standalone picks a free local port; under SLURM, Lightning takes
    # the main address and port from the job's node list and id.
    files = TrainFiles(frozen_path.parent)  # the frozen config is written in train_dir
    shutil.rmtree(files.ranks, ignore_errors=True)  # reports of earlier runs
    result = subprocess.run(command)
    if result.returncode != 0:
        raise DlforgeError(f"a training rank failed (exit {result.returncode}); see the log above")
    _check_ranks_agree(files)
    return json.loads(files.metrics.read_text())


def _check_ranks_agree(files: TrainFiles) -> None:
    reports = [json.loads(p.read_text()) for p in files.rank_reports()]
    digests = {r["weights_sha256"] for r in reports}
    if len(digests) != 1:
        raise DlforgeError(f"ranks ended with different weights ({reports}): training diverged "
                           "between processes")

