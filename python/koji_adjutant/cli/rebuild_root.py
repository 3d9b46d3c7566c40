"""``koji-adjutant rebuild-root --lock buildroot_lock.json DEST``: recreate a buildroot.

Fetches every package the lockfile lists from the Koji repo (``--repo`` names another copy:
a URL or a directory with the repo's layout), checks each by its header against the lock,
installs exactly those files with ``dnf --installroot`` in a container of the image that made
the root (the lockfile's image ID; ``--image`` names another) into DEST (new or empty), then
compares the new root's rpmdb with the lockfile. Runs on a host with Podman, as root; the
packages' scriptlets run as container root, as in a build's bootstrap container.

Exit status: 0 the new root holds exactly the locked packages, 1 it differs (the report says
how), 2 it could not be made. ``--json FILE`` writes the report (every installed package with
its SIGMD5, header SHA-256 and the SHA-256 of the file installed).
"""

from __future__ import annotations

import argparse
import json
import sys

from koji_adjutant.cli._common import add_config_argument, builder_config, manager


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rebuild-root",
        help="recreate a buildroot from its buildroot_lock.json",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument("--lock", required=True, metavar="FILE", help="buildroot_lock.json")
    parser.add_argument("dest", metavar="DEST", help="directory for the root (new or empty)")
    parser.add_argument("--repo", metavar="URL|DIR", help="another copy of the Koji repo")
    parser.add_argument("--image", help="run this image instead of the lockfile's")
    parser.add_argument(
        "--pull",
        default="if-not-present",
        choices=("always", "if-not-present", "never"),
        help="pull policy for the image (default: %(default)s)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--workdir", metavar="DIR", help="where packages are staged (a temp dir)")
    parser.set_defaults(func=run)


class _Stderr:
    """dnf's output, as it comes, on stderr (stdout carries the report)."""

    def write_stdout(self, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()

    def write_stderr(self, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    import koji_adjutant
    from koji_adjutant.provenance.rebuild import RebuildError, load_lock, rebuild_root

    config = builder_config(args)
    if config is None:
        return 2
    try:
        lock = load_lock(args.lock)
        report = rebuild_root(
            manager(config),
            lock,
            args.dest,
            image=args.image,
            repo=args.repo,
            workdir=args.workdir,
            pull_policy=args.pull,
            sink=_Stderr(),
        )
    except (RebuildError, koji_adjutant.AdjutantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}")
    for nevra in report.missing:
        print(f"missing: {nevra}")
    for nevra in report.unexpected:
        print(f"unexpected: {nevra}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report.as_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
    verdict = "IDENTICAL" if report.identical else "DIFFERS"
    image = report.image_id[:12]
    print(f"{verdict}: {len(report.installed)} packages in {report.root} (image {image})")
    return 0 if report.identical else 1
