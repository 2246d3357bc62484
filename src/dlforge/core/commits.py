"""Which commit holds a recorded run's code and config.

    found = find_commit(code, config, "outputs/intent/config/train.json")
    found.commit        the first commit, oldest first among the last LIMIT reachable from
                        HEAD, whose src/ has the code digest ``code`` and whose committed
                        section file has the digest ``config``; None: uncommitted
    found.searched      how many commits were looked at; found.truncated: HEAD has more

A run records digests, not a commit id: the commit checked out when it ran may hold
other code (uncommitted edits) and the commit made after it does not exist yet. The
digests name the commit whose tree *is* what was run, so a run made on a dirty tree
and committed after (``snakemake && git add -A && git commit``) resolves to that
commit, and one never committed resolves to none, never to the dirty parent.

Each commit's ``src/`` digest is computed from git's objects (``git ls-tree`` and one
``git cat-file --batch``), cached per tree and per blob, and only for the commits
whose section file matches: searching 500 commits costs a few git processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlforge.core import gitrepo
from dlforge.core.record import CODE, digest_files, is_code, text_digest, tool_folders

LIMIT = 500  # commits searched, newest first, then walked oldest first


@dataclass(frozen=True)
class Found:
    """The outcome of :func:`find_commit`."""

    commit: str | None
    searched: int
    truncated: bool


def find_commit(code: str | None, config: str | None, section: str | None,
                limit: int = LIMIT) -> Found:
    """The first commit reachable from HEAD (oldest first among its last ``limit``) whose
    tree has the code digest ``code`` and, given a ``section`` path, a section file there
    with the digest ``config``.

    Raises:
        DlforgeError: git is missing.
    """
    listed = gitrepo.git("rev-list", "--reverse", f"--max-count={limit + 1}", "HEAD",
                         check=False).stdout.split()
    truncated = len(listed) > limit
    commits = listed[1:] if truncated else listed  # the oldest is past the limit
    if section is not None:
        texts = gitrepo.blobs([f"{c}:./{section}" for c in commits])
        commits = [c for c, text in zip(commits, texts, strict=True)
                   if text is not None and text_digest(text) == config]
    trees, ids = _TreeDigests(), gitrepo.object_ids([f"{c}:./{CODE}" for c in commits])
    match = next((c for c, tree in zip(commits, ids, strict=True)
                  if trees.digest(c, tree) == code), None)
    return Found(match, len(listed) - truncated, truncated)


def tree_code_digest(rev: str) -> str | None:
    """The code digest (:mod:`dlforge.core.record`) of commit ``rev``'s ``src/``."""
    (tree,) = gitrepo.object_ids([f"{rev}:./{CODE}"])
    return _TreeDigests().digest(rev, tree)


def tree_code_files(rev: str) -> dict[str, str]:
    """``{path: sha256}`` of the project's code in commit ``rev``."""
    return _TreeDigests().files(rev)


class _TreeDigests:
    """Code digests of commits, sharing the sha256 of each blob and each ``src/`` tree."""

    def __init__(self) -> None:
        self._blobs: dict[str, str] = {}
        self._trees: dict[str | None, str | None] = {}
        self._skipped = tool_folders()

    def digest(self, rev: str, tree: str | None) -> str | None:
        """The code digest of ``rev``, whose ``src/`` is the tree ``tree`` (None: none)."""
        if tree not in self._trees:
            self._trees[tree] = digest_files(self.files(rev)) if tree else None
        return self._trees[tree]

    def files(self, rev: str) -> dict[str, str]:
        listed = {path: oid for path, oid in gitrepo.tree_files(rev, CODE).items()
                  if is_code(path, self._skipped)}
        unknown = sorted({oid for oid in listed.values() if oid not in self._blobs})
        for oid, data in zip(unknown, gitrepo.blobs(unknown), strict=True):
            self._blobs[oid] = text_digest(data or b"")
        return {path: self._blobs[oid] for path, oid in listed.items()}
