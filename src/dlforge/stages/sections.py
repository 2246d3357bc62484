"""What each stage reads of its config: a stage re-runs when that changes, and only then.

Each stage of an experiment depends on its *config section*, a small JSON file of the
resolved values it reads (by dotted key), not on the config files they come from:

    outputs/intent/config/ingest.json     dataset.name, .type, .sources
    outputs/intent/config/snapshot.json   dataset.name, .select, split
    outputs/intent/config/sweep.json      what training reads, and hpo
    outputs/intent/config/train.json      model, datamodule, optimizer, scheduler, trainer,
                                          callbacks, seed, snapshot, hpo.enabled
    outputs/intent/config/evaluate.json   batch_size, threshold, dataset.oos_label
    outputs/intent/config/register.json   registry, dataset.oos_label

So ``trainer.max_epochs`` edited in conf/experiment/intent.yaml re-runs sweep, train,
evaluate and register, not ingest or snapshot; a split edit re-runs snapshot and what
follows; where results are tracked (the tracking URI, a study's storage:
``CONNECTION_KEYS``, which may hold a password) is in no section and re-runs nothing.
A value set in params.yaml (``dvc exp run -S``) is in the section of the stages that
apply it (sweep, train).

The sections are written before any stage runs, by both front ends: by the packaged
Snakemake rules when Snakemake reads them (a dry run included), and by DVC's first
stage, ``config`` (``dlforge workflow config``). A file is rewritten only when its
content changes: it keeps its modification time, which is what Snakemake compares,
while DVC compares its content. The two front ends therefore agree on what an edit
invalidates, and neither re-runs a stage that the other already ran for it. Where
Snakemake's jobs read their files from a storage provider (the Kubernetes profile),
not from the project folder, a section is a digest among the job's params instead
(:func:`section_digest`): Snakemake re-runs a job whose params changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_text_atomic
from dlforge.core.memo import memo
from dlforge.core.secrets import CONNECTION_KEYS, scrub
from dlforge.stages import params
from dlforge.stages.workflow import GRAPH_SOURCES, stages

TRAINING = ("model", "datamodule", "optimizer", "scheduler", "trainer", "callbacks", "seed",
            "snapshot")
READS = {"ingest": ("dataset.name", "dataset.type", "dataset.sources"),
         "snapshot": ("dataset.name", "dataset.select", "split"),
         "sweep": (*TRAINING, "hpo"),
         "train": (*TRAINING, "hpo.enabled"),
         "evaluate": ("batch_size", "threshold", "dataset.oos_label"),
         "register": ("registry", "dataset.oos_label")}


def write_sections(exps: list[str]) -> list[Path]:
    """Write the config section of every stage of experiments ``exps`` whose content
    changed (or is missing); return the files written."""
    written = []
    for exp in exps:
        values = _sections(exp, _set_values(exp))
        for stage in stages(exp):
            path, text = Path(stage.config), section_text(values[stage.name])
            if _read(path) != text:
                write_text_atomic(path, text)
                written.append(path)
    return written


def section_digest(exp: str, stage: str) -> str:
    """A digest of the config section of ``exp``'s ``stage``: what its file would hold."""
    text = section_text(_sections(exp, _set_values(exp))[stage])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@memo(*GRAPH_SOURCES)
def _sections(exp: str, set_values: str) -> dict[str, dict]:
    """Every stage's section of ``exp`` (kept on disk with the stage graph: composing takes
    seconds, and Snakemake asks on every run), for the values ``set_values`` names."""
    return {stage.name: section(exp, stage.name) for stage in stages(exp)}


def _set_values(exp: str) -> str:
    """The digest of the values set for ``exp`` in params.yaml ("" for none): a key of
    :func:`_sections`, which params.yaml being brought up to date with conf/ leaves alone."""
    values = params.set_section(exp)
    return "" if values is None else params.digest(values)


def section(exp: str, stage: str) -> dict:
    """The values ``stage`` reads of experiment ``exp``'s config, as the stage composes it
    (with params.yaml's values set for it), resolved, by dotted key."""
    from dlforge.core.config import compose
    from dlforge.stages.config import stage_overrides

    return section_values(compose(stage, stage_overrides(stage, [f"experiment={exp}"])), stage)


def section_values(cfg, stage: str) -> dict:
    """The values ``stage`` reads of its composed config ``cfg`` (:data:`READS`), resolved,
    by dotted key, without :data:`~dlforge.core.secrets.CONNECTION_KEYS` and passwords; a
    key the config lacks reads as null.

    Raises:
        DlforgeError: when a value does not resolve (an environment variable that is not
            set), naming the experiment, the stage and the key.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from dlforge.core.config import dotted

    values = {}
    for key in READS[stage]:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            values[key] = (OmegaConf.to_container(value, resolve=True)
                           if OmegaConf.is_config(value) else value)
        except OmegaConfBaseException as err:
            exp = cfg.get("experiment_name")
            raise DlforgeError(f"experiment {exp}: `{key}`, which `dlforge {stage}` reads, does "
                               f"not resolve ({str(err).splitlines()[0]}). Fix: set what it "
                               f"refers to, or give it a value in conf/experiment/{exp}.yaml"
                               ) from None
    return scrub({key: value for key, value in dotted(values).items()
                  if not any(key == c or key.startswith(f"{c}.") for c in CONNECTION_KEYS)})


def section_text(values: dict) -> str:
    """A section as its file holds it."""
    return json.dumps(values, indent=1, sort_keys=True) + "\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
