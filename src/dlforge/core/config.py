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
        problem = composition_problem(config_name, err, _spelling(config_name, overrides, err))
        for override in overrides:
            problem = hide_passwords(problem, override.split("=", 1)[-1].strip("'\""))
        raise DlforgeError(problem) from None


def defaults_list(config_name: str, overrides: list[str] | tuple[str, ...] = (),
                  skip_missing: bool = False) -> tuple[list[tuple[str, str]], dict]:
    """The config files Hydra merges into ``config_name``, in merge order, without
    merging them, and the choice of every config group.

    Returns:
        ``[(config path, package)]`` (``("trainer/default", "trainer")``; the package
        is "" for a file merged at the top level, as an entry config or an experiment),
        and ``{group: option}`` (``"???"`` for a group not chosen). Hydra's own configs
        are left out.

    Raises:
        DlforgeError: when the defaults do not resolve; with ``skip_missing`` a group
            that must be chosen (``experiment: ???``) is skipped instead.
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.types import RunMode

    mode = RunMode.MULTIRUN if skip_missing else RunMode.RUN  # Hydra skips ??? when sweeping
    hydra = GlobalHydra.instance()
    try:
        if hydra.is_initialized():  # inside a stage's Hydra app: the same search path
            found = hydra.config_loader().compute_defaults_list(config_name, list(overrides), mode)
        else:
            with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
                found = hydra.config_loader().compute_defaults_list(
                    config_name, list(overrides), mode)
    except HydraException as err:
        raise DlforgeError(composition_problem(config_name, err)) from None
    files = [(d.config_path, d.package or "") for d in found.defaults
             if d.config_path and not _hydra_own(d.config_path, d.package or "")]
    choices = {group: option for group, option in found.overrides.known_choices.items()
               if not _hydra_own(group, group)}
    return files, choices


def _hydra_own(path: str, package: str) -> bool:
    return path.split("/")[0] == "hydra" or package.split(".")[0] == "hydra"


def composition_problem(config_name: str, err: Exception, spelling: str = "") -> str:
    """Hydra's reason a composition failed, with what to do about it (``spelling``: the
    keys near an overridden key the config does not have, see :func:`_spelling`)."""
    reason = str(err).strip()
    if "To append to your config use" in reason:  # a key the config does not have
        spelling = spelling or "check the spelling of the key"
        fix = (f"Fix: {spelling}{' ' if spelling.endswith('?') else '; '}`+key=value` adds a "
               "key the config lacks")
    elif "Could not override" in reason or "Could not append to config" in reason:
        fix = (f"Fix: override one of the config groups ({', '.join(config_groups())}), or add "
               "a group of the project's as `- /group: option`, without override")
    elif "Could not find" in reason or "Could not load" in reason:
        fix = ("Fix: name a config that exists, in the project's conf/ or dlforge's "
               "packaged configs (the options are listed above)")
    else:
        fix = "Fix: correct the file named above"
    return f"the configs of `{config_name}` do not compose: {reason}\n{fix}"


def _spelling(config_name: str, overrides: list[str] | tuple[str, ...], err: Exception) -> str:
    """For an override of a key the config does not have: the nearest name where its
    path leaves the config (``did you mean trainer.max_epochs?``), else the keys there;
    "" for any other failure."""
    import difflib
    import re

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import DictConfig

    found = re.search(r"Could not override '([\w.]+)'", str(err))
    if not found:
        return ""
    parts = found[1].split(".")
    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != found[1]]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            node = hydra_compose(config_name=config_name, overrides=others)
        for i, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                return ""
            if part not in node:
                keys = [str(k) for k in node if not str(k).startswith("_")]  # _target_ aside
                near = difflib.get_close_matches(part, keys, n=1)
                if near:
                    return f"did you mean {'.'.join([*parts[:i], near[0], *parts[i + 1:]])}?"
                return (f"check the spelling of the key ({'.'.join(parts[:i]) or 'the config'} "
                        f"has {', '.join(keys)})")
            node = node[part]
    except Exception:  # noqa: BLE001 - only a hint: Hydra's own reason is reported anyway
        return ""
    return ""


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
