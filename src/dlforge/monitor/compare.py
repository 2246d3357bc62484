"""Live traffic against the reference: the report's label, input and latency sections.

Pure functions of a :class:`~dlforge.monitor.reference.Reference` and a
:class:`~dlforge.monitor.traffic.Traffic`; no I/O.
"""

from __future__ import annotations

from collections import Counter

from dlforge.monitor import drift

TOP_LABELS = 20  # labels listed in the report and the plot


def shares(counts: Counter) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def labels(reference: Counter, live: Counter) -> dict:
    """PSI of the predicted labels against the train labels, and the top labels' shares.

    ``top`` lists the labels with the largest share on either side, largest first.
    """
    ref, now = shares(reference), shares(live)
    ranked = sorted(set(ref) | set(now), key=lambda k: (-max(ref.get(k, 0), now.get(k, 0)), k))
    return {"psi": round(drift.category_psi(reference, live), 6) if live else None,
            "bins": len(set(reference) | set(live)),
            "unknown": sorted(set(live) - set(reference)),  # predicted, never in train
            "top": [{"label": k, "reference": round(ref.get(k, 0.0), 6),
                     "live": round(now.get(k, 0.0), 6)} for k in ranked[:TOP_LABELS]]}


def _other_size_share(sizes: list[tuple[int, int]], size: tuple[int, int] | None) -> float | None:
    """Share of ``sizes`` other than ``size``; None without either."""
    return round(sum(s != size for s in sizes) / len(sizes), 6) if sizes and size else None


def _increase(pair: dict) -> float | None:
    """live - reference, None when either is unknown."""
    if pair["live"] is None or pair["reference"] is None:
        return None
    return _round(pair["live"] - pair["reference"])


def inputs(kind: str, reference, traffic, bins: int) -> dict:
    """Input drift: text by token counts and OOV rate, images by intensity and size.

    ``means`` compares the mean of every summary field (reference, live).
    """
    means = {k: {"reference": drift.mean(v), "live": drift.mean(traffic.inputs.get(k, []))}
             for k, v in sorted(reference.inputs.items())}
    out = {"kind": kind, "summarised": {"reference": reference.summarised,
                                        "live": traffic.summarised},
           "means": means}
    if kind == "text":
        psi = drift.value_psi(reference.inputs.get("tokens", []),
                              traffic.inputs.get("tokens", []), bins)
        oov = means.get("oov", {"reference": None, "live": None})
        out |= {"tokens_psi": _round(psi), "oov": {**oov, "increase": _increase(oov)}}
    elif kind == "image":
        psi = drift.value_psi(reference.inputs.get("mean", []), traffic.inputs.get("mean", []),
                              bins)
        common = Counter(reference.sizes).most_common(1)[0][0] if reference.sizes else None
        size = {"reference": _other_size_share(reference.sizes, common),
                "live": _other_size_share(traffic.sizes, common)}
        out |= {"intensity_psi": _round(psi),
                "size": {"reference": list(common) if common else None,
                         "reference_other_share": size["reference"],
                         "live_other_share": size["live"], "increase": _increase(size)}}
    return out


def latency(traffic) -> dict:
    """Latency percentiles in ms; each prediction carries its request's latency."""
    return {**drift.percentiles(traffic.latencies), "mean": drift.mean(traffic.latencies),
            "count": len(traffic.latencies)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
