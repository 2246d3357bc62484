"""``best.yaml``: a sweep's best parameters, as Hydra overrides of the training config.

    # best trial 7 of study intent-3fa2c1d0: val/acc=0.912 (maximize)
    - optimizer.lr=0.0031
    - model.net.hidden_dim=256

``dlforge train`` applies them when the experiment enables the sweep
(``hpo.enabled``); an override given on the command line wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from dlforge.core.config import has_key
from dlforge.core.errors import DlforgeError, InvalidInput

log = logging.getLogger(__name__)


def write_best(path: Path, overrides: list[str], header: str) -> None:
    """Write atomically: a killed sweep never leaves half a file for train to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"# {header}\n# Applied by `dlforge train` when hpo.enabled is true.\n"
                   + yaml.safe_dump(overrides, default_flow_style=False))
    os.replace(tmp, path)


def read_best(path: Path) -> list[str]:
    """The override strings in ``path``."""
    try:
        overrides = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InvalidInput(path, f"is not YAML ({err})", "re-run `dlforge sweep`") from None
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        raise InvalidInput(path, "is not a list of `key=value` overrides", "re-run `dlforge sweep`")
    return overrides


def apply_best(cfg: DictConfig, path: Path, command_line: list[str]) -> DictConfig:
    """``cfg`` with the overrides in ``path``, except keys set on the command line.

    Raises:
        DlforgeError: when ``path`` is missing, naming the command that writes it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not path.is_file():
        raise DlforgeError(f"experiment '{cfg.experiment_name}' enables the sweep (hpo.enabled) "
                           f"but {path} is missing. Fix: run `dlforge sweep experiment="
                           f"{cfg.experiment_name}` first, or train with hpo.enabled=false")
    parser = OverridesParser.create()
    given = {o.key_or_group.lstrip("+~") for o in parser.parse_overrides(command_line)}
    tuned = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for override in parser.parse_overrides(read_best(path)):
        key = override.key_or_group
        if key in given:
            log.info("keeping %s from the command line over %s", key, path)
            continue
        if not has_key(tuned, key):
            raise InvalidInput(path, f"sets {key}, which the training config does not have",
                               "re-run `dlforge sweep` after changing the config")
        OmegaConf.update(tuned, key, override.value(), merge=False)
        log.info("best parameter from the sweep <%s=%s>", key, override.value())
    return tuned


def command_line_overrides() -> list[str]:
    """The overrides the running Hydra app was given (none outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
