"""``dlforge review``: what a change did to each experiment, from the results kept in git.

    dlforge review                       # the working tree against the merge base
    dlforge review --base HEAD~1 --format json

Each side is a set of small files the stages write and git keeps (the frozen
training config, the ingest and snapshot summaries, the evaluation's metrics,
per-class scores and (actual, predicted) rows, the register decision): the base side is
read from the revision's git tree, the head side from the working tree. Only
regular files are read: a symbolic link (in git or on disk, the file or a folder
above it) is left out and named among the problems, so a change cannot make the
review print a file from elsewhere. Configs are compared as data: an
interpolation (``${oc.env:VAR}``) is shown as written, never resolved, and every
value shown passes through ``redact`` (no password of a URL). Per
experiment the review gives the config keys that changed, the data delta, each
metric's change with a 95% bootstrap interval, per-class regressions, the
gate's verdict and the champion's move. A problem with one experiment (no
results on one side, an unreadable file) is reported there and the others are
still reviewed. The bootstrap draws per-outcome counts (``registry.scores``), so
its memory does not grow with the test split.

The review ends in a verdict (:mod:`dlforge.stages.verdict`): whether each head
result is current by its run record (:mod:`dlforge.stages.staleness`) and whether
a metric regressed past its tolerance (:mod:`dlforge.stages.tolerance`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from array import array

import yaml

from dlforge.core.config import dotted
from dlforge.core.urls import redact
from dlforge.stages.costs import cost_deltas, cost_lines
from dlforge.stages.revision import NotARegularFile, Side, default_base, repository_root, resolve
from dlforge.stages.staleness import check_experiment
from dlforge.stages.tolerance import CLASS_F1, regressions, tolerances
from dlforge.stages.verdict import check_lines, verdict, verdict_line

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
REGRESSION = 0.05  # a class whose F1 drops by more than this is listed
MIN_SUPPORT = 3  # ...when it has at least this many test examples
ROW_METRICS = ("accuracy", "macro_f1")  # computed again from the (actual, predicted) rows
# Folders and a run's bookkeeping, not what was trained (the snapshot is in the data delta).
URL_IN_TEXT = re.compile(r"[^\s'\"]+://[^\s'\"]+")  # a URL quoted in an error message
IGNORED_KEYS = ("paths.", "hydra.", "run_id", "config_hash", "resume_from", "snapshot_path",
                "snapshot", "record.")


def review(base: str | None = None, experiments: list[str] | None = None) -> dict:
    """The review of every experiment (or those named) between ``base`` and the working
    tree, run from the project's root.

    Raises:
        DlforgeError: outside a git repository, for a revision git does not know, or for
            a conf/review.yaml that is not what the review reads.
    """
    repository_root()
    base_rev = resolve(base) if base else default_base()
    old, new = Side(base or base_rev[:12], base_rev), Side("working tree")
    limits = tolerances()
    head = _experiments(new)
    names = experiments or list(dict.fromkeys([*_experiments(old), *head]))
    reviewed = {name: review_experiment(name, old, new, limits) for name in names}
    for name in names:  # an experiment only the base lists is gone from the head: not stale
        if name not in head and not experiments:
            reviewed[name]["no_results"] = False
    return {"base": {"name": old.name, "commit": base_rev}, "head": new.name,
            "tolerance": limits, "verdict": verdict(reviewed), "experiments": reviewed}


def review_experiment(name: str, old: Side, new: Side, limits: dict | None = None) -> dict:
    """One experiment's part of the review (problems are reported, not raised), with
    its check: stale and unrecorded results, regressions past ``limits``
    (:func:`~dlforge.stages.tolerance.tolerances`)."""
    from dlforge.stages.workflow import layout_pattern

    layout = layout_pattern()
    files = {"config": layout.train.frozen_config, "snapshot": layout.snapshot_summary,
             "ingest": layout.ingest_summary,
             "metrics": layout.eval.metrics, "per_class": layout.eval.per_class,
             "rows": layout.eval.confusion_csv, "register": layout.register_record,
             "sweep": layout.sweep.summary, "train_metrics": layout.train.metrics}
    paths = {key: str(path).replace("{exp}", name) for key, path in files.items()}
    report: dict = {"problems": []}
    try:
        before, after = (_read_all(side, paths, report["problems"]) for side in (old, new))
    except OSError as err:
        return {"problems": [f"cannot read the results of {name} ({err})"], "no_results": True}
    for side, texts in ((old, before), (new, after)):
        if texts["metrics"] is None:
            report["problems"].append(
                f"{side.name} has no results for {name} ({paths['metrics']} is missing): "
                f"run the workflow and commit its results there to compare")
    try:
        report["config"] = _config_diff(before["config"], after["config"])
        report["data"] = _data_delta(before["snapshot"], after["snapshot"], before["ingest"],
                                     after["ingest"])
        report["metrics"] = _metric_deltas(before, after)
        report["cost"] = cost_deltas(before["train_metrics"], after["train_metrics"])
        report["per_class"] = _regressions(before["per_class"], after["per_class"])
        report["gate"] = _gate(before["register"], after["register"])
        report["sweep"] = _sweep(after["sweep"])
        limit = (limits or {}).get(CLASS_F1)
        classes = [] if limit is None else _regressions(before["per_class"],
                                                        after["per_class"], limit)
        report["regressions"] = regressions(report["metrics"], classes, limits or {})
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
        report["problems"].append(f"a result file of {name} is not what the stages write "
                                  f"({_describe(err)}); re-run its stages")
    report.update(check_experiment(name, old, new, layout))
    report["no_results"] = after["metrics"] is None
    report["plots"] = [str(p).replace("{exp}", name) for p in
                       (layout.train.history, layout.eval.confusion_csv)]
    return report


def _read_all(side: Side, paths: dict, problems: list) -> dict:
    """The text of each of ``paths`` on ``side`` (None where absent); a path that is not
    a regular file counts as absent and is named in ``problems``."""
    texts = {}
    for key, path in paths.items():
        try:
            texts[key] = side.read(path)
        except NotARegularFile as err:
            problems.append(f"{side.name}: {err}")
            texts[key] = None
    return texts


def _describe(err: Exception) -> str:
    """``err`` for a problem line: a YAML error by its position only (its excerpt of the
    file could quote a secret), any other with each URL in it redacted."""
    mark = getattr(err, "problem_mark", None)
    if isinstance(err, yaml.YAMLError) and mark is not None:
        problem = getattr(err, "problem", None) or "not valid YAML"
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return f"{type(err).__name__}: " + URL_IN_TEXT.sub(lambda m: redact(m[0]), str(err))


def _config_diff(old: str | None, new: str | None) -> list[dict]:
    """The keys whose values differ. YAML as data (safe_load): an interpolation such as
    ``${oc.env:VAR}`` stays the string written, never its value."""
    if old is None or new is None:
        return []
    before, after = (dotted(yaml.safe_load(text) or {}) for text in (old, new))
    keys = sorted(k for k in before.keys() | after.keys() if not k.startswith(IGNORED_KEYS))
    return [{"key": k, "old": _redacted(before.get(k)), "new": _redacted(after.get(k))}
            for k in keys if before.get(k) != after.get(k)]


def _redacted(value):
    """``value`` with every string in it passed through ``redact`` (no URL password)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _data_delta(old: str | None, new: str | None, old_ingest: str | None = None,
                new_ingest: str | None = None) -> dict | None:
    if old is None or new is None:
        return None
    before, after = json.loads(old), json.loads(new)
    delta = {"old_version": before.get("version"), "new_version": after.get("version"),
             "commits_added": sorted(set(after.get("commits", [])) -
                                     set(before.get("commits", []))),
             "commits_removed": sorted(set(before.get("commits", [])) -
                                       set(after.get("commits", []))),
             "counts": {k: [before.get("counts", {}).get(k), v]
                        for k, v in after.get("counts", {}).items()
                        if before.get("counts", {}).get(k) != v}}
    old_labels, new_labels = before.get("label_counts", {}), after.get("label_counts", {})
    delta["labels_moved"] = {label: [old_labels.get(label, 0), new_labels.get(label, 0)]
                             for label in sorted(old_labels.keys() | new_labels.keys())
                             if old_labels.get(label, 0) != new_labels.get(label, 0)}
    delta["sources"] = _source_deltas(old_ingest, new_ingest)
    return delta


