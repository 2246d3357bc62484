"""DVC's view of the training parameters: ``params.yaml``, one section per experiment.

    intent:                 what the intent experiment trains with, resolved
      datamodule: {...}     (the groups in TRACKED, from conf/ and the packaged
      model: {...}          configs, the experiment's overrides applied)
      optimizer: {lr: 0.003, ...}
      ...
    digits: {...}
    _generated: {intent: 3f2a..., digits: 9c1e...}   each section's digest as written

``dlforge workflow dvc`` writes it, and both front ends bring it up to date
before they run a stage (:func:`refresh_params_file`: DVC's first stage
``config``, Snakemake's start): after an edit in conf/, ``dvc params diff``
shows the new values, and dvc.lock records what was trained with. Each
experiment's sweep and train stages depend on that experiment's section only,
so ``dvc exp run -S digits.trainer.max_epochs=5`` re-runs digits and not
intent, and ``dvc exp show`` lists what each experiment trains with.

A section that still matches its ``_generated`` digest holds nothing of the
user's: the stages take no value from it, so an edit under conf/ is never
undone by a params.yaml written before it, and the refresh writes it again
from conf/. A section that differs was set by ``dvc exp run -S`` or by hand:
the refresh keeps it, and its leaves that differ from the experiment's
configs become overrides of the sweep and train stages (the command line of
a ``dlforge`` command still wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from dlforge.core.config import dotted
from dlforge.core.errors import DlforgeError

log = logging.getLogger(__name__)

PARAMS_FILE = Path("params.yaml")
TRACKED = ("datamodule", "model", "optimizer", "scheduler", "trainer", "seed")
MARKS = "_generated"  # section -> digest of the values dlforge wrote
STAGES = ("sweep", "train")  # the stages that read params.yaml
HEADER = ("# Written by dlforge (`dlforge workflow dvc`, and before each run of the\n"
          "# workflow): what each experiment trains with, from conf/. DVC tracks each\n"
          "# experiment's section; set a value with `dvc exp run -S EXPERIMENT.KEY=VALUE`\n"
          "# (edits elsewhere belong in conf/).\n")


def experiment_params(exp: str) -> dict:
    """The tracked training values of experiment ``exp``, resolved (``???`` stays)."""
    from omegaconf import OmegaConf

    from dlforge.core.config import compose

    cfg = compose("train", [f"experiment={exp}"])
    return {key: OmegaConf.to_container(cfg[key], resolve=True)
            if OmegaConf.is_config(cfg[key]) else cfg[key] for key in TRACKED if key in cfg}


def write_params_file(exps: list[str], path: Path = PARAMS_FILE) -> Path:
    """Write params.yaml for experiments ``exps`` (no user values)."""
    sections = {exp: experiment_params(exp) for exp in exps}
    marks = {exp: digest(values) for exp, values in sections.items()}
    path.write_text(_render(sections, marks))
    return path


def refresh_params_file(exps: list[str], path: Path = PARAMS_FILE) -> bool:
    """Bring params.yaml up to date with conf/ for experiments ``exps``: a section as dlforge
    wrote it (or a missing one) is written again from the experiment's configs, a section
    set by the user is kept (see the module docstring). The file is written only when it
    changes; True then.

    Raises:
        DlforgeError: when params.yaml is not valid YAML.
    """
    given = _load(path)
    marks = given.get(MARKS) if isinstance(given.get(MARKS), dict) else {}
    sections, kept = {}, {}
    for exp in exps:
        section = given.get(exp)
        if isinstance(section, dict) and marks.get(exp) != digest(section):
            sections[exp], kept[exp] = section, marks.get(exp)  # set by the user
        else:
            sections[exp] = experiment_params(exp)
            kept[exp] = digest(sections[exp])
    text = _render(sections, kept)
    if path.is_file() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _render(sections: dict, marks: dict) -> str:
    return HEADER + yaml.safe_dump({**sections, MARKS: marks}, sort_keys=False)


def _load(path: Path) -> dict:
    """params.yaml as a mapping (empty when missing)."""
    if not path.is_file():
        return {}
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DlforgeError(f"{path} is not valid YAML ({err}). Fix: regenerate it with "
                           "`dlforge workflow dvc`") from None
    return given if isinstance(given, dict) else {}


def digest(values: dict) -> str:
    """A short digest of a section's values (key order does not matter)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def set_section(exp: str, path: Path = PARAMS_FILE) -> dict | None:
    """``exp``'s section of params.yaml where it was set there (see the module docstring);
    None for a section as dlforge wrote it, or none."""
    given = _load(path)
    section = given.get(exp)
    if not isinstance(section, dict) or (given.get(MARKS) or {}).get(exp) == digest(section):
        return None
    return section


def overrides(exp: str, path: Path = PARAMS_FILE) -> list[str]:
    """``key=value`` Hydra overrides for every leaf of ``exp``'s section of params.yaml that
    was set there (see the module docstring) and differs from the experiment's configs."""
    section = set_section(exp, path)
    if section is None:
        return []  # as dlforge wrote it: conf/ decides
    base = dotted(experiment_params(exp))
    changed = {k: v for k, v in dotted(section).items() if k not in base or base[k] != v}
    return [f"{key}={json.dumps(value)}" for key, value in sorted(changed.items())]
