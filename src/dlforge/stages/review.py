"""``dlforge review``: what a change did to each experiment, from the results kept in git.

    dlforge review                       # the working tree against the merge base
    dlforge review --base HEAD~1 --format json

Each side is a set of small files the stages write and git keeps (the frozen
training config, the snapshot summary, the evaluation's metrics, per-class
scores and (actual, predicted) rows, the register decision): the base side is
read with ``git show REV:PATH``, the head side from the working tree. Per
experiment the review gives the config keys that changed, the data delta, each
metric's change with a 95% bootstrap interval, per-class regressions, the
gate's verdict and the champion's move. A problem with one experiment (no
results on one side, an unreadable file) is reported there and the others are
still reviewed.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from dlforge.core.config import dotted
from dlforge.core.errors import DlforgeError

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
REGRESSION = 0.05  # a class whose F1 drops by more than this is listed
MIN_SUPPORT = 3  # ...when it has at least this many test examples
ROW_METRICS = ("accuracy", "macro_f1")  # computed again from the (actual, predicted) rows
# Folders and a run's bookkeeping, not what was trained (the snapshot is in the data delta).
IGNORED_KEYS = ("paths.", "hydra.", "run_id", "config_hash", "resume_from", "snapshot_path",
                "snapshot")


@dataclass(frozen=True)
class Side:
    """One side of the review: a git revision, or the working tree (``rev`` None)."""

    name: str
    rev: str | None = None

    def read(self, path: str) -> str | None:
        """The text of ``path`` (relative to the repository root) on this side, or None."""
        if self.rev is None:
            file = Path(path)
            return file.read_text() if file.is_file() else None
        result = _git("show", f"{self.rev}:{path}", check=False)
        return result.stdout if result.returncode == 0 else None


def review(base: str | None = None, experiments: list[str] | None = None) -> dict:
    """The review of every experiment (or those named) between ``base`` and the working
    tree, run from the project's root.

    Raises:
        DlforgeError: outside a git repository, or for a revision git does not know.
    """
    _repository_root()
    base_rev = _resolve(base) if base else default_base()
    old, new = Side(base or base_rev[:12], base_rev), Side("working tree")
    names = experiments or list(dict.fromkeys([*_experiments(old), *_experiments(new)]))
    return {"base": {"name": old.name, "commit": base_rev}, "head": new.name,
            "experiments": {name: review_experiment(name, old, new) for name in names}}


def default_base() -> str:
    """The merge base of HEAD with the default branch (``origin/HEAD``, else main or
    master); on the default branch itself, HEAD: the review shows uncommitted work."""
    for ref in ("origin/HEAD", "origin/main", "main", "origin/master", "master"):
        if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
                ).returncode == 0:
            merged = _git("merge-base", "HEAD", ref, check=False)
            if merged.returncode == 0:
                return merged.stdout.strip()
    return _resolve("HEAD")


def review_experiment(name: str, old: Side, new: Side) -> dict:
    """One experiment's part of the review (problems are reported, not raised)."""
    from dlforge.stages.workflow import layout_pattern

    layout = layout_pattern()
    files = {"config": layout.train.frozen_config, "snapshot": layout.snapshot_summary,
             "metrics": layout.eval.metrics, "per_class": layout.eval.per_class,
             "rows": layout.eval.confusion_csv, "register": layout.register_record,
             "sweep": layout.sweep.summary}
    paths = {key: str(path).replace("{exp}", name) for key, path in files.items()}
    sides = {}
    for side in (old, new):
        try:
            sides[side.name] = {key: side.read(str(Path(path))) for key, path in paths.items()}
        except OSError as err:
            return {"problems": [f"{side.name}: cannot read the results ({err})"]}
    before, after = sides[old.name], sides[new.name]
    report: dict = {"problems": []}
    for side, texts in ((old, before), (new, after)):
        if texts["metrics"] is None:
            report["problems"].append(
                f"{side.name} has no results for {name} ({paths['metrics']} is missing): "
                f"run the workflow and commit its results there to compare")
    try:
        report["config"] = _config_diff(before["config"], after["config"])
        report["data"] = _data_delta(before["snapshot"], after["snapshot"])
        report["metrics"] = _metric_deltas(before, after)
        report["per_class"] = _regressions(before["per_class"], after["per_class"])
        report["gate"] = _gate(before["register"], after["register"])
        report["sweep"] = _sweep(after["sweep"])
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        report["problems"].append(f"a result file of {name} is not what the stages write "
                                  f"({type(err).__name__}: {err}); re-run its stages")
    report["plots"] = [str(p).replace("{exp}", name) for p in
                       (layout.train.history, layout.eval.confusion_csv)]
    return report


def _config_diff(old: str | None, new: str | None) -> list[dict]:
    if old is None or new is None:
        return []
    before, after = (dotted(yaml.safe_load(text) or {}) for text in (old, new))
    keys = sorted(k for k in before.keys() | after.keys() if not k.startswith(IGNORED_KEYS))
    return [{"key": k, "old": before.get(k), "new": after.get(k)} for k in keys
            if before.get(k) != after.get(k)]


def _data_delta(old: str | None, new: str | None) -> dict | None:
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
    return delta


