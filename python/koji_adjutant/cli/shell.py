"""``koji-adjutant shell TASK_ID``: a shell in a failed build's kept buildroot.

When a buildArch build fails, the runner keeps its root (with the build's work in
``/builddir``) as the local image ``localhost/koji-adjutant-kept:<task id>`` for
``keep_failed_root`` hours (adjutant.conf), as kojid keeps failed mock roots. This command
starts a throwaway container from it as the build user, with no network, no capabilities,
no-new-privileges and the user namespace the build had, and opens ``bash --login`` in it (or
runs the command given after ``--``). Nothing of the host is mounted; what is changed inside
is gone when the shell exits. It uses the ``podman`` command line as a client of the builder's
Podman service, for the terminal.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import cast

from koji_adjutant.cli._common import add_config_argument, builder_config, manager
from koji_adjutant.labels import KEPT_TASK, KEPT_USERNS, KEPT_WORKER

TASK_LABEL, WORKER_LABEL, USERNS_LABEL = KEPT_TASK, KEPT_WORKER, KEPT_USERNS
BUILD_USER = "1000:135"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("shell", help="open a shell in a failed build's kept buildroot")
    add_config_argument(parser)
    parser.add_argument("task_id", type=int, help="the buildArch task whose root was kept")
    parser.add_argument(
        "--root", action="store_true", help="be root in the container (still no capabilities)"
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- COMMAND... to run instead of a shell"
    )
    parser.set_defaults(func=run)


def podman_argv(
    socket: str,
    image: str,
    labels: dict[str, str],
    *,
    root: bool,
    tty: bool,
    command: Sequence[str],
) -> list[str]:
    """The ``podman`` client command that runs ``command`` in a container of ``image``."""
    url = socket if socket.startswith("unix://") else f"unix://{socket}"
    argv = [
        "podman",
        "--url",
        url,
        "run",
        "--rm",
        "-i",
        "--network=none",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--pids-limit=4096",
        # podman's defaults are above what the service may set (see PODMAN-NOTES)
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=4096:4096",
        "--label=io.koji.adjutant.role=shell",
        f"--label={TASK_LABEL}={labels.get(TASK_LABEL, '')}",
        f"--user={'0:0' if root else BUILD_USER}",
        "--workdir=/builddir",
        "--env=HOME=/builddir",
    ]
    if tty:
        argv.append("-t")
    base = labels.get(USERNS_LABEL)
    if base:
        argv += [f"--uidmap=0:{base}:65536", f"--gidmap=0:{base}:65536"]
    argv.append(image)
    argv += list(command) or ["/bin/bash", "--login"]
    return argv


def run(args: argparse.Namespace) -> int:
    config = builder_config(args)
    if config is None:
        return 2
    podman = manager(config)
    kept = podman.list_images({TASK_LABEL: str(args.task_id), WORKER_LABEL: config.worker_id})
    if not kept:
        print(
            f"error: no kept buildroot for task {args.task_id} on worker {config.worker_id} "
            "(only failed buildArch builds keep one, for keep_failed_root hours)",
            file=sys.stderr,
        )
        return 2
    if shutil.which("podman") is None:
        print("error: the podman command line is not installed", file=sys.stderr)
        return 2
    labels = cast("dict[str, str]", kept[0]["labels"])
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    argv = podman_argv(
        config.podman_socket,
        str(kept[0]["id"]),
        labels,
        root=args.root,
        tty=sys.stdin.isatty() and sys.stdout.isatty(),
        command=command,
    )
    return subprocess.call(argv)