def _source_deltas(old: str | None, new: str | None) -> list[dict]:
    """The sources (ingest summaries) whose commit changed: what the new commit supersedes
    and the examples it added and removed."""
    if new is None:
        return []
    before = {s["path"]: s["commit"] for s in json.loads(old)["sources"]} if old else {}
    return [{"path": _redacted(s["path"]), "commit": s["commit"],
             "supersedes": s.get("supersedes", []), "added": s.get("added"),
             "removed": s.get("removed")}
            for s in json.loads(new)["sources"] if before.get(s["path"]) != s["commit"]]


def _metric_deltas(before: dict, after: dict) -> list[dict]:
    if before["metrics"] is None or after["metrics"] is None:
        return []
    old, new = json.loads(before["metrics"]), json.loads(after["metrics"])
    labels: dict[str, int] = {}  # one numbering of the labels for both sides
    rows = (_rows(before["rows"], labels), _rows(after["rows"], labels))
    have_rows = None not in rows and all(len(side[0]) for side in rows)
    paired = (have_rows and old.get("snapshot") == new.get("snapshot")
              and _same(rows[0][0], rows[1][0]))  # the same test examples, in the same order
    keys = sorted(k for k in old.keys() & new.keys() if _number(old[k]) and _number(new[k]))
    scored = [k for k in keys if k in ROW_METRICS] if have_rows else []
    intervals = _intervals(scored, rows[0], rows[1], paired, len(labels)) if scored else {}
    return [{"metric": key, "old": old[key], "new": new[key],
             "delta": round(new[key] - old[key], 6), "interval": intervals.get(key),
             "paired": paired if key in intervals else None} for key in keys]


