"""Values that hold credentials: used where they are needed, never written.

A database or server URL may carry a password (``postgresql://user:PW@host/db``),
given in ``$MLFLOW_TRACKING_URI``, through ``${oc.env:VAR}`` in a config, or on
the command line. No file, log line, MLflow param, tag or artifact, and no
error message holds it. The policy, in one place:

    CONNECTION_KEYS        where to connect (the tracking store, the study's storage):
                           never recorded as MLflow params
    to_environment(args)   a stage command's override whose value holds a password is
                           moved to the environment: ``KEY=${oc.env:DLFORGE_SECRET_KEY}``
                           is what Hydra composes and records (``.hydra/``)
    freeze(cfg)            a config to write (``config.yaml``, ``sweep.yaml``): a value
                           holding a password keeps the form it was given in when that
                           resolves to it without quoting it (``${oc.env:VAR}``); a
                           literal one is moved to the environment as above
    scrub(tree), params()  what goes to MLflow, every password hidden
    redact(url)            one URL (:mod:`dlforge.core.urls`)

A process that reads a frozen config (a training rank, a sweep worker) resolves
``${oc.env:VAR}`` from its own environment, which it inherits from the command
that wrote the file; elsewhere (``launch=false`` workers on other machines) the
variable is set where the process starts.
"""

from __future__ import annotations

import os
import re

from dlforge.core.errors import DlforgeError
from dlforge.core.urls import has_password, hide_passwords, redact

# Where to connect is no parameter of a run, and these URLs may carry a password.
CONNECTION_KEYS = ("tracking.tracking_uri", "hpo.storage", "callbacks.pruning.storage")
ENV_PREFIX = "DLFORGE_SECRET_"


def env_name(key: str) -> str:
    """The variable that carries ``key``'s value: ``hpo.storage`` ->
    ``DLFORGE_SECRET_HPO_STORAGE``."""
    return ENV_PREFIX + re.sub(r"\W", "_", key.lstrip("+~")).upper()


def hand_off(key: str, value: str) -> str:
    """Put ``value`` in this process's environment (its children inherit it); return the
    interpolation that reads it back."""
    name = env_name(key)
    os.environ[name] = value
    return "${oc.env:" + name + "}"


def to_environment(overrides: list[str]) -> list[str]:
    """Hydra ``overrides`` with each value that holds a password moved to the environment."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    moved = []
    for text in overrides:
        try:
            override = None if text.startswith("-") else parser.parse_override(text)
        except HydraException:  # Hydra reports it, with the password hidden (core.config)
            override = None
        value = override.value() if override is not None else None
        if isinstance(value, str) and has_password(value):
            text = f"{override.get_key_element()}={hand_off(override.key_or_group, value)}"
        moved.append(text)
    return moved


def freeze(cfg, resolve: bool = True) -> dict:
    """``cfg`` as a plain tree to write: resolved (or with ``resolve=False`` as given),
    each value that holds a password in a form that does not quote it.

    That form is the one the value was given in (``${oc.env:OPTUNA_STORAGE}``,
    ``${hpo.storage}``) when it resolves, in the frozen tree and this environment,
    to the same URL; else ``${oc.env:DLFORGE_SECRET_<KEY>}``, set here (:func:`hand_off`).
    """
    from omegaconf import OmegaConf

    from dlforge.core.config import dotted

    given = OmegaConf.to_container(cfg, resolve=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    found = {k: v for k, v in dotted(resolved).items() if has_password(v)}
    frozen = OmegaConf.create(resolved if resolve else given)
    for key in found:
        OmegaConf.update(frozen, key, _at(given, key), merge=False)
    for key, value in found.items():
        form = _at(given, key)
        if not (isinstance(form, str) and hide_passwords(form, value) == form
                and _resolves_to(frozen, key, value)):
            OmegaConf.update(frozen, key, hand_off(key, value), merge=False)
    return scrub(OmegaConf.to_container(frozen, resolve=False))


def _at(tree: dict, key: str):
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _resolves_to(frozen, key: str, value: str) -> bool:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.select(frozen, key) == value
    except OmegaConfBaseException:
        return False


def scrub(tree):
    """``tree`` (dicts, lists, leaves) with every URL's password hidden."""
    if isinstance(tree, dict):
        return {k: scrub(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [scrub(v) for v in tree]
    return redact(tree) if isinstance(tree, str) and has_password(tree) else tree


def params(flat: dict[str, str]) -> dict[str, str]:
    """Flattened config values fit to record as MLflow params: no :data:`CONNECTION_KEYS`,
    no password."""
    return {k: scrub(v) for k, v in flat.items() if k not in CONNECTION_KEYS}


def resolved(node, name: str, key: str):
    """``node[name]`` resolved; ``key`` names it in the error.

    Raises:
        DlforgeError: when it reads an environment variable this process lacks.
    """
    from omegaconf.errors import InterpolationResolutionError

    try:
        return node[name]
    except InterpolationResolutionError as err:
        reason = str(err).splitlines()[0]
        raise DlforgeError(
            f"{key} cannot be resolved here ({reason}). Fix: set that variable in this "
            f"process's environment; a value given with a password is passed to the "
            f"processes dlforge starts as {env_name(key)}, never written") from None
