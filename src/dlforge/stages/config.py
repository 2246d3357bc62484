"""Where a stage's values come from, in one place.

A value of a stage's config comes from five sources; a later one wins:

    1. defaults        conf/<stage>.yaml and its groups
    2. experiment      conf/experiment/<name>.yaml (``experiment=NAME``)
    3. params.yaml     what ``dvc exp run -S`` set (sweep and train only)
    4. best.yaml       the sweep's best parameters (train, when ``hpo.enabled``)
    5. command line    overrides given to the command

Hydra composes 1, 2 and 5 (:func:`stage_overrides` puts 3 before the command
line); :func:`apply_best` applies 4 to the composed config, skipping the keys
given on the command line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from dlforge.core.config import compose, has_key
from dlforge.core.errors import DlforgeError, InvalidInput
from dlforge.stages import params

log = logging.getLogger(__name__)


def stage_overrides(name: str, command_line: list[str]) -> list[str]:
    """The Hydra overrides of stage ``name``: the values set in the experiment's section of
    params.yaml (for the keys its config has), then the command line, which wins."""
    exp = next((arg.split("=", 1)[1] for arg in command_line
                if arg.startswith("experiment=")), None)
    if name not in params.STAGES or exp is None:
        return list(command_line)
    tracked = params.overrides(exp)
    if not tracked:
        return list(command_line)
    cfg = compose(name, command_line)
    kept = [o for o in tracked if has_key(cfg, o.split("=", 1)[0])]
    log.info("from %s: %s <dvc exp run -S>", params.PARAMS_FILE, " ".join(kept) or "nothing")
    return [*kept, *command_line]


def read_best(path: Path) -> list[str]:
    """The override strings in a sweep's ``best.yaml``."""
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
