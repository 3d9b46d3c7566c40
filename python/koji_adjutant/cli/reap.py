"""``koji-adjutant reap``: remove containers whose kojid task is gone.

For a systemd timer next to kojid, so that a container whose task was SIGKILLed does not wait
for the next task to be reaped. ``--workdir`` is kojid's ``workdir`` (where tasks keep their
leases). ``--all`` removes every container of the worker; use it only while kojid is stopped
(kojid's plugin runs it, in a process of its own, when kojid starts). Kept failed buildroots
whose time is up are removed too. Each removed container is recorded in ``state_dir``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from koji_adjutant.cli._common import add_config_argument, builder_config, manager


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("reap", help="remove containers whose task no longer runs")
    add_config_argument(parser)
    parser.add_argument("--workdir", default="/var/tmp/koji", help="kojid's workdir option")
    parser.add_argument("--all", action="store_true", help="remove all containers of the worker")
    parser.add_argument(
        "--timeout", type=int, default=0, help="give up after this many seconds (0: never)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout > 0:
        signal.alarm(args.timeout)  # SIGALRM ends the process
    config = builder_config(args)
    if config is None:
        return 2
    import koji_adjutant
    from koji_adjutant.kojid import reaper

    try:
        return _reap(args, config, manager(config), reaper)
    except koji_adjutant.AdjutantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _reap(args: argparse.Namespace, config: Any, podman: Any, reaper: Any) -> int:
    if args.all:
        count = reaper.reap_all(podman, worker_id=config.worker_id, state_dir=config.state_dir)
    else:
        found = reaper.reap_orphans(
            podman,
            worker_id=config.worker_id,
            workdir_root=args.workdir,
            state_dir=config.state_dir,
        )
        count = sum(len(ids) for ids in found.values())
    kept = podman.remove_expired_kept_roots()
    print(
        f"removed {count} container(s) and {kept} expired kept buildroot(s)"
        f" of worker {config.worker_id}"
    )
    return 0
