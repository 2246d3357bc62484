"""Multi-process training launched from the frozen config, never from the Hydra CLI.

``dlforge train trainer=ddp trainer.devices=N`` resolves the config once and
writes it to ``paths.train_dir/config.yaml``; the ranks are then started with
torchrun running ``python -m dlforge.train.worker config.yaml``. Under SLURM or
an external torchrun, start that worker command directly on every node (see the
README); Lightning reads the rank layout from the environment.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from dlforge.errors import DlforgeError

log = logging.getLogger(__name__)


def world_size(trainer: DictConfig) -> int:
    devices = trainer.devices
    per_node = devices if isinstance(devices, int) else len(devices) if devices != "auto" else 1
    return max(per_node, 1) * trainer.num_nodes


def under_launcher() -> bool:
    """True inside a rank started by torchrun or SLURM (so we must not start ranks)."""
    return "LOCAL_RANK" in os.environ or "SLURM_PROCID" in os.environ


def launch(frozen_path: Path, trainer: DictConfig) -> dict:
    """Start the local ranks with torchrun and wait; return rank 0's metrics."""
    if trainer.num_nodes > 1 or under_launcher():
        raise DlforgeError(
            f"<trainer.num_nodes={trainer.num_nodes}> spans several machines: start the ranks "
            f"with your launcher from the frozen config, e.g. `srun python -m "
            f"dlforge.train.worker {frozen_path}` (see README: multi-node)")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={trainer.devices}", "-m", "dlforge.train.worker",
               str(frozen_path)]
    log.info("launching %d ranks <trainer.devices=%s>: %s", trainer.devices, trainer.devices,
             " ".join(command))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    shutil.rmtree(frozen_path.parent / "ranks", ignore_errors=True)  # reports of earlier runs
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise DlforgeError(f"a training rank failed (exit {result.returncode}); see the log above")
    out = frozen_path.parent
    _check_ranks_agree(out)
    return json.loads((out / "metrics.json").read_text())


def _check_ranks_agree(out: Path) -> None:
    reports = [json.loads(p.read_text()) for p in sorted((out / "ranks").glob("rank*.json"))]
    digests = {r["weights_sha256"] for r in reports}
    if len(digests) != 1:
        raise DlforgeError(f"ranks ended with different weights ({reports}): training diverged "
                           "between processes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
