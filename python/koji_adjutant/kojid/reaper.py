"""Removing containers whose task no longer runs on this worker.

Every container koji-adjutant creates carries ``io.koji.adjutant.worker_id=<worker_id>`` and
``io.koji.adjutant.task_id=<task_id>``. kojid kills a task (canceled, reassigned, or kojid
shutting down; ``TaskManager.cleanupTask``) by sending SIGINT, then SIGTERM, then SIGKILL a few
seconds apart to the task's process tree. Podman's containers are not in that tree: the first
two signals raise in the task process (KeyboardInterrupt, and SystemExit from kojid's SIGTERM
handler, which the forked task inherits), and the adapter removes its container on the way
out. SIGKILL cannot be caught, so that container is left behind; so is every container of a
kojid that crashed or whose host rebooted mid-task.

A task proves it is alive with a *lease*: before any container exists, the glue writes
``<task workdir>/adjutant.lease`` (kojid's per-task work dir, ``<workdir>/tasks/<id %
10000>/<id>``) holding the task process's pid and its start time from ``/proc``. A container is
an orphan when its task has no lease or the lease's process is gone (the start time guards
against pid reuse). No hub call is needed, so the reaping does not change the hub traffic of a
task, and the same rule works from a timer outside kojid.

Orphans are reaped when kojid starts (all of this worker's containers: no task runs yet), at
the start of every task this worker runs, and by ``python -m koji_adjutant.kojid reap`` (e.g.
from a systemd timer).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import koji

from koji_adjutant import labels

__all__ = [
    "LABEL_TASK",
    "LABEL_WORKER",
    "LEASE_NAME",
    "Lease",
    "find_orphans",
    "lease_path",
    "read_lease",
    "reap_all",
    "reap_orphans",
    "write_lease",
]

LABEL_TASK = labels.TASK
LABEL_WORKER = labels.WORKER
LEASE_NAME = "adjutant.lease"

logger = logging.getLogger("koji.build.adjutant.reaper")


class ContainerManager(Protocol):
    """The part of ``koji_adjutant.PodmanManager`` the reaper uses."""

    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, object]]: ...

    def reap(self, labels: Mapping[str, str]) -> int: ...


@dataclass(frozen=True)
class Lease:
    """Who runs a task: the process id and its start time (``/proc/<pid>/stat`` field 22)."""

    task_id: int
    pid: int
    start_time: int
    worker_id: str


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces or ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall, the 20th after the command name
    except (IndexError, ValueError):
        return None


def lease_path(workdir_root: str, task_id: int) -> str:
    """Where kojid's task ``task_id`` keeps its lease (inside kojid's task work dir)."""
    return os.path.join(workdir_root, koji.pathinfo.taskrelpath(task_id), LEASE_NAME)


def write_lease(task_workdir: str, task_id: int, worker_id: str) -> Lease:
    """Record that this process runs ``task_id``; the file goes away with kojid's work dir."""
    pid = os.getpid()
    start = process_start_time(pid)
    if start is None:
        raise OSError(f"cannot read /proc/{pid}/stat")
    lease = Lease(task_id, pid, start, worker_id)
    path = os.path.join(task_workdir, LEASE_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(lease.__dict__, handle)
    os.replace(tmp, path)
    return lease


def read_lease(workdir_root: str, task_id: int) -> Lease | None:
    """The lease of ``task_id``, or None when there is none or it cannot be read."""
    try:
        with open(lease_path(workdir_root, task_id), encoding="utf-8") as handle:
            data = json.load(handle)
        return Lease(
            int(data["task_id"]), int(data["pid"]), int(data["start_time"]), str(data["worker_id"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def task_is_alive(workdir_root: str, task_id: int, worker_id: str) -> bool:
    """Whether a live process of this worker holds the lease of ``task_id``."""
    lease = read_lease(workdir_root, task_id)
    if lease is None or lease.task_id != task_id or lease.worker_id != worker_id:
        return False
    return process_start_time(lease.pid) == lease.start_time


def _task_id(container: Mapping[str, Any]) -> int | None:
    labels = container.get("labels") or {}
    try:
        return int(labels[LABEL_TASK])
    except (KeyError, TypeError, ValueError):
        return None


def find_orphans(
    containers: Iterable[Mapping[str, Any]],
    *,
    workdir_root: str,
    worker_id: str,
    keep: Iterable[int] = (),
) -> dict[int, list[str]]:
    """Orphaned containers (their ids) by task id.

    ``keep``: task ids never reaped (the calling task's own). A container without a task
    label was not made by an adapter for a task; it is left alone here (``reap_all`` at kojid
    start still removes it).
    """
    kept = set(keep)
    alive: dict[int, bool] = {}
    orphans: dict[int, list[str]] = {}
    for container in containers:
        task_id = _task_id(container)
        if task_id is None or task_id in kept:
            continue
        if task_id not in alive:
            alive[task_id] = task_is_alive(workdir_root, task_id, worker_id)
        if not alive[task_id]:
            orphans.setdefault(task_id, []).append(str(container.get("id")))
    return orphans


def reap_orphans(
    manager: ContainerManager,
    *,
    worker_id: str,
    workdir_root: str,
    keep: Iterable[int] = (),
    state_dir: str | None = None,
) -> dict[int, list[str]]:
    """Remove this worker's containers whose task is not alive; return what was found. Each
    removal is recorded in ``state_dir`` (:mod:`koji_adjutant.records`) when given."""
    containers = manager.list_containers({LABEL_WORKER: worker_id})
    orphans = find_orphans(containers, workdir_root=workdir_root, worker_id=worker_id, keep=keep)
    for task_id, ids in sorted(orphans.items()):
        logger.warning(
            "Removing %d orphaned container(s) of task %d (worker %s): %s",
            len(ids),
            task_id,
            worker_id,
            ", ".join(i[:12] for i in ids),
        )
        manager.reap({LABEL_WORKER: worker_id, LABEL_TASK: str(task_id)})
        _record(state_dir, ids, task_id)
    return orphans


def reap_all(manager: ContainerManager, *, worker_id: str, state_dir: str | None = None) -> int:
    """Remove every container of this worker (kojid is starting: none of its tasks runs)."""
    listed = manager.list_containers({LABEL_WORKER: worker_id})
    removed = manager.reap({LABEL_WORKER: worker_id})
    if removed:
        logger.warning("Removed %d leftover container(s) of worker %s", removed, worker_id)
        for container in listed:
            _record(state_dir, [str(container.get("id", ""))], _task_id(container))
    return removed


def _record(state_dir: str | None, container_ids: Iterable[str], task_id: int | None) -> None:
    if state_dir is None:
        return
    from koji_adjutant import records

    for container_id in container_ids:
        records.record_reaped(state_dir, container_id=container_id, task_id=task_id)
