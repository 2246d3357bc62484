"""The review's verdict, what ``dlforge review --check`` exits with, and its Markdown.

    pass         the head's results are current and nothing regressed past its tolerance
    stale        a head result was not made from the head's config, code or data (or an
                 experiment has no results): re-run the workflow and commit its results
    regression   a metric dropped past its tolerance (conf/review.yaml), its 95%
                 interval below 0; or a class's F1 dropped past ``class_f1``

Both can hold at once (``stale, regression``). A stale base, and results written
before results carried a run record ("unrecorded"), are reported and fail nothing.
"""

from __future__ import annotations

RERUN = "re-run the workflow (`snakemake` or `dvc repro`) and commit its results"


def verdict(experiments: dict[str, dict]) -> dict:
    """The verdict over every experiment's review: its status, the stale stages and the
    regressions by experiment."""
    stale = {name: (["no results"] if exp.get("no_results") else [])
             + [s["stage"] for s in exp.get("stale", [])] for name, exp in experiments.items()}
    stale = {name: stages for name, stages in stale.items() if stages}
    regressed = {name: exp["regressions"] for name, exp in experiments.items()
                 if exp.get("regressions")}
    status = ", ".join(word for word, found in (("stale", stale), ("regression", regressed))
                       if found) or "pass"
    return {"status": status, "stale": stale, "regressions": regressed}


def failed(found: dict) -> bool:
    """Whether the verdict fails the check."""
    return found["status"] != "pass"


def verdict_line(found: dict) -> str:
    """``**Verdict: pass**``, or the failures after it."""
    parts = []
    if found["stale"]:
        parts.append("stale results in " + "; ".join(
            f"{name} ({', '.join(stages)})" for name, stages in found["stale"].items())
            + f": {RERUN}")
    for name, items in found["regressions"].items():
        parts.append(f"{name}: " + "; ".join(_regression_text(r) for r in items))
    return f"**Verdict: {found['status']}**" + (" — " + ". ".join(parts) if parts else "")


def _regression_text(r: dict) -> str:
    what = f"F1 of class `{r['label']}`" if "label" in r else r["metric"]
    interval = (f", 95% interval [{r['interval'][0]:+.4f}, {r['interval'][1]:+.4f}]"
                if r.get("interval") else "")
    return (f"{what} {r['old']:.4g} → {r['new']:.4g} ({r['delta']:+.4f}{interval}; "
            f"tolerance: a drop of {r['max_drop']:g})")


def check_lines(exp: dict) -> list[str]:
    """One experiment's stale, unrecorded and regressed results, as Markdown."""
    lines = []
    if exp.get("stale"):
        lines += [f"**Stale results**: not made from this revision's config, code and data; "
                  f"{RERUN}", ""]
        lines += [f"- `{s['stage']}` ({s['result']}): "
                  + "; ".join(_reason_text(r) for r in s["reasons"]) for s in exp["stale"]]
        lines.append("")
    if exp.get("regressions"):
        lines += ["**Regressions** past the tolerance of conf/review.yaml", ""]
        lines += [f"- {_regression_text(r)}" for r in exp["regressions"]]
        lines.append("")
    if exp.get("unrecorded"):
        lines += [f"**Unrecorded**: {', '.join(f'`{s}`' for s in exp['unrecorded'])} "
                  "were written before results carried a run record, so whether they are "
                  "current is unknown; re-run them to record it", ""]
    if exp.get("base_stale"):
        stages = ", ".join(f"`{s['stage']}` ({', '.join(r['kind'] for r in s['reasons'])})"
                           for s in exp["base_stale"])
        lines += [f"**Base**: its results are stale too: {stages} (for information)", ""]
    return lines


def _reason_text(reason: dict) -> str:
    kind = reason["kind"]
    if kind == "config":
        if reason["keys"] is None:
            return (f"its config section ({reason['file']}) changed; the section it was made "
                    "with is not in the file's history")
        return "config " + ", ".join(f"`{k['key']}` {_value(k['old'])} → {_value(k['new'])}"
                                     for k in reason["keys"])
    if kind == "code":
        files = reason["files"]
        return "code under src/ changed" + (f": {', '.join(files)}" if files else "")
    if kind == "snapshot":
        return f"the experiment's snapshot is {reason['new']}, not {reason['old']}"
    return f"{reason['file']} ({reason['upstream']}'s result) changed since"


def _value(value) -> str:
    return "—" if value is None else f"`{value}`"
