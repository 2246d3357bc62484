"""Whether an experiment's results were made from what the revision holds: each result's
run record (:mod:`dlforge.core.record`) against the config, code and data there.

    found = check_experiment("intent", old, new)
    found["stale"]        head results whose inputs changed since they were made, each with
                          what changed: config keys, code files, upstream results
    found["unrecorded"]   head results written before results carried a record
    found["base_stale"]   the same check of the base side (informational)

A head result is stale, as the workflow would re-run it, when

- **config**: its stage's config section, composed from the head's ``conf/`` (the
  section file the workflow would write), has another digest than ``record.config``.
  Where ``conf/`` does not compose here (an environment variable the review lacks),
  the committed section file stands in. The keys that changed are named by diffing
  the section against the section file the result was made with, looked up by its
  digest (the head's and base's files, then that file's history);
- **code** (sweep and train, which build the project's model): the digest of ``src/``
  differs from ``record.code``; the files are named by comparing with the commit
  whose ``src/`` has the recorded digest, where one has;
- **data**: an upstream result (``record.upstream``: the snapshot summary, the sweep's
  best.yaml, the retrain request, the frozen training config, the evaluation's
  metrics) has another digest now, or the snapshot the experiment uses is not
  ``record.snapshot``.

The base side is checked alike against its own tree: its ``conf/`` (copied out of git
to compose), ``src/`` and results; the values set in params.yaml are the head's.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import yaml

from dlforge.core import commits, gitrepo
from dlforge.core.config import ENV_CONFIG_DIR
from dlforge.core.errors import DlforgeError
from dlforge.core.layout import ExperimentLayout
from dlforge.core.record import code_files, digest_files, recorded, text_digest
from dlforge.core.secrets import scrub
from dlforge.stages.record import CODE_STAGES, UPSTREAM
from dlforge.stages.revision import NotARegularFile, Side
from dlforge.stages.sections import section_text

# stage -> the ExperimentLayout attribute of the result that carries its record
RESULTS = {"ingest": "ingest_summary", "snapshot": "snapshot_summary",
           "sweep": "sweep.summary", "train": "train.metrics", "evaluate": "eval.metrics",
           "register": "register_record"}
SNAPSHOT_READERS = ("sweep", "train")  # the stages that read the snapshot summary
HISTORY = 100  # commits searched for the section file or code a result was made with


@dataclass
class _Experiment:
    """One experiment's files on one side, placed by the layout pattern."""

    name: str
    side: Side
    layout: ExperimentLayout

    def path(self, where: str) -> str:
        return str(attrgetter(where)(self.layout)).replace("{exp}", self.name)

    def section_path(self, stage: str) -> str:
        return str(self.layout.config_section(stage)).replace("{exp}", self.name)

    def read(self, path: str) -> str | None:
        try:
            return self.side.read(path)
        except NotARegularFile:
            return None


def check_experiment(name: str, old: Side, new: Side, layout: ExperimentLayout) -> dict:
    """The staleness of experiment ``name``'s results on the head side ``new`` (the
    working tree) and, for information, on the base side ``old``."""
    head, base = _Experiment(name, new, layout), _Experiment(name, old, layout)
    found: dict = {"stale": [], "unrecorded": [], "base_stale": []}
    code = _Code()
    for stage in RESULTS:
        made = _record(head, stage)
        if made is None:
            continue
        if made == "unrecorded":
            found["unrecorded"].append(stage)
            continue
        reasons = _head_reasons(head, base, stage, made, code)
        if reasons:
            found["stale"].append({"stage": stage, "result": head.path(RESULTS[stage]),
                                   "reasons": reasons})
    found["base_stale"] = _base_stale(base)
    return found


def _base_stale(base: _Experiment) -> list[dict]:
    """The base's recorded results that its own tree does not match."""
    made = {stage: _record(base, stage) for stage in RESULTS}
    made = {stage: record for stage, record in made.items() if isinstance(record, dict)}
    if not made:
        return []
    with _conf_of(base.side.rev) as conf:
        found = [{"stage": stage, "reasons": _base_reasons(base, stage, record, conf)}
                 for stage, record in made.items()]
    return [entry for entry in found if entry["reasons"]]


def _record(exp: _Experiment, stage: str) -> dict | str | None:
    """The record of ``stage``'s result: None without a result, "unrecorded" for one
    without a record."""
    text = exp.read(exp.path(RESULTS[stage]))
    if text is None:
        return None
    try:
        return recorded(json.loads(text)) or "unrecorded"
    except ValueError:
        return "unrecorded"  # the review names the broken file among its problems


def _head_reasons(head: _Experiment, base: _Experiment, stage: str, made: dict,
                  code: _Code) -> list[dict]:
    reasons = []
    section = _composed(head, stage)
    if section is not None and text_digest(section_text(section)) != made.get("config"):
        reasons.append(_config_reason(head, base, stage, made.get("config"), section))
    if stage in CODE_STAGES and code.head_digest() != made.get("code"):
        reasons.append({"kind": "code", "files": code.changed_since(made.get("code"))})
    return reasons + _data_reasons(head, stage, made)


