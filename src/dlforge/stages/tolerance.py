"""What ``dlforge review --check`` calls a regression: the tolerances of conf/review.yaml.

    review:
      tolerance:
        accuracy: {max_drop: 0.01}    # fails past a 0.01 drop whose 95% interval excludes 0
        macro_f1: {max_drop: null}    # null: not checked
        class_f1: {max_drop: 0.10}    # a class whose F1 drops past 0.10 (>= 3 test examples)

The packaged conf/review.yaml holds the defaults (accuracy only); the project's own
conf/review.yaml overrides any key of it. Both are read as plain YAML, without Hydra:
the review stays light. A metric counts only where its 95% bootstrap interval of the
change lies wholly below 0, so a drop within the noise of the test split never fails.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dlforge.core.config import PACKAGED_CONF, conf_dir
from dlforge.core.errors import DlforgeError

FILE = "review.yaml"
METRICS = ("accuracy", "macro_f1")  # the metrics the review gives an interval
CLASS_F1 = "class_f1"
KEYS = ("max_drop",)


def tolerances() -> dict[str, float]:
    """``{metric: max_drop}`` of the tolerances that are set (``class_f1`` among them),
    packaged defaults overridden by the project's conf/review.yaml.

    Raises:
        DlforgeError: a file that is not YAML, an unknown metric or key, or a value that
            is not a number >= 0, naming the file and the key.
    """
    merged: dict = {}
    for path in dict.fromkeys([PACKAGED_CONF / FILE, conf_dir() / FILE]):
        for metric, values in _read(path).items():
            merged[metric] = {**merged.get(metric, {}), **values}
    return {metric: values["max_drop"] for metric, values in merged.items()
            if values.get("max_drop") is not None}


def _read(path: Path) -> dict[str, dict]:
    """The checked ``review.tolerance`` mapping of ``path`` ({} where it is absent)."""
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DlforgeError(f"{path} is not valid YAML{where}. Fix: correct it (see the "
                           f"packaged {PACKAGED_CONF / FILE})") from None
    found = (doc.get("review") or {}).get("tolerance") if isinstance(doc, dict) else None
    found = found or {}
    if not isinstance(found, dict):
        raise DlforgeError(f"review.tolerance in {path} is not a mapping. Fix: write it as "
                           "`review: {tolerance: {accuracy: {max_drop: 0.01}}}`")
    for metric, values in found.items():
        _check(path, metric, values)
    return found


def _check(path: Path, metric, values) -> None:
    key = f"review.tolerance.{metric}"
    if metric not in (*METRICS, CLASS_F1):
        raise DlforgeError(f"{key} in {path} is not a metric the review can check. Fix: use "
                           f"{', '.join((*METRICS, CLASS_F1))}")
    if not isinstance(values, dict):
        raise DlforgeError(f"{key} in {path} is {values!r}, not a mapping. Fix: write it as "
                           f"`{metric}: {{max_drop: 0.01}}`")
    for name, value in values.items():
        if name not in KEYS:
            raise DlforgeError(f"{key}.{name} in {path} is not a tolerance key. Fix: use "
                               "max_drop")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and value >= 0):
            raise DlforgeError(f"{key}.{name} in {path} is {value!r}. Fix: give a number "
                               ">= 0 (a drop of the metric), or null to not check it")


def regressions(metrics: list[dict], classes: list[dict], limits: dict[str, float]) -> list[dict]:
    """The changes past ``limits``: a metric of ``metrics`` (the review's entries: old,
    new, delta, interval) that dropped by more than its ``max_drop`` with an interval
    below 0, and a class of ``classes`` (label, old_f1, new_f1) past ``class_f1``."""
    found = []
    for m in metrics:
        limit, interval = limits.get(m["metric"]), m.get("interval")
        if (m["metric"] in METRICS and limit is not None and interval is not None
                and interval[1] < 0 and -m["delta"] > limit):
            found.append({"metric": m["metric"], "old": m["old"], "new": m["new"],
                          "delta": m["delta"], "interval": interval, "max_drop": limit})
    limit = limits.get(CLASS_F1)
    found += [{"metric": CLASS_F1, "label": c["label"], "old": c["old_f1"], "new": c["new_f1"],
               "delta": round(c["new_f1"] - c["old_f1"], 6), "max_drop": limit}
              for c in classes if limit is not None and c["old_f1"] - c["new_f1"] > limit]
    return found