def bootstrap_interval(metric: str, old: tuple[list, list], new: tuple[list, list],
                       paired: bool, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0) -> list[float]:
    """The central 95% interval of ``metric``'s difference (new - old), by bootstrap over
    the test examples: the same resampled examples on both sides when ``paired`` (the
    same test split), each side resampled on its own otherwise.

    Args:
        old, new: (actual labels, predicted labels) of each test example.
    """
    import numpy as np

    labels: dict[str, int] = {}
    codes = [np.array([labels.setdefault(x, len(labels)) for x in side], dtype=np.int64)
             for side in (*old, *new)]
    return _intervals([metric], codes[:2], codes[2:], paired, len(labels), samples,
                      seed)[metric]


def _intervals(metrics: list[str], old, new, paired: bool, classes: int,
               samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, list[float]]:
    from dlforge.registry.scores import bootstrap_differences

    found = bootstrap_differences(metrics, old, new, paired, classes, samples, seed,
                                  CONFIDENCE)
    return {metric: [round(low, 6), round(high, 6)] for metric, (low, high) in found.items()}


def _rows(text: str | None, labels: dict[str, int]):
    """The (actual, predicted) label indices of a confusion CSV, numbered in ``labels``
    (new labels are added); read row by row, so memory holds two integers per row."""
    import numpy as np

    if text is None:
        return None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if "actual" not in header or "predicted" not in header:
        raise ValueError(f"the header {header[:4]} has no actual and predicted columns")
    actual, predicted = header.index("actual"), header.index("predicted")
    codes = array("q")
    for row in reader:
        if len(row) <= max(actual, predicted):
            raise ValueError(f"row {reader.line_num} has {len(row)} columns")
        codes.append(labels.setdefault(row[actual], len(labels)))
        codes.append(labels.setdefault(row[predicted], len(labels)))
    pairs = np.frombuffer(codes, dtype=np.int64).reshape(-1, 2)  # (N, 2)
    return pairs[:, 0], pairs[:, 1]


def _same(a, b) -> bool:
    return len(a) == len(b) and bool((a == b).all())


def _regressions(old: str | None, new: str | None, threshold: float = REGRESSION) -> list[dict]:
    """The classes (with at least ``MIN_SUPPORT`` test examples) whose F1 dropped by more
    than ``threshold``, the largest drop first."""
    if old is None or new is None:
        return []
    before = {r["label"]: r for r in csv.DictReader(io.StringIO(old))}
    found = []
    for row in csv.DictReader(io.StringIO(new)):
        was = before.get(row["label"])
        if was is None or int(float(row["support"])) < MIN_SUPPORT:
            continue
        drop = float(was["f1"]) - float(row["f1"])
        if drop > threshold:
            found.append({"label": row["label"], "old_f1": round(float(was["f1"]), 4),
                          "new_f1": round(float(row["f1"]), 4),
                          "support": int(float(row["support"]))})
    return sorted(found, key=lambda r: r["new_f1"] - r["old_f1"])


