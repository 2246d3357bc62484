"""The two sides of a review: a git revision, or the working tree, read as regular files only.

    side = Side("main", resolve("main"))   # a revision's tree (``git ls-tree``/``cat-file``)
    side = Side("working tree")            # the files on disk
    side.read("outputs/intent/eval/metrics.json")   # its text, or None where absent

A pull request can commit a symbolic link where a result belongs (pointing at a
file of whoever runs the review); following it would print that file. So each
read checks the path and every folder above it (git tree mode 120000, or
``os.lstat`` on disk) and refuses a link with ``NotARegularFile``; a path that
leaves the repository (absolute, or through ``..``) is refused the same way.
Revisions given by a user pass ``resolve`` (never an option to git).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.gitrepo import git

GIT_FILE_MODES = ("100644", "100755")  # regular files; 120000 is a symbolic link


class NotARegularFile(DlforgeError):
    """A result path that is a symbolic link, or one that leaves the repository."""


@dataclass(frozen=True)
class Side:
    """One side of the review: a git revision (``rev``, a commit id), or the working tree
    (``rev`` None); ``name`` is how the review calls it."""

    name: str
    rev: str | None = None

    def read(self, path: str) -> str | None:
        """The text of ``path`` (relative to the repository root) on this side, or None
        where it is absent.

        Raises:
            NotARegularFile: ``path`` or a folder above it is a symbolic link.
        """
        parts = Path(path).parts
        if Path(path).is_absolute() or ".." in parts:
            raise NotARegularFile(f"{path} is outside the repository: the review reads "
                                  "only its results. Fix: name experiments by their name")
        return _read_disk(parts) if self.rev is None else _read_git(self.rev, parts)


def _read_disk(parts: tuple[str, ...]) -> str | None:
    for depth in range(1, len(parts) + 1):
        try:
            mode = os.lstat(Path(*parts[:depth])).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            raise _link(Path(*parts[:depth]))
    return Path(*parts).read_text() if stat.S_ISREG(mode) else None


def _read_git(rev: str, parts: tuple[str, ...]) -> str | None:
    # One listing of the path and every folder above it (git also lists their
    # neighbours): a link anywhere on the way shows there.
    prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    listing = git("--literal-pathspecs", "ls-tree", "-z", "--full-tree", rev, "--",
                  *prefixes).stdout
    entries = {}
    for entry in filter(None, listing.split("\0")):
        meta, name = entry.split("\t", 1)
        if name in prefixes:
            entries[name] = meta.split()  # mode, type, object
            if entries[name][0] == "120000":
                raise _link(name)
    mode, kind, blob = entries.get(prefixes[-1], ("", "", ""))
    if kind != "blob" or mode not in GIT_FILE_MODES:
        return None
    return git("cat-file", "blob", blob).stdout


def _link(path) -> NotARegularFile:
    return NotARegularFile(f"{path} is a symbolic link: the review reads only regular files "
                           "and left it out. Fix: commit the file itself, not a link")


def default_base() -> str:
    """The merge base of HEAD with the default branch (``origin/HEAD``, else main or
    master); on the default branch itself, HEAD: the review shows uncommitted work."""
    for ref in ("origin/HEAD", "origin/main", "main", "origin/master", "master"):
        if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
               ).returncode == 0:
            merged = git("merge-base", "HEAD", ref, check=False)
            if merged.returncode == 0:
                return merged.stdout.strip()
    return resolve("HEAD")


def repository_root() -> Path:
    """The repository's root, which must be the current folder.

    Raises:
        DlforgeError: outside a git repository, or below its root.
    """
    result = git("rev-parse", "--show-toplevel", check=False)
    if result.returncode != 0:
        raise DlforgeError(f"{Path.cwd()} is not inside a git repository: the review compares "
                           "results kept in git. Fix: run it in the project's repository "
                           "(`git init`, commit a run's results, then change something)")
    root = Path(result.stdout.strip()).resolve()
    if root != Path.cwd().resolve():
        raise DlforgeError(f"run dlforge review from the repository's root, {root}, where "
                           "workflow/config.yaml is")
    return root


def resolve(rev: str) -> str:
    """The commit ``rev`` names.

    Raises:
        DlforgeError: git knows no such revision (one starting with ``-`` is never
            passed to git, where it would read as an option).
    """
    result = None if rev.startswith("-") else git(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
    if result is None or result.returncode != 0:
        raise DlforgeError(f"--base {rev}: git knows no such revision. Fix: name a commit, "
                           "branch or tag (`git log --oneline` lists them), e.g. HEAD~1")
    return result.stdout.strip()
