"""A stage's config checked before the stage creates anything: no MLflow run, no output.

    check_config(stage, cfg, overrides)   the sections (:mod:`dlforge.core.strict`), then,
                                          for train and sweep, every key of what training
                                          builds against the signature of what builds it

What training builds, and from what (``given``: the arguments dlforge passes itself,
never set in the config):

    trainer          lightning.pytorch.Trainer(**trainer, callbacks=, logger=,
                     default_root_dir=); a ``trainer.strategy`` with a _target_ too
    datamodule       SnapshotDataModule(snapshot, encoder, **datamodule, seed=)
    optimizer        its _target_, given the parameters
    scheduler        its _target_, given the optimizer (none: ``~scheduler``)
    callbacks.NAME   each its own _target_
    model.encoder    its _target_
    hpo.sampler/pruner  (sweep) their _target_

A key must be a parameter of that signature (``**kwargs`` takes any); Hydra's own
keys (``_target_``, ``_partial_``, ...) are allowed where Hydra builds the node.
``model.net`` is checked with the model contract
(:func:`dlforge.train.contract.check_model`), which knows what the encoder gives it.
Importing a target may import torch: this module is imported by the stages only,
and imports the targets when it checks, unless their signatures are remembered from
an earlier check (:mod:`dlforge.stages.signatures`).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from dlforge.core.config import config_file
from dlforge.core.errors import DlforgeError
from dlforge.core.strict import check_sections, origin, unknown_key
from dlforge.stages.config import command_line_overrides
from dlforge.stages.signatures import arguments

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


@dataclass(frozen=True)
class Built:
    """How a section becomes an object: by ``builder`` (a dotted path) called with the
    section's keys, or, with no builder, by Hydra from the node's own ``_target_``;
    ``each``: every entry of the section is such a node (the callbacks)."""

    builder: str | None = None
    given: tuple[str, ...] = ()
    each: bool = False


TRAINING = {
    "trainer": Built("lightning.pytorch.Trainer", ("callbacks", "logger", "default_root_dir")),
    "trainer.strategy": Built(),  # when it is a config (fsdp), not a name
    "datamodule": Built("dlforge.train.data.SnapshotDataModule", ("snapshot", "encoder", "seed")),
    "optimizer": Built(given=("params",)),
    "scheduler": Built(given=("optimizer",)),
    "callbacks": Built(each=True),
    "model.encoder": Built(),
}
BUILT = {"train": TRAINING, "sweep": {**TRAINING, "hpo.sampler": Built(), "hpo.pruner": Built()}}


def check_config(stage: str, cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Raise naming the key, where it was set and the nearest valid name when ``cfg``
    has a section no config declares or, for a stage that trains, an argument that
    what it builds does not take.

    Args:
        overrides: the overrides ``cfg`` was composed with (default: the running Hydra
            app's; outside one, the experiment that ``experiment_name`` names).
    """
    overrides = _overrides(cfg) if overrides is None else overrides
    check_sections(stage, cfg, overrides)
    for key, built in BUILT.get(stage, {}).items():
        node = OmegaConf.select(cfg, key)
        if built.each and node is not None:
            for name in _entries(key, node, stage, overrides):
                _check_node(f"{key}.{name}", Built(), node[name], stage, overrides)
        elif isinstance(node, DictConfig):  # not null (``~scheduler``) nor a name
            _check_node(key, built, node, stage, overrides)


def _entries(key: str, node, stage: str, overrides: list[str]) -> list[str]:
    """The names of section ``key``'s entries, each a config to build."""
    if not isinstance(node, DictConfig):
        raise DlforgeError(f"{key} is {node!r}, not a mapping of names to configs"
                           f"{_from(key, stage, overrides)}. Fix: write it as `{key}: {{NAME: "
                           "{_target_: ..., ...}}`, or null for none")
    for name in map(str, node):
        if not isinstance(node[name], DictConfig):
            raise DlforgeError(f"{key}.{name} is {node[name]!r}, not a config with a _target_"
                               f"{_from(f'{key}.{name}', stage, overrides)}. Fix: give it "
                               "`_target_: package.module.Class` and its arguments, or "
                               f"remove it (`~{key}.{name}`)")
    return list(map(str, node))


def _check_node(key: str, built: Built, node: DictConfig, stage: str,
                overrides: list[str]) -> None:
    """Check the keys of section ``key`` against the signature of what builds it."""
    target = built.builder or node.get("_target_")
    if target is None:
        raise DlforgeError(f"{key} has no _target_{_from(key, stage, overrides)}. Fix: add "
                           "`_target_: package.module.Class`, or remove it")
    accepted = arguments(key, target)
    for name in map(str, node):
        if built.builder is None and name in HYDRA_KEYS:
            continue
        if name in built.given:
            raise DlforgeError(f"{key}.{name} is given by dlforge, not by the config"
                               f"{_from(f'{key}.{name}', stage, overrides)}. Fix: remove "
                               f"{key}.{name}")
        if accepted is not None and name not in accepted:
            raise unknown_key(f"{key}.{name}", f"is not an argument of {target}",
                              accepted - set(built.given),
                              origin(f"{key}.{name}", stage, overrides))


def _from(key: str, stage: str, overrides: list[str]) -> str:
    source = origin(key, stage, overrides)
    return f" (from {source})" if source else ""


def _overrides(cfg: DictConfig) -> list[str]:
    """The running Hydra app's overrides; outside one (the Python API), the experiment
    named by ``experiment_name``, when it has a file, so that an error can name it."""
    given = command_line_overrides()
    if given:
        return given
    name = OmegaConf.select(cfg, "experiment_name", default=None, throw_on_missing=False)
    if isinstance(name, str) and config_file(f"experiment/{name}.yaml"):
        return [f"experiment={name}"]
    return []
