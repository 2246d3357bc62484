"""What several stages read of an experiment's earlier stages.

    experiment_snapshot(cfg)   the snapshot to train, sweep, evaluate or monitor on
    trained(cfg)               the frozen config of the last finished training

Each error names the file it looked at and the command that writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError, NotFound
from dlforge.core.layout import ExperimentLayout
from dlforge.data.snapshot import Snapshot


def experiment_snapshot(cfg: DictConfig) -> Snapshot:
    """The experiment's snapshot: version ``snapshot=`` when the config sets one, else the
    one the snapshot stage recorded in ``<exp_dir>/snapshot.json``; its splits are checked
    against the seal in the project's store (``paths.store_dir``), never one its manifest
    leads to."""
    name = cfg.experiment_name
    record = ExperimentLayout.from_config(cfg).snapshot_summary
    fix = f"run `dlforge snapshot experiment={name}`"
    if cfg.get("snapshot"):
        folder = Path(cfg.paths.snapshot_dir) / cfg.dataset.name / str(cfg.snapshot)
    elif not record.is_file():
        raise DlforgeError(f"no snapshot for experiment '{name}' ({record} is missing). Fix: "
                           f"{fix} (after `dlforge ingest experiment={name}`), or set "
                           "snapshot=VERSION")
    else:
        try:
            folder = Path(json.loads(record.read_text())["path"])
        except (ValueError, KeyError, TypeError):
            raise DlforgeError(f"{record} has no snapshot 'path'. Fix: {fix} again") from None
    try:
        return Snapshot.open(folder, store=cfg.paths.store_dir)
    except NotFound:
        raise DlforgeError(f"snapshot {folder} does not exist. Fix: {fix} or pick a version "
                           f"from `dlforge data show {cfg.dataset.name}`") from None


def trained(cfg: DictConfig) -> dict:
    """The frozen config of the experiment's last training, or an error naming the fix."""
    files = ExperimentLayout.from_config(cfg).train
    frozen, state = files.frozen_config, files.run_state
    name = cfg.experiment_name
    if not frozen.is_file() or not files.model.is_dir():
        raise DlforgeError(f"no trained model for experiment '{name}' under {files.dir}. "
                           f"Fix: run `dlforge train experiment={name}`")
    if json.loads(state.read_text()).get("status") != "finished":
        raise DlforgeError(f"the last training of '{name}' did not finish ({state}). Fix: run "
                           f"`dlforge train experiment={name}` again (it resumes)")
    # Written resolved; a URL with a password stays ${oc.env:VAR}, for the process that needs it.
    return OmegaConf.to_container(OmegaConf.load(frozen), resolve=False)
