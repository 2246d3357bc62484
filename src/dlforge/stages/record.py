"""The run record of a stage's result (:mod:`dlforge.core.record`), made by the stage.

    record = stage_record(cfg, "evaluate", snapshot=train["snapshot"])
    write_json_atomic(path, {**result, "record": record})   # or attach(path, record)

``config`` is the digest of the stage's config section computed from the config the
stage runs with (:func:`~dlforge.stages.sections.section_values`), as
:mod:`dlforge.stages.sections` writes it to ``outputs/<exp>/config/<stage>.json``.
So a stage run by the workflow records the digest of the section file written before
it, and one run with an override on the command line records a section no file has.
Training records the section before the sweep's best parameters and a retrain's seed
are applied: those come from results it read (``upstream``), not from its config.

``upstream`` holds the digest of each earlier result a stage reads, by the stage that
wrote it (:data:`UPSTREAM`): a result whose upstream changed since it was made is
stale, as the workflow would re-run it. Only files a stage reads count, not those it
merely runs after: the snapshot stage reads the dataset store, not ingest's summary,
so an ingest that found nothing new leaves the snapshot summary byte for byte as it
was, and ``dvc repro`` stops there instead of training again.
"""

from __future__ import annotations

import json
from operator import attrgetter

from omegaconf import DictConfig, open_dict

from dlforge.core.io import write_json_atomic
from dlforge.core.layout import ExperimentLayout
from dlforge.core.record import KEY, code_digest, file_digest, make_record, text_digest
from dlforge.stages.sections import section_text, section_values

# stage -> {earlier stage: the ExperimentLayout attribute of its result the stage reads}
UPSTREAM = {
    "ingest": {},
    "snapshot": {},
    "sweep": {"snapshot": "snapshot_summary"},
    # retrain.json: made by ingest, raised by `dlforge monitor`; a request re-trains
    "train": {"snapshot": "snapshot_summary", "sweep": "sweep.best", "ingest": "retrain_marker"},
    # the frozen config: the run, its snapshot and (beside it) the model package
    "evaluate": {"train": "train.frozen_config"},
    "register": {"evaluate": "eval.metrics", "train": "train.frozen_config"},
}
# The stages whose results depend on the project's code (the workflow re-runs them
# when src/ changes): what they train is built from it.
CODE_STAGES = ("sweep", "train")


def stage_record(cfg: DictConfig, stage: str, snapshot: str | None = None,
                 skip: tuple[str, ...] = ()) -> dict:
    """The record of ``stage``'s result, run with ``cfg``; ``skip``: earlier stages whose
    result this run does not read (the sweep's, for training without it)."""
    layout = ExperimentLayout.from_config(cfg)
    upstream = {}
    for earlier, where in UPSTREAM[stage].items():
        digest = file_digest(attrgetter(where)(layout))
        if earlier not in skip and digest is not None:
            upstream[earlier] = digest
    return make_record(text_digest(section_text(section_values(cfg, stage))), snapshot,
                       upstream, code_digest())


def with_record(cfg: DictConfig, record: dict) -> DictConfig:
    """A copy of ``cfg`` carrying ``record`` (frozen with it; tagged on the run)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg[KEY] = record
    return cfg


def attach(path, record: dict) -> None:
    """Add ``record`` to the JSON result a domain function wrote at ``path``."""
    result = json.loads(path.read_text())
    write_json_atomic(path, {**result, KEY: record})
