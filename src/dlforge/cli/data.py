"""``dlforge data ...``: the dataset manager's commands.

    dlforge data create NAME --type TYPE --source PATH [--tag k=v]... [-m MSG]
    dlforge data commit NAME --source PATH [--mode replace|append] [--tag k=v]... [-m MSG]
    dlforge data list [--json]
    dlforge data show NAME [--json]
    dlforge data snapshot NAME [--upto COMMIT] [--tag k=v]... [--json]
    dlforge data fetch NAME VERSION [--out DIR]
    dlforge data verify [NAME]... [--json]

The store and snapshot folders come from ``conf/paths`` (``paths.store_dir``,
``paths.snapshot_dir``) unless ``--store``/``--snapshots`` are given; the
default split rule comes from ``conf/split``.

A commit of a source path the dataset already has supersedes that path's earlier
commits (``--mode replace``, the default, as for ``dataset.sources``): snapshots
from then on hold the file's current rows, and ``--upto`` an earlier commit still
gives the earlier snapshot. ``--mode append`` adds to them instead, for data that
arrives in parts under one path.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dlforge.cli.common import command_parser


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("data", __doc__)
    parser.add_argument("--store", help="dataset store folder (default: paths.store_dir)")
    parser.add_argument("--snapshots", help="snapshot folder (default: paths.snapshot_dir)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    create = add("create", "create a dataset with its first commit")
    create.add_argument("name")
    create.add_argument("--type", required=True, dest="type_name", help="dataset type")
    commit = add("commit", "append an immutable commit to a dataset")
    commit.add_argument("name")
    commit.add_argument("--mode", choices=("replace", "append"), default="replace",
                        help="replace (default): supersede this source path's earlier "
                             "commits; append: add to them")
    for p in (create, commit):
        p.add_argument("--source", required=True, help="file or folder to commit")
        p.add_argument("--tag", action="append", default=[], metavar="K=V")
        p.add_argument("-m", "--message", default="")
    add("list", "list datasets").add_argument("--json", action="store_true")
    show = add("show", "a dataset's commits, statistics and snapshots")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    snap = add("snapshot", "build (or reuse) a training snapshot; prints its version id")
    snap.add_argument("name")
    snap.add_argument("--upto", type=int, help="take commits up to this id (default: all)")
    snap.add_argument("--tag", action="append", default=[], metavar="K=V",
                      help="take only commits with this tag (repeat: all must match)")
    snap.add_argument("--json", action="store_true", help="print the whole manifest")
    fetch = add("fetch", "copy a snapshot's files (train/val/test + manifest) to a folder")
    fetch.add_argument("name")
    fetch.add_argument("version")
    fetch.add_argument("--out", help="destination folder (default: ./NAME-VERSION)")
    verify = add("verify", "check every object and snapshot file against its hash")
    verify.add_argument("names", nargs="*", metavar="NAME")
    verify.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from dlforge.data.snapshot import SnapshotStore
    from dlforge.data.store import Store, parse_tags

    store_dir, snapshot_dir, split = _locations(args)
    store = Store(store_dir)
    snapshots = SnapshotStore(snapshot_dir, store)
    if args.command == "create":
        commit = store.create(args.name, args.type_name, args.source, args.message,
                              parse_tags(args.tag))
        return _emit(commit.as_dict())
    if args.command == "commit":
        return _emit(store.commit(args.name, args.source, args.message, parse_tags(args.tag),
                                  args.mode).as_dict())
    if args.command == "list":
        return _list(store, snapshots, args.json)
    if args.command == "show":
        return _show(store, snapshots, args.name, args.json)
    if args.command == "snapshot":
        ref = snapshots.build(args.name, args.upto, parse_tags(args.tag), split)
        return _emit(ref.manifest) if args.json else print(ref.version) or 0
    if args.command == "fetch":
        out = Path(args.out or f"{args.name}-{args.version}")
        files = snapshots.fetch(args.name, args.version, out)
        return _emit({"dataset": args.name, "version": args.version, "out": str(out),
                      "files": len(files)})
    from dlforge.data.verify import verify

    report = verify(snapshots, args.names)
    if args.json:
        _emit(report)
    else:
        for name, counts in report["datasets"].items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print("\n".join(report["problems"])
              or "ok: every object matches its hash; nothing is corrupt")
    return 0 if report["ok"] else 1


def _locations(args):
    """Store and snapshot folders and the default split rule, from conf/ or the flags."""
    from dlforge.data.snapshot import SplitRule

    if args.store and args.snapshots:
        return Path(args.store), Path(args.snapshots), SplitRule()
    from dlforge.core.config import compose
    from dlforge.stages.data import split_rule

    cfg = compose("data")
    return (Path(args.store or cfg.paths.store_dir), Path(args.snapshots or cfg.paths.snapshot_dir),
            split_rule(cfg.split))


def _emit(obj) -> int:
    print(json.dumps(obj, indent=2, default=str))
    return 0


def _list(store, snapshots, as_json: bool) -> int:
    rows = []
    for name in store.names():
        commits = store.commits(name)
        rows.append({"name": name, "type": store.info(name)["type"], "commits": len(commits),
                     "rows": sum(c.rows for c in commits),
                     "latest": commits[-1].created_at if commits else None,
                     "snapshots": len(snapshots.versions(name))})
    if as_json:
        return _emit(rows)
    _table(rows, ["name", "type", "commits", "rows", "snapshots", "latest"])
    return 0


def _show(store, snapshots, name: str, as_json: bool) -> int:
    info = store.info(name)
    commits = [c.as_dict() for c in store.commits(name)]
    versions = [{k: m[k] for k in ("version", "created_at", "counts")} |
                {"commits": [c["id"] for c in m["commits"]], "labels": len(m["labels"])}
                for m in snapshots.versions(name)]
    if as_json:
        return _emit({**info, "commits": commits, "snapshots": versions})
    print(f"{name} ({info['type']}), created {info['created_at']}\n\ncommits:")
    features = [k for k, v in commits[0]["stats"].items() if isinstance(v, dict) and "p95" in v]
    _table([{"id": c["id"], "created_at": c["created_at"], "rows": c["rows"],
             "labels": c["stats"]["num_labels"], "multi-label": c["stats"]["multi_label_rows"],
             **{f"{f} mean/p95": f"{c['stats'][f]['mean']:g}/{c['stats'][f]['p95']}"
                for f in features},
             "supersedes": ",".join(map(str, c["supersedes"])),
             "tags": _tags(c["tags"]), "message": c["message"]} for c in commits],
           ["id", "created_at", "rows", "labels", "multi-label",
            *(f"{f} mean/p95" for f in features), "supersedes", "tags", "message"])
    print("\nsnapshots:")
    _table([{"version": v["version"], "commits": ",".join(map(str, v["commits"])),
             **{s: v["counts"][s] for s in ("train", "val", "test")}, "labels": v["labels"]}
            for v in versions], ["version", "commits", "train", "val", "test", "labels"])
    return 0


def _tags(tags: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in tags.items())


def _table(rows: list[dict], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console(width=160).print(table)
