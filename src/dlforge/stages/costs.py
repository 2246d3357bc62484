"""What a change did to an experiment's cost, for the review.

Each training run records its cost under ``cost`` in ``train/metrics.json`` (see
:mod:`dlforge.train.cost`): CPU and wall seconds, peak memory, and GPU time and energy
where the machine gives them. The review sets the two sides' figures side by side,
beside the change in metrics, so that "+1% accuracy" comes with its price.
"""

from __future__ import annotations

import json

# The figures shown, in this order, with their unit; one a side lacks shows as —.
FIGURES = (("cpu_seconds", "s"), ("wall_seconds", "s"), ("peak_rss_bytes", "bytes"),
           ("gpu_seconds", "s"), ("gpu_peak_memory_bytes", "bytes"),
           ("energy_joules", "J"))


def cost_deltas(old_metrics: str | None, new_metrics: str | None) -> list[dict]:
    """The cost figures of the base's and the head's training (``train/metrics.json``
    texts; None where a side has none), with the change and its ratio where both have it."""
    old, new = _cost(old_metrics), _cost(new_metrics)
    rows = []
    for figure, unit in FIGURES:
        a, b = old.get(figure), new.get(figure)
        if a is None and b is None:
            continue
        both = a is not None and b is not None
        rows.append({"figure": figure, "unit": unit, "old": a, "new": b,
                     "delta": b - a if both else None,
                     "ratio": b / a if both and a else None})
    return rows


def _cost(text: str | None) -> dict:
    if text is None:
        return {}
    cost = json.loads(text).get("cost") or {}
    return {k: v for k, v in cost.items() if isinstance(v, int | float)}


def cost_lines(rows: list[dict]) -> list[str]:
    """The review's Markdown table of ``rows`` (:func:`cost_deltas`)."""
    if not rows:
        return []
    lines = ["**Cost** (the training run)", "",
             "| cost | base | head | change |", "|---|---|---|---|"]
    for row in rows:
        change = ("" if row["delta"] is None else _amount(row["delta"], row["unit"], sign=True)
                  + (f" (×{row['ratio']:.2f})" if row["ratio"] is not None else ""))
        lines.append(f"| {row['figure']} | {_amount(row['old'], row['unit'])} | "
                     f"{_amount(row['new'], row['unit'])} | {change} |")
    return [*lines, ""]


def _amount(value, unit: str, sign: bool = False) -> str:
    if value is None:
        return "—"
    if unit == "bytes":
        return f"{value / 2**20:{'+' if sign else ''}.1f} MiB"
    return f"{value:{'+' if sign else ''}.1f} {unit}"