def _base_reasons(base: _Experiment, stage: str, made: dict, conf: Path) -> list[dict]:
    reasons = []
    section = _composed(base, stage, conf)
    if section is not None and text_digest(section_text(section)) != made.get("config"):
        reasons.append({"kind": "config", "file": base.section_path(stage), "keys": None})
    if stage in CODE_STAGES and commits.tree_code_digest(base.side.rev) != made.get("code"):
        reasons.append({"kind": "code", "files": None})
    return reasons + _data_reasons(base, stage, made)


def _composed(exp: _Experiment, stage: str, conf: Path | None = None) -> dict | None:
    """``stage``'s config section composed from the config folder ``conf`` (None: the
    project's), else ``exp``'s section file; None where neither is there."""
    from dlforge.stages.sections import section

    saved = os.environ.get(ENV_CONFIG_DIR)
    if conf is not None:
        os.environ[ENV_CONFIG_DIR] = str(conf)
    try:
        return section(exp.name, stage)
    except DlforgeError:
        return _parse(exp.read(exp.section_path(stage)))
    finally:
        if saved is None:
            os.environ.pop(ENV_CONFIG_DIR, None)
        else:
            os.environ[ENV_CONFIG_DIR] = saved


@contextlib.contextmanager
def _conf_of(rev: str) -> Iterator[Path]:
    """A temporary folder holding the regular files of ``conf/`` at commit ``rev``."""
    files = gitrepo.tree_files(rev, "conf")
    with tempfile.TemporaryDirectory(prefix="dlforge-review-") as folder:
        for (path, _), data in zip(files.items(), gitrepo.blobs(list(files.values())),
                                   strict=True):
            target = Path(folder, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data or b"")
        yield Path(folder, "conf")


def _config_reason(head: _Experiment, base: _Experiment, stage: str, digest: str | None,
                   now: dict) -> dict:
    """What changed in ``stage``'s section: the keys, where the section the result was
    made with is found (by ``digest``)."""
    path = head.section_path(stage)
    made = _section_with(digest, path, head, base)
    keys = None if made is None else [
        {"key": k, "old": made.get(k), "new": now.get(k)}
        for k in sorted(made.keys() | now.keys()) if made.get(k) != now.get(k)]
    return {"kind": "config", "file": path, "keys": keys}


def _section_with(digest: str | None, path: str, head: _Experiment,
                  base: _Experiment) -> dict | None:
    """The section whose file has ``digest``: the head's or base's file at ``path``, else
    a version of it among the last :data:`HISTORY` commits that changed it."""
    texts = [head.read(path), base.read(path)]
    for text in texts:
        if text is not None and text_digest(text) == digest:
            return _parse(text)
    changed = gitrepo.git("log", f"--max-count={HISTORY}", "--format=%H", "HEAD", "--", path,
                          check=False).stdout.split()
    for data in gitrepo.blobs([f"{c}:./{path}" for c in changed]):
        if data is not None and text_digest(data) == digest:
            return _parse(data.decode(errors="replace"))
    return None


def _data_reasons(exp: _Experiment, stage: str, made: dict) -> list[dict]:
    """The upstream results that changed since ``made``, and the snapshot moved."""
    reasons = []
    for earlier, digest in sorted((made.get("upstream") or {}).items()):
        where = UPSTREAM[stage].get(earlier)
        text = exp.read(exp.path(where)) if where else None
        if text is not None and text_digest(text) != digest:
            reasons.append({"kind": "data", "file": exp.path(where), "upstream": earlier})
    if stage in SNAPSHOT_READERS and made.get("snapshot"):
        now = _snapshot_version(exp)
        if now is not None and now != made["snapshot"]:
            reasons.append({"kind": "snapshot", "old": made["snapshot"], "new": now})
    return reasons


def _snapshot_version(exp: _Experiment) -> str | None:
    summary = _parse(exp.read(exp.path("snapshot_summary")))
    return summary.get("version") if isinstance(summary, dict) else None


def _parse(text: str | None):
    """JSON (or YAML) text as data, scrubbed of passwords; None for none or garbage."""
    if text is None:
        return None
    try:
        return scrub(yaml.safe_load(text))
    except yaml.YAMLError:
        return None


class _Code:
    """The working tree's code digest, computed once, and the files changed since a
    recorded digest."""

    def __init__(self) -> None:
        self._files: dict[str, str] | None = None

    def files(self) -> dict[str, str]:
        if self._files is None:
            self._files = code_files()
        return self._files

    def head_digest(self) -> str | None:
        return digest_files(self.files())

    def changed_since(self, digest: str | None) -> list[str] | None:
        """The code files that differ from the commit whose ``src/`` has ``digest``; None
        where no recent commit has it."""
        found = commits.find_commit(digest, None, None, limit=HISTORY).commit
        if found is None:
            return None
        then, now = commits.tree_code_files(found), self.files()
        return sorted(p for p in then.keys() | now.keys() if then.get(p) != now.get(p))
