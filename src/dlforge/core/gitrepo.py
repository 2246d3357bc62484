"""Reading a git repository as data: its files at a commit, and the working tree's.

    git("rev-parse", "HEAD").stdout      any git command in the current folder
    working_files("src")                 the files a commit of the working tree would hold
    tree_files("HEAD", "src")            {path: blob id} of a commit's regular files
    blobs(["HEAD:conf/x.yaml", oid])     their bytes, in one ``git cat-file --batch``

Paths are relative to the current folder, which may lie below the repository's
root (a ``REV:PATH`` spec reads ``REV:./PATH`` so). Only regular files count: a
symbolic link or a submodule is no file of a commit here, on disk or in a tree
alike. Plain standard library.
"""

from __future__ import annotations

import subprocess

from dlforge.core.errors import DlforgeError

FILE_MODES = ("100644", "100755")  # regular files; 120000 is a link, 160000 a submodule
KINDS = ("blob", "tree", "commit", "tag")  # what `git cat-file --batch` finds


def git(*args: str, check: bool = True, data: bytes | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    """``git ARGS`` in the current folder; its output as text (bytes without ``text``).

    Raises:
        DlforgeError: git is missing, or (with ``check``) the command failed.
    """
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=text, input=data)
    except FileNotFoundError:
        raise DlforgeError("git is not installed: dlforge reads results and commits from "
                           "git. Fix: install git") from None
    if check and result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        raise DlforgeError(f"git {' '.join(args)} failed: {stderr.strip()}")
    return result


def inside_repository() -> bool:
    """Whether the current folder is in a git working tree (git installed)."""
    try:
        return git("rev-parse", "--is-inside-work-tree", check=False).stdout.strip() == "true"
    except DlforgeError:  # no git at all: no repository either
        return False


def working_files(pathspec: str) -> list[str]:
    """The files under ``pathspec`` that ``git add -A`` would commit: tracked ones still on
    disk and untracked ones git does not ignore, sorted."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 pathspec).stdout
    return sorted(set(filter(None, listed.split("\0"))))


def tree_files(rev: str, pathspec: str) -> dict[str, str]:
    """``{path: blob id}`` of the regular files under ``pathspec`` in commit ``rev`` ({}
    where the commit has none)."""
    listing = git("ls-tree", "-r", "-z", rev, "--", pathspec).stdout
    files = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, oid = meta.split()
        if kind == "blob" and mode in FILE_MODES:
            files[path] = oid
    return files


def object_ids(specs: list[str]) -> list[str | None]:
    """The object id each of ``specs`` (``REV:PATH``) names, None where it names none; one
    ``git cat-file --batch-check`` for all of them."""
    if not specs:
        return []
    out = git("cat-file", "--batch-check", data="".join(f"{s}\n" for s in specs).encode(),
              text=False).stdout.decode()
    lines = out.splitlines()
    return [line.split()[0] if _found(line.split()) else None for line in lines]


def _found(header: list) -> bool:
    """Whether a ``git cat-file`` header line (split) describes an object, not a miss."""
    return len(header) == 3 and header[1] in KINDS and header[2].isdigit()


def blobs(specs: list[str]) -> list[bytes | None]:
    """The bytes of each object ``specs`` names (a blob id, or ``REV:PATH``), None for one
    that is missing or not a file; one ``git cat-file --batch`` for all of them."""
    if not specs:
        return []
    out = git("cat-file", "--batch", data="".join(f"{s}\n" for s in specs).encode(),
              text=False).stdout
    found, at = [], 0
    for _ in specs:
        end = out.index(b"\n", at)
        header = out[at:end].decode(errors="replace").split()
        at = end + 1
        if not _found(header):
            found.append(None)  # "<spec> missing", "<spec> ambiguous"
            continue
        size = int(header[2])
        found.append(out[at:at + size] if header[1] == "blob" else None)
        at += size + 1  # the content, then a newline
    return found
