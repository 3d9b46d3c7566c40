"""``python -m koji_adjutant.kojid reap``: remove containers whose kojid task is gone.

For a systemd timer next to kojid, so that a container whose task was SIGKILLed does not wait
for the next task to be reaped. Reads the same config as the plugin (``adjutant.conf``,
``KOJI_ADJUTANT_*``); ``--workdir`` is kojid's ``workdir`` (where tasks keep their leases).
``--all`` removes every container of the worker; use it only while kojid is stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys

from koji_adjutant.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m koji_adjutant.kojid")
    sub = parser.add_subparsers(dest="command", required=True)
    reap = sub.add_parser("reap", help="remove containers whose task no longer runs")
    reap.add_argument("--config", help="adjutant.conf to read (default: as the plugin)")
    reap.add_argument("--workdir", default="/var/tmp/koji", help="kojid's workdir option")
    reap.add_argument("--all", action="store_true", help="remove all containers of the worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import koji_adjutant
    from koji_adjutant.kojid import reaper

    manager = koji_adjutant.PodmanManager(config.podman_socket, worker_id=config.worker_id)
    if args.all:
        count = reaper.reap_all(manager, worker_id=config.worker_id)
    else:
        found = reaper.reap_orphans(manager, worker_id=config.worker_id, workdir_root=args.workdir)
        count = sum(len(ids) for ids in found.values())
    print(f"removed {count} container(s) of worker {config.worker_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
