"""``koji-adjutant reap``: remove containers whose kojid task is gone.

For a systemd timer next to kojid, so that a container whose task was SIGKILLed does not wait
for the next task to be reaped. ``--workdir`` is kojid's ``workdir`` (where tasks keep their
leases). ``--all`` removes every container of the worker; use it only while kojid is stopped.
"""

from __future__ import annotations

import argparse

from koji_adjutant.cli._common import add_config_argument, builder_config, manager


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("reap", help="remove containers whose task no longer runs")
    add_config_argument(parser)
    parser.add_argument("--workdir", default="/var/tmp/koji", help="kojid's workdir option")
    parser.add_argument("--all", action="store_true", help="remove all containers of the worker")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = builder_config(args)
    if config is None:
        return 2
    from koji_adjutant.kojid import reaper

    podman = manager(config)
    if args.all:
        count = reaper.reap_all(podman, worker_id=config.worker_id)
    else:
        found = reaper.reap_orphans(podman, worker_id=config.worker_id, workdir_root=args.workdir)
        count = sum(len(ids) for ids in found.values())
    print(f"removed {count} container(s) of worker {config.worker_id}")
    return 0
