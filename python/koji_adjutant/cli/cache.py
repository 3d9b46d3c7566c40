"""``koji-adjutant cache``: the buildroot cache's images (``list``) and removing them (``prune``).

The cache is the local images labelled ``io.koji.adjutant.buildroot=1`` that buildArch tasks
made (``localhost/koji-adjutant-buildroot:<key>``). Entries are ordered as the tasks' own
eviction orders them: by last use, recorded in ``buildroot_cache_dir`` (one file per key),
else by creation. ``prune`` removes all of them (``--all``), those not used for a while
(``--older-than 7d``), or all but the most recently used (``--keep N``); with both of the
last two, an entry goes only when both say so. An image a container still uses (a running
task's build container) is never removed: Podman refuses, and the refusal is reported.

Exit status of ``prune``: 0 every selected entry was removed (or none was selected), 1 some
were in use and kept, 2 the command could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from koji_adjutant.cli._common import (
    PodmanAPI,
    PodmanAPIError,
    add_config_argument,
    builder_config,
    human_bytes,
    human_duration,
    parse_duration,
)
from koji_adjutant.cli.status import cache_entries


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cache",
        help="list or prune the buildroot cache",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the cache's images, most recently used first")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)

    prune = actions.add_parser("prune", help="remove cache images no container uses")
    add_config_argument(prune)
    which = prune.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every cache image")
    which.add_argument(
        "--older-than",
        metavar="AGE",
        type=_duration,
        help="images not used for AGE (90s, 15m, 12h, 7d, 2w)",
    )
    prune.add_argument(
        "--keep", type=_count, metavar="N", help="keep the N most recently used images"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed")
    prune.add_argument("--json", action="store_true", help="print the result as JSON")
    prune.set_defaults(func=run_prune)


def _duration(raw: str) -> int:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number >= 0")
    return int(raw)


def select(
    entries: list[dict[str, Any]],
    *,
    everything: bool,
    older_than: int | None,
    keep: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """The entries to remove; ``entries`` most recently used first."""
    if everything:
        return list(entries)
    chosen = list(entries)
    if keep is not None:
        chosen = chosen[keep:]
    if older_than is not None:
        chosen = [e for e in chosen if now - e["last_used"] >= older_than]
    return chosen


def _remove_last_use(cache_dir: str | None, key: str | None) -> None:
    """The core's eviction also drops the entry's last-use file, its lock file and its
    record (src/core/buildroot/cache.rs)."""
    if cache_dir and key and "/" not in key:
        for name in (key, f"{key}.lock", f"{key}.json"):
            try:
                os.unlink(os.path.join(cache_dir, name))
            except OSError:
                pass


def run_list(args: argparse.Namespace) -> int:
    config = builder_config(args)
    if config is None:
        return 2
    api = PodmanAPI(config.podman_socket)
    try:
        entries = cache_entries(api, cache_dir=config.buildroot_cache_dir)
    except PodmanAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(entries, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    now = time.time()
    total = sum(e["size_bytes"] for e in entries)
    print(f"{len(entries)} cache image(s), {human_bytes(total)}")
    for entry in entries:
        tag = entry["tags"][0] if entry["tags"] else "<untagged>"
        print(
            f"{str(entry['id'])[:12]}  {tag}  {human_bytes(entry['size_bytes'])}"
            f"  last used {human_duration(now - entry['last_used'])} ago"
        )
    return 0


def run_prune(args: argparse.Namespace) -> int:
    if not (args.all or args.older_than is not None or args.keep is not None):
        print(
            "error: say what to prune: --all, --older-than AGE and/or --keep N",
            file=sys.stderr,
        )
        return 2
    if args.all and args.keep is not None:
        print("error: --all and --keep contradict each other", file=sys.stderr)
        return 2
    config = builder_config(args)
    if config is None:
        return 2
    api = PodmanAPI(config.podman_socket)
    now = time.time()
    removed: list[dict[str, Any]] = []
    in_use: list[dict[str, Any]] = []
    try:
        entries = cache_entries(api, cache_dir=config.buildroot_cache_dir)
        chosen = select(
            entries, everything=args.all, older_than=args.older_than, keep=args.keep, now=now
        )
        for entry in chosen:
            if args.dry_run:
                removed.append(entry)
                continue
            done, why = api.remove_image(str(entry["id"]))
            if done:
                _remove_last_use(config.buildroot_cache_dir, entry["key"])
                removed.append(entry)
            else:
                in_use.append({**entry, "reason": why})
    except PodmanAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        result = {
            "dry_run": args.dry_run,
            "removed": removed,
            "in_use": in_use,
            "kept": len(entries) - len(removed),
            "freed_bytes": sum(e["size_bytes"] for e in removed),
        }
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        verb = "would remove" if args.dry_run else "removed"
        for entry in removed:
            tag = entry["tags"][0] if entry["tags"] else "<untagged>"
            print(f"{verb} {str(entry['id'])[:12]}  {tag}  {human_bytes(entry['size_bytes'])}")
        for entry in in_use:
            print(f"in use, kept {str(entry['id'])[:12]}: {entry['reason']}")
        freed = human_bytes(sum(e["size_bytes"] for e in removed))
        print(
            f"{verb} {len(removed)} of {len(entries)} cache image(s) ({freed});"
            f" {len(in_use)} in use"
        )
    return 1 if in_use else 0
