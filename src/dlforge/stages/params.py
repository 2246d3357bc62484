"""DVC's view of the training parameters: ``params.yaml``, composed from conf/.

DVC tracks parameters in ``params.yaml``. Here that file is never edited by
hand: it is the Hydra composition of ``conf/params.yaml`` (the training groups),
written by ``dlforge workflow dvc`` and rewritten by DVC itself when
``dvc exp run -S KEY=VALUE`` runs (Hydra composition is enabled in
``.dvc/config``). What params.yaml holds beyond that composition is what the
user set; the sweep and train stages apply it as overrides.

The file ``dlforge workflow dvc`` writes starts with :data:`GENERATED`: it holds
no value of the user's, so the stages read nothing from it. Without that line
the file was composed by DVC from the configs as they are now, plus ``-S``
values. Either way an edit of a file under conf/ takes effect even when
params.yaml was written before it (under Snakemake nothing rewrites it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from dlforge.core.config import dotted

log = logging.getLogger(__name__)

PARAMS_FILE = Path("params.yaml")
CONFIG_NAME = "params"  # conf/params.yaml
GENERATED = "# Written by `dlforge workflow dvc` from conf/params.yaml"
STAGES = ("sweep", "train")  # the stages that read params.yaml


def compose_params() -> dict:
    """conf/params.yaml composed and resolved, as DVC composes it."""
    from omegaconf import OmegaConf

    from dlforge.core.config import compose

    return OmegaConf.to_container(compose(CONFIG_NAME), resolve=True)


def write_params_file(path: Path = PARAMS_FILE) -> Path:
    """Write params.yaml as DVC's Hydra composition would (no overrides)."""
    from omegaconf import OmegaConf

    header = (f"{GENERATED}: the training parameters DVC\n"
              "# tracks. Set them in conf/ or with `dvc exp run -S KEY=VALUE`, not here.\n")
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(compose_params())))
    return path


def overrides(path: Path = PARAMS_FILE) -> list[str]:
    """``key=value`` Hydra overrides for every leaf of params.yaml that differs from conf/
    (none when ``dlforge workflow dvc`` wrote the file)."""
    if not path.is_file():
        return []
    text = path.read_text()
    if text.startswith(GENERATED):
        return []
    try:
        given = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        from dlforge.core.errors import DlforgeError

        raise DlforgeError(f"{path} is not valid YAML ({err}). Fix: regenerate it with "
                           "`dlforge workflow dvc`") from None
    base = dotted(compose_params())
    changed = {k: v for k, v in dotted(given).items() if k not in base or base[k] != v}
    return [f"{key}={json.dumps(value)}" for key, value in sorted(changed.items())]
