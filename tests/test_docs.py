"""The documentation: the README as a front page, and the docs site built strictly.

The site is built exactly as `make docs` builds it (`mkdocs build --strict`, which
also generates the benchmarks page from benchmarks/results/*.json), once per run,
into a temp folder. Any warning fails it: a broken link or anchor, a page missing
from the nav, a docstring of the API reference that does not render.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 250
MIN_PAGES = 8
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.MULTILINE)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it; the build's output must hold no warning."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                             "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert "No module named mkdocs" not in log, "install the docs extra: pip install -e '.[docs]'"
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def _renderer():
    spec = importlib.util.spec_from_file_location("render_docs",
                                                  ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_docs"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """The anchor GitHub and MkDocs give a simple heading (or its explicit `{#id}`)."""
    explicit = re.search(r"\{#([^}]+)\}\s*$", heading)
    if explicit:
        return explicit.group(1)
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower())
    return text.strip().replace(" ", "-")


def test_site_builds_strictly_with_every_page(site):
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md"))
    assert len(pages) >= MIN_PAGES, [p.name for p in pages]
    for page in pages:
        stem = page.relative_to(ROOT / "docs").with_suffix("")
        built = site / ("" if stem == Path("index") else stem) / "index.html"
        assert built.exists(), f"{page} was not built"
    assert (site / "benchmarks" / "index.html").exists()
    assert not (ROOT / "docs" / "benchmarks.md").exists(), "the benchmarks page is generated"


def test_benchmarks_page_shows_every_results_file(site):
    page = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    for results in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert results.name in page, f"{results.name} is missing from the benchmarks page"
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert f'id="{script.stem}"' in page, f"{script.name} has no section"


def test_renderer_turns_a_results_file_into_a_section(tmp_path):
    render_docs = _renderer()
    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    (bench / "bench_toy.py").write_text(
        '"""Toy throughput.\n\nUsage:\n    python benchmarks/bench_toy.py [--n N]\n\n'
        'Writes benchmarks/results/toy.json.\n"""\n')
    (bench / "bench_other.py").write_text(
        '"""Other figures.\n\nWrites benchmarks/results/other.json.\n"""\n')
    (bench / "results" / "toy.json").write_text(json.dumps({
        "command": "python benchmarks/bench_toy.py --n 3", "machine": {"cpus": 2},
        "date": "2025-01-02", "requests_per_s": 595.5, "answers": 676352,
        "runs": [{"n": 1, "wall_s": 0.5}, {"n": 2, "wall_s": 0.9}]}))

    page = render_docs.render(bench / "results", bench)

    toy = page[page.index("{#bench_toy}"):]
    assert "## Toy throughput {#bench_toy}" in page
    assert "- Command: `python benchmarks/bench_toy.py --n 3`" in toy
    assert "- Machine: cpus 2" in toy and "- Date: 2025-01-02" in toy
    assert "| requests_per_s | 595.5 |" in toy and "| answers | 676,352 |" in toy
    assert "| 2 | 0.9 |" in toy
    other = page[page.index("{#bench_other}"):page.index("{#bench_toy}")]
    assert "Run `python benchmarks/bench_other.py`" in other
    assert "`benchmarks/results/other.json`" in other


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"
    assert "make run" in text and "make test" in text
    assert "CC BY 3.0" in text


def test_readme_relative_links_resolve():
    text = README.read_text(encoding="utf-8")
    links = [link for link in LINK.findall(text)
             if not re.match(r"[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]
    assert links, "the README links into docs/"
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README.md links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            anchors = {_slug(h) for h in HEADING.findall(target.read_text(encoding="utf-8"))}
            assert anchor in anchors, f"README.md links to {link}: no such heading"
