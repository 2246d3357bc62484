"""The run record every result carries: what it was made from, as digests.

    {"config": "3b1f...",        sha256 of the stage's config section, the bytes of
                                 outputs/<exp>/config/<stage>.json (``sha256sum`` gives it)
     "snapshot": "e1e4e720aff2", the snapshot id the stage read (null where it reads none)
     "code": "77aa...",          sha256 of the project's code under src/ (null without src/)
     "dlforge": "0.1.0",         dlforge's version
     "upstream": {"snapshot": "9f2c..."}}   sha256 of each earlier stage's result it read,
                                            by the name of the stage that wrote it

Where it goes, one rule: under the key ``record`` of the result file itself. Every
result a stage writes is a JSON object (snapshot.json, train/metrics.json,
eval/metrics.json, register.json, sweep/summary.json) or, the frozen training
config train/config.yaml, a YAML mapping; so none needs a file beside it, and git,
DVC and ``dlforge review`` read the record where they read the result. It holds no
time, host or run id: an unchanged input writes a byte-identical record, so
Snakemake and DVC see no change.

The project's code is what a commit of the project holds under ``src/``: every
regular file (modules and package data) but ``__pycache__`` folders, ``.pyc`` files,
``*.egg-info`` folders and dlforge's own package where a checkout of dlforge is the
project. In a git working tree those are the files ``git add -A`` would commit
(tracked, or untracked and not ignored), so a result trained before a commit records
that commit's code. Its digest is the sha256 over ``PATH\\0SHA256(CONTENT)\\n`` per
file, in path order: computed alike from the working tree (:func:`code_digest`) and
from a commit's tree (:func:`dlforge.core.commits.tree_code_digest`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dlforge import __version__

KEY = "record"
CODE = "src"  # the project's code, relative to the project's root
NOT_CODE = ("__pycache__",)  # folders never counted
NOT_CODE_SUFFIXES = (".pyc", ".pyo")


def make_record(config: str | None, snapshot: str | None, upstream: dict[str, str],
                code: str | None) -> dict:
    """A run record (the keys above; ``upstream`` in stage-name order)."""
    return {"config": config, "snapshot": snapshot, "code": code, "dlforge": __version__,
            "upstream": dict(sorted(upstream.items()))}


def recorded(result) -> dict | None:
    """The record of a parsed result file, None where it has none (written before
    results carried records)."""
    found = result.get(KEY) if isinstance(result, dict) else None
    return found if isinstance(found, dict) else None


def text_digest(data: str | bytes) -> str:
    """sha256 of ``data`` (text as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def file_digest(path: str | Path) -> str | None:
    """sha256 of a file's bytes, None when it is not a regular file."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return None
    return text_digest(path.read_bytes())


def digest_files(files: dict[str, str]) -> str | None:
    """The code digest of ``{path: sha256 of its content}`` (None for no file)."""
    if not files:
        return None
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\n".encode())
    return digest.hexdigest()


def code_digest() -> str | None:
    """The digest of the project's code in the working tree (the current folder is the
    project's root); None without ``src/`` or a file in it."""
    return digest_files(code_files())


def code_files() -> dict[str, str]:
    """``{path: sha256}`` of the project's code files in the working tree."""
    from dlforge.core import gitrepo

    if not Path(CODE).is_dir():
        return {}
    listed = (gitrepo.working_files(CODE) if gitrepo.inside_repository()
              else [str(p) for p in Path(CODE).rglob("*")])
    skipped = tool_folders()
    digests = {Path(p).as_posix(): p for p in listed if is_code(Path(p).as_posix(), skipped)}
    digests = {path: file_digest(p) for path, p in digests.items()}
    return {path: digest for path, digest in digests.items() if digest is not None}


def is_code(path: str, skipped: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` (relative to the project's root, ``/``-separated) is project code:
    under src/, in no cache or build-metadata folder, not under ``skipped``."""
    parts = path.split("/")
    if parts[0] != CODE or path.endswith(NOT_CODE_SUFFIXES):
        return False
    if any(p in NOT_CODE or p.endswith(".egg-info") for p in parts[1:-1]):
        return False
    return not any(path == s or path.startswith(f"{s}/") for s in skipped)


def tool_folders() -> tuple[str, ...]:
    """dlforge's own folders (its package, its Hydra plugin) where they lie under the
    project's src/: in a checkout of dlforge they are the tool, not the project."""
    package = Path(__file__).resolve().parents[1]
    found = []
    for folder in (package, package.parent / "hydra_plugins"):
        relative = os.path.relpath(folder, Path.cwd().resolve())
        if Path(relative).parts[:1] == (CODE,):
            found.append(Path(relative).as_posix())
    return tuple(found)
