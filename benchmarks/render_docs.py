"""The documentation's benchmarks page, generated from ``benchmarks/results/*.json``.

Usage:
    python benchmarks/render_docs.py            # print the page
    mkdocs build --strict                       # mkdocs.yml runs it as a hook

Each benchmark script (``benchmarks/bench_*.py``) gets a section: its title and
usage from its docstring, and, when the results file it writes is present, the
file's figures as tables, with the command, the machine and the date where the
file records them (the date it was last committed otherwise). A script whose
results file is absent gets the command that produces it. A results file that no
script claims gets a section of its own. Nothing on the page is written by hand:
to change a figure, run the benchmark and commit its results file.

As an MkDocs hook (``hooks:`` in mkdocs.yml) it adds the page as ``benchmarks.md``
on every build, and ``mkdocs serve`` rebuilds it when a results file changes.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
PAGE = "benchmarks.md"
COLLAPSE_ROWS = 12  # longer tables (time series) start folded
MACHINE_KEYS = ("machine", "environment")
DATE_KEYS = ("date", "recorded_at", "timestamp", "finished_at", "started_at")
RESULTS_NAME = re.compile(r"benchmarks/results/([A-Za-z0-9_.-]+\.json)")

log = logging.getLogger("mkdocs.hooks.render_docs")

INTRO = """\
# Benchmarks

This page is generated on every documentation build from the results files in
`benchmarks/results/` by `benchmarks/render_docs.py`; nothing here is written by
hand. Each benchmark script writes its results file; commit that file with the
change it measures, and this page shows it. Figures depend on the machine and on
what else ran on it: read them with the machine and the date recorded beside them.
A benchmark without a results file here has not been recorded in this checkout;
its section gives the command that measures it.
"""


@dataclass(frozen=True)
class Script:
    """A benchmark script, as its docstring describes it."""

    name: str  # file stem, also the section's anchor
    title: str
    usage: str  # the docstring's usage lines
    writes: tuple[str, ...]  # results file names its docstring promises

    def owns(self, results: Path, report: dict) -> bool:
        """Whether ``results`` came from this script."""
        return (results.name in self.writes or report.get("benchmark") == self.name
                or results.stem.startswith(self.name))


def read_script(path: Path) -> Script:
    """Title, usage and results files from a script's docstring (never imported)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or path.stem
    paragraphs = doc.split("\n\n")
    title = " ".join(paragraphs[0].split()).rstrip(".").replace("``", "`")
    usage = next((p.split("\n", 1)[1] for p in paragraphs if p.startswith("Usage:")),
                 f"python benchmarks/{path.name}")
    return Script(path.stem, title, textwrap.dedent(usage).strip(),
                  tuple(dict.fromkeys(RESULTS_NAME.findall(doc))))


def scripts(folder: Path = BENCHMARKS) -> list[Script]:
    """Every ``bench_*.py`` in ``folder``, by name."""
    return [read_script(path) for path in sorted(folder.glob("bench_*.py"))]