def _gate(old: str | None, new: str | None) -> dict | None:
    if new is None:
        return None
    after = json.loads(new)
    before = json.loads(old) if old is not None else {}
    return {"version": after.get("version"), "promoted": after.get("promote"),
            "reason": after.get("reason"), "champion": [before.get("champion"),
                                                        after.get("champion")]}


def _sweep(text: str | None) -> dict | None:
    if text is None:
        return None
    summary = json.loads(text)
    return {"best": _redacted(summary.get("best", {}).get("params")), "value":
            summary.get("best", {}).get("value"), "metric": summary.get("metric"),
            "trials": summary.get("counts")}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _experiments(side: Side) -> list[str]:
    from dlforge.stages.workflow import WORKFLOW_CONFIG

    try:
        text = side.read(str(WORKFLOW_CONFIG))
    except NotARegularFile as err:
        raise NotARegularFile(f"{side.name}: {err}") from None
    try:
        return list((yaml.safe_load(text) or {}).get("experiments", [])) if text else []
    except yaml.YAMLError:
        return []


def to_markdown(report: dict) -> str:
    """The review as Markdown for a pull-request comment."""
    base = report["base"]
    lines = [verdict_line(report["verdict"]), "",
             f"## dlforge review: `{base['name']}` ({base['commit'][:8]}) → {report['head']}", ""]
    for name, exp in report["experiments"].items():
        lines += [f"### {name}", ""]
        lines += [f"> {problem}" for problem in exp.get("problems", [])]
        if exp.get("problems"):
            lines.append("")
        lines += check_lines(exp)
        if gate := exp.get("gate"):
            old, new = gate["champion"]
            move = f"champion v{old} → v{new}" if old != new else f"champion stays v{new}"
            verdict = "promoted" if gate["promoted"] else "not promoted"
            lines += [f"**Gate**: v{gate['version']} {verdict} ({gate['reason']}); {move}", ""]
        if metrics := exp.get("metrics"):
            lines += ["**Metrics** (test split; 95% bootstrap interval of the change, paired "
                      "where both sides share the test split)", "",
                      "| metric | base | head | change | 95% interval |", "|---|---|---|---|---|"]
            for m in metrics:
                interval = (f"[{m['interval'][0]:+.4f}, {m['interval'][1]:+.4f}]"
                            + (" paired" if m["paired"] else " unpaired")
                            if m["interval"] else "")
                lines.append(f"| {m['metric']} | {_show(m['old'])} | {_show(m['new'])} | "
                             f"{m['delta']:+.4f} | {interval} |")
            lines.append("")
        lines += cost_lines(exp.get("cost") or [])
        if config := exp.get("config"):
            lines += ["**Config changes**", "", "| key | base | head |", "|---|---|---|"]
            lines += [f"| `{c['key']}` | {_show(c['old'])} | {_show(c['new'])} |" for c in config]
            lines.append("")
        if (data := exp.get("data")) and data["old_version"] != data["new_version"]:
            lines.append(f"**Data**: snapshot {data['old_version']} → {data['new_version']}")
            if data["commits_added"]:
                lines.append(f"- commits added: {', '.join(map(str, data['commits_added']))}")
            lines += [_source_line(s) for s in data.get("sources", [])]
            lines += [f"- {key}: {old} → {new}" for key, (old, new) in data["counts"].items()]
            lines += [f"- label `{label}`: {old} → {new}"
                      for label, (old, new) in data["labels_moved"].items()]
            lines.append("")
        if regressions := exp.get("per_class"):
            lines += [f"**Per-class regressions** (F1 down by more than {REGRESSION})", "",
                      "| label | base F1 | head F1 | support |", "|---|---|---|---|"]
            lines += [f"| {r['label']} | {r['old_f1']} | {r['new_f1']} | {r['support']} |"
                      for r in regressions]
            lines.append("")
        if exp.get("plots"):
            lines += [f"**Plots**: `dvc plots diff {base['name']}` draws both sides of "
                      + ", ".join(f"`{p}`" for p in exp["plots"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _source_line(source: dict) -> str:
    """``- `data/raw/x.csv`: commit 3 supersedes 1: +20 -230 examples``."""
    line = f"- `{source['path']}`: commit {source['commit']}"
    if source["supersedes"]:
        line += f" supersedes {', '.join(map(str, source['supersedes']))}"
    if source["added"] is not None:
        line += f": +{source['added']} -{source['removed']} examples"
    return line


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else f"`{value}`" if isinstance(value, str) else str(value)
