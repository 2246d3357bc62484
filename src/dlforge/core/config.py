"""Finding and composing a project's Hydra configs.

Two folders make up the config search path, in this order:

    <project>/conf/         the project's own: datasets, experiments, its models,
                            and any packaged config it overrides (same name wins)
    dlforge/conf/ (package) the base configs: the entry config of each stage and
                            the groups trainer, optimizer, scheduler, callbacks,
                            datamodule, tracking, hpo, registry, paths, split, model

The project's folder is the primary config dir; the packaged one is appended to
Hydra's search path by the ``hydra_plugins.dlforge_searchpath`` plugin, so that
every composition (the stage commands, ``dlforge workflow dvc``, a plain
``hydra.compose``) finds both.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.urls import hide_passwords

ENV_CONFIG_DIR = "DLFORGE_CONFIG_DIR"
PACKAGED_CONF = Path(__file__).resolve().parents[1] / "conf"


def conf_dir() -> Path:
    """The project's config folder: ``$DLFORGE_CONFIG_DIR``, else ``./conf``, else (outside
    a project: serving or predicting from a registered model) the packaged base configs."""
    explicit = os.environ.get(ENV_CONFIG_DIR)
    path = Path(explicit or "conf").resolve()
    if path.is_dir():
        return path
    if explicit:
        raise DlforgeError(f"{ENV_CONFIG_DIR}={explicit}: no such folder. Fix: point it at "
                           f"the project's conf/ folder, or unset it")
    return PACKAGED_CONF


def config_file(name: str) -> Path | None:
    """Where ``name`` (``train.yaml``, ``model/text_cnn.yaml``) is found on the search path:
    the project's copy first, then the packaged one; None when neither has it."""
    for root in dict.fromkeys([conf_dir(), PACKAGED_CONF]):
        if (root / name).is_file():
            return root / name
    return None


def has_key(cfg, dotted: str) -> bool:
    """Whether ``dotted`` (``a.b.c``) is a key of ``cfg``, even one whose value is null."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, dotted, default=_MISSING) is not _MISSING


_MISSING = object()


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = (),
            hydra_config: bool = False):
    """Compose ``<config_name>.yaml`` with Hydra overrides (no Hydra run dir, no logging);
    ``hydra_config`` keeps the ``hydra`` node (the choices made).

    Raises:
        DlforgeError: when the configs do not compose, with the file and the fix (and
            without the passwords of the overrides' URLs).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides),
                                 return_hydra_config=hydra_config)
    except HydraException as err:
        problem = composition_problem(config_name, err)
        for override in overrides:
            problem = hide_passwords(problem, override.split("=", 1)[-1].strip("'\""))
        raise DlforgeError(problem) from None


def composition_problem(config_name: str, err: Exception) -> str:
    """Hydra's reason a composition failed, with what to do about it."""
    reason = str(err).strip()
    if "To append to your config use" in reason:  # a key the config does not have
        fix = "Fix: check the key's spelling; `+key=value` adds a key the config lacks"
    elif "Could not override" in reason or "Could not append to config" in reason:
        fix = (f"Fix: override one of the config groups ({', '.join(config_groups())}), or add "
               "a group of the project's as `- /group: option`, without override")
    elif "Could not find" in reason or "Could not load" in reason:
        fix = ("Fix: name a config that exists, in the project's conf/ or dlforge's "
               "packaged configs (the options are listed above)")
    else:
        fix = "Fix: correct the file named above"
    return f"the configs of `{config_name}` do not compose: {reason}\n{fix}"


def config_groups() -> list[str]:
    """The config groups on the search path: the project's and the packaged ones."""
    roots = dict.fromkeys([conf_dir(), PACKAGED_CONF])
    return sorted({d.name for root in roots for d in root.iterdir()
                   if d.is_dir() and d.name not in ("hydra", "__pycache__")})


def dotted(tree: dict, prefix: str = "") -> dict:
    """``{trainer: {max_epochs: 6}}`` and ``{trainer.max_epochs: 6}`` both ->
    ``{"trainer.max_epochs": 6}`` (empty mappings stay leaves)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