def cell(value) -> str:
    """One value as table text: numbers as recorded, lists inline, ``|`` escaped."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, list):
        text = ", ".join(cell(v) for v in value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {cell(v)}" for k, v in value.items())
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def flatten(value: dict, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys; lists stay values."""
    flat = {}
    for key, item in value.items():
        if isinstance(item, dict):
            flat.update(flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def records_of(value) -> list[dict] | None:
    """Rows of a table when ``value`` is a list of objects or an object of objects."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [flatten(v) for v in value]
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return [{"": key, **flatten(v)} for key, v in value.items()]
    return None


def table(rows: list[dict]) -> list[str]:
    """A Markdown table over the union of the rows' keys, in order of appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def figures(report: dict) -> list[str]:
    """The report's figures: scalars in one table, each list or group of objects in its own."""
    skip = {"benchmark", "command", *MACHINE_KEYS, *DATE_KEYS}
    scalars, groups = {}, []
    for key, value in report.items():
        if key in skip:
            continue
        rows = records_of(value)
        if rows is None and isinstance(value, dict):
            scalars.update(flatten(value, f"{key}."))
        elif rows is None:
            scalars[key] = value
        else:
            groups.append((key, rows))
    lines = table([{"figure": k, "value": v} for k, v in scalars.items()]) if scalars else []
    for key, rows in groups:
        body = table(rows)
        if len(rows) > COLLAPSE_ROWS:
            lines += ["", f'??? note "{key} ({len(rows)} rows)"', ""]
            lines += ["    " + line for line in body]
        else:
            lines += ["", f"**{key}**", "", *body]
    return lines


def committed_on(path: Path) -> str | None:
    """The date ``path`` was last committed, or None outside git or when untracked."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", path.name],
                             cwd=path.parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(path: Path, report: dict, script: Script | None) -> list[str]:
    """Where the figures come from: command, machine, date."""
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    if "command" in report:
        lines = [f"- Command: `{report['command']}`"]
    elif script is not None:
        lines = [f"- Written by `benchmarks/{script.name}.py` (the file does not record "
                 "its command line)"]
    else:
        lines = ["- Command: not recorded"]
    machine = next((report[k] for k in MACHINE_KEYS if k in report), None)
    lines.append(f"- Machine: {cell(machine)}" if machine else "- Machine: not recorded")
    date = next((report[k] for k in DATE_KEYS if k in report), None)
    committed = None if date else committed_on(path)
    if date:
        lines.append(f"- Date: {cell(date)}")
    elif committed:
        lines.append(f"- Date: not recorded; last committed {committed}")
    else:
        lines.append("- Date: not recorded")
    return [f"Results file: `{rel}`", "", *lines]


def results_section(path: Path, script: Script | None) -> list[str]:
    """One results file: where it comes from, then its figures."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"`{path.name}` could not be read: {err}"]
    if not isinstance(report, dict):
        report = {"results": report}
    return [*provenance(path, report, script), "", *figures(report)]


def script_section(script: Script, files: list[Path]) -> list[str]:
    """A script's section: its results files, or the command that produces one."""
    lines = [f"## {script.title} {{#{script.name}}}", "", "```bash", script.usage, "```", ""]
    for path in files:
        lines += [*results_section(path, script), ""]
    if not files:
        where = (", ".join(f"`benchmarks/results/{name}`" for name in script.writes)
                 or "no results file (it prints its figures)")
        lines += [f"Not recorded here yet. Run `python benchmarks/{script.name}.py`; "
                  f"it writes {where}.", ""]
    return lines


def render(results: Path = RESULTS, benchmarks: Path = BENCHMARKS) -> str:
    """The whole page."""
    known = scripts(benchmarks)
    reports = {path: _peek(path) for path in sorted(results.glob("*.json"))}
    lines = [INTRO]
    claimed = set()
    for script in known:
        files = [p for p, report in reports.items() if script.owns(p, report)]
        claimed.update(files)
        lines += script_section(script, files)
    for path in reports:
        if path not in claimed:
            lines += [f"## {path.stem} {{#{_anchor(path.stem)}}}", "",
                      *results_section(path, None), ""]
    return "\n".join(lines).rstrip() + "\n"


def _peek(path: Path) -> dict:
    """The report's top level, or {} when it does not parse (its section says why)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


# MkDocs hook events (mkdocs.yml: hooks: [benchmarks/render_docs.py]).

def on_files(files, config):
    """Add the generated page; a hand-written docs/benchmarks.md is an error."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        log.warning("docs/%s is generated by benchmarks/render_docs.py: delete it", PAGE)
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=render()))
    return files


def on_serve(server, config, builder):
    """Rebuild when a results file or a benchmark script changes."""
    server.watch(str(BENCHMARKS))
    return server


if __name__ == "__main__":
    sys.stdout.write(render())