def _metric_deltas(before: dict, after: dict) -> list[dict]:
    if before["metrics"] is None or after["metrics"] is None:
        return []
    old, new = json.loads(before["metrics"]), json.loads(after["metrics"])
    rows = (_rows(before["rows"]), _rows(after["rows"]))
    paired = (old.get("snapshot") == new.get("snapshot") and None not in rows
              and rows[0][0] == rows[1][0])  # the same test examples, in the same order
    deltas = []
    for key in sorted(k for k in old.keys() & new.keys() if _number(old[k]) and _number(new[k])):
        entry = {"metric": key, "old": old[key], "new": new[key],
                 "delta": round(new[key] - old[key], 6), "interval": None, "paired": None}
        if key in ROW_METRICS and None not in rows:
            entry["interval"] = bootstrap_interval(key, rows[0], rows[1], paired)
            entry["paired"] = paired
        deltas.append(entry)
    return deltas


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

    labels = {label: i for i, label in enumerate(sorted({*old[0], *old[1], *new[0], *new[1]}))}
    a = [np.array([labels[x] for x in side], dtype=np.int64) for side in (*old, *new)]
    rng = np.random.default_rng(seed)
    n_old, n_new = len(a[0]), len(a[2])
    picks_old = rng.integers(0, n_old, size=(samples, n_old))
    picks_new = picks_old if paired else rng.integers(0, n_new, size=(samples, n_new))
    score = _accuracy if metric == "accuracy" else _macro_f1
    diffs = np.array([score(a[2][pn], a[3][pn], len(labels)) -
                      score(a[0][po], a[1][po], len(labels))
                      for po, pn in zip(picks_old, picks_new, strict=True)])
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _accuracy(actual, predicted, _classes: int) -> float:
    return float((actual == predicted).mean())


def _macro_f1(actual, predicted, classes: int) -> float:
    import numpy as np

    hits = np.bincount(actual[actual == predicted], minlength=classes)
    total = np.bincount(actual, minlength=classes) + np.bincount(predicted, minlength=classes)
    present = np.bincount(actual, minlength=classes) > 0
    f1 = np.divide(2 * hits, total, out=np.zeros(classes), where=total > 0)
    return float(f1[present].mean())


def _rows(text: str | None) -> tuple[list[str], list[str]] | None:
    if text is None:
        return None
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r["actual"] for r in rows], [r["predicted"] for r in rows]


def _regressions(old: str | None, new: str | None) -> list[dict]:
    if old is None or new is None:
        return []
    before = {r["label"]: r for r in csv.DictReader(io.StringIO(old))}
    found = []
    for row in csv.DictReader(io.StringIO(new)):
        was = before.get(row["label"])
        if was is None or int(float(row["support"])) < MIN_SUPPORT:
            continue
        drop = float(was["f1"]) - float(row["f1"])
        if drop > REGRESSION:
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
    return {"best": summary.get("best", {}).get("params"), "value":
            summary.get("best", {}).get("value"), "metric": summary.get("metric"),
            "trials": summary.get("counts")}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _experiments(side: Side) -> list[str]:
    from dlforge.stages.workflow import WORKFLOW_CONFIG

    text = side.read(str(WORKFLOW_CONFIG))
    try:
        return list((yaml.safe_load(text) or {}).get("experiments", [])) if text else []
    except yaml.YAMLError:
        return []


def _repository_root() -> Path:
    result = _git("rev-parse", "--show-toplevel", check=False)
    if result.returncode != 0:
        raise DlforgeError(f"{Path.cwd()} is not inside a git repository: the review compares "
                           "results kept in git. Fix: run it in the project's repository "
                           "(`git init`, commit a run's results, then change something)")
    root = Path(result.stdout.strip()).resolve()
    if root != Path.cwd().resolve():
        raise DlforgeError(f"run dlforge review from the repository's root, {root}, where "
                           "workflow/config.yaml is")
    return root


def _resolve(rev: str) -> str:
    result = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if result.returncode != 0:
        raise DlforgeError(f"--base {rev}: git knows no such revision. Fix: name a commit, "
                           "branch or tag (`git log --oneline` lists them), e.g. HEAD~1")
    return result.stdout.strip()


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise DlforgeError("git is not installed: dlforge review reads results from git. "
                           "Fix: install git") from None
    if check and result.returncode != 0:
        raise DlforgeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def to_markdown(report: dict) -> str:
    """The review as Markdown for a pull-request comment."""
    base = report["base"]
    lines = [f"## dlforge review: `{base['name']}` ({base['commit'][:8]}) → {report['head']}", ""]
    for name, exp in report["experiments"].items():
        lines += [f"### {name}", ""]
        lines += [f"> {problem}" for problem in exp.get("problems", [])]
        if exp.get("problems"):
            lines.append("")
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
        if config := exp.get("config"):
            lines += ["**Config changes**", "", "| key | base | head |", "|---|---|---|"]
            lines += [f"| `{c['key']}` | {_show(c['old'])} | {_show(c['new'])} |" for c in config]
            lines.append("")
        if (data := exp.get("data")) and data["old_version"] != data["new_version"]:
            lines.append(f"**Data**: snapshot {data['old_version']} → {data['new_version']}")
            if data["commits_added"]:
                lines.append(f"- commits added: {', '.join(map(str, data['commits_added']))}")
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


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else f"`{value}`" if isinstance(value, str) else str(value)
