"""Finding and composing the project's Hydra configs (``conf/``)."""

from __future__ import annotations

import os
from pathlib import Path

from dlforge.core.errors import DlforgeError

ENV_CONFIG_DIR = "DLFORGE_CONFIG_DIR"


def conf_dir() -> Path:
    """The project's config folder: ``$DLFORGE_CONFIG_DIR`` or ``./conf``."""
    path = Path(os.environ.get(ENV_CONFIG_DIR, "conf")).resolve()
    if not path.is_dir():
        raise DlforgeError(
            f"no config folder at {path}. Fix: run dlforge from the project root "
            f"(where conf/ is) or set {ENV_CONFIG_DIR}"
        )
    return path


def has_key(cfg, dotted: str) -> bool:
    """Whether ``dotted`` (``a.b.c``) is a key of ``cfg``, even one whose value is null."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, dotted, default=_MISSING) is not _MISSING


_MISSING = object()


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides (no Hydra run dir, no logging)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


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
