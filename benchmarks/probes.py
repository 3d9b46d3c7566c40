"""What a run of tasks may leave behind on the host, looked up from /proc and podman itself.

Used by P5 (``bench_concurrency``) and the soak (``soak``) to show that nothing leaks:
containers and kept roots of a worker, processes (conmon, zombies), mounts in podman's
storage, the podman service's open file descriptors, this process's memory and threads.

The machines are shared: other people's containers come and go during a run. Everything here
is therefore tied to one worker id (containers carry ``io.koji.adjutant.worker_id``; conmon
names its container on its command line), or to what exists at the moment of the check.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common

__all__ = [
    "Conmon",
    "conmons",
    "container_ids_of",
    "cpu_times",
    "existing_containers",
    "fd_count",
    "kept_images",
    "load_average",
    "orphan_mounts",
    "persistent_zombies",
    "service_pid",
    "stale_conmons",
    "storage_mounts",
    "thread_count",
    "worker_containers",
    "zombies",
]

KEPT_WORKER_LABEL = "io.koji.adjutant.kept.worker_id"
#: Where rootful podman mounts container roots and /dev/shm (overlay storage).
STORAGE_ROOTS = ("/var/lib/containers/storage/", "/run/containers/storage/")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (busy: not idle or
    iowait). The difference of two readings gives how busy the machine was in between."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    raw = _read(f"/proc/{pid}/cmdline")
    return raw.rstrip("\0").split("\0") if raw else []


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(command name, parent pid, state) from /proc/<pid>/stat."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    name = raw[raw.find("(") + 1 : raw.rfind(")")]
    rest = raw[raw.rfind(")") + 2 :].split()
    return name, int(rest[1]), rest[0]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def service_pid(socket: str) -> int | None:
    """The podman API service listening on ``socket`` (``podman system service ... unix://S``)."""
    socket = socket.removeprefix("unix://")
    for pid in _pids():
        argv = _cmdline(pid)
        if (
            argv
            and os.path.basename(argv[0]) == "podman"
            and "service" in argv
            and any(a.removeprefix("unix://") == socket for a in argv)
        ):
            return pid
    return None


def fd_count(pid: int) -> int | None:
    """Open file descriptors of process ``pid`` (None if it is gone or not ours to read)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@dataclass(frozen=True)
class Conmon:
    """A conmon process: the container it monitors and whether it serves an exec session
    (those wait podman's ``--exit-delay``, 300 s, after the exec ends before they exit)."""

    pid: int
    ppid: int
    state: str
    container_id: str
    exec_session: bool


def conmons() -> list[Conmon]:
    found = []
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[0] != "conmon":
            continue
        argv = _cmdline(pid)
        container = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
        found.append(Conmon(pid, stat[1], stat[2], container, "--exec-attach" in argv))
    return found


def _started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc."""
    raw = _read(f"/proc/{pid}/stat")
    stat = _read("/proc/stat")
    if not raw or not stat:
        return None
    ticks = int(raw[raw.rfind(")") + 2 :].split()[19])
    boot = next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def stale_conmons(since: float, grace: float = 330.0) -> list[Conmon]:
    """conmon processes started after ``since`` (epoch seconds) and more than ``grace``
    seconds ago whose container no longer exists: anyone's, not only a worker's (podman's
    event log, which would name a worker's containers, is rotated and loses them on a long
    run). An exec session's conmon outlives its exec by podman's exit delay (300 s), hence
    the grace."""
    existing = set(existing_containers())
    found = []
    now = time.time()
    for conmon in conmons():
        started = _started(conmon.pid)
        if started is None or started < since or started > now - grace:
            continue
        if not any(c.startswith(conmon.container_id) for c in existing):
            found.append(conmon)
    return found


def zombies(parents: Iterable[int]) -> list[tuple[int, int, str]]:
    """Defunct processes (pid, parent, name) whose parent is one of ``parents`` or a conmon,
    or that are conmons themselves."""
    parents = set(parents)
    conmon_pids = {c.pid for c in conmons()}
    found = []
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[2] != "Z":
            continue
        name, ppid, _ = stat
        if ppid in parents or ppid in conmon_pids or name == "conmon":
            found.append((pid, ppid, name))
    return found


def persistent_zombies(parents: Iterable[int], settle: float = 10.0) -> list[tuple[int, int, str]]:
    """``zombies(parents)`` still there ``settle`` seconds later. conmon double-forks, so an
    exited conmon is PID 1's child, and a PID 1 that reaps in passes (this VM's does) shows it
    as a zombie for a few seconds: only one that stays is left behind."""
    parents = list(parents)
    first = set(zombies(parents))
    if not first:
        return []
    time.sleep(settle)
    return sorted(first & set(zombies(parents)))


def worker_containers(worker: str) -> list[str]:
    """IDs of the containers carrying ``worker``'s label."""
    listed = common.podman(
        "ps", "-a", "-q", "--no-trunc", "--filter", f"label={common.LABEL_WORKER}={worker}"
    )
    return listed.stdout.split()


def kept_images(worker: str) -> list[str]:
    """Failed roots kept for ``worker`` (``keep_failed_root``)."""
    listed = common.podman(
        "images", "-q", "--no-trunc", "--filter", f"label={KEPT_WORKER_LABEL}={worker}"
    )
    return listed.stdout.split()


def container_ids_of(worker: str, since: float) -> set[str]:
    """Every container created with ``worker``'s label since ``since`` (epoch seconds), from
    podman's events (also those removed since)."""
    events = common.worker_events(worker, since, "event=create")
    return {str(event["ID"]) for event in events if "ID" in event}


def existing_containers() -> dict[str, str]:
    """{container id: its overlay merged dir} of every container that exists now."""
    ids = common.podman("ps", "-a", "-q", "--no-trunc").stdout.split()
    if not ids:
        return {}
    inspected = common.podman("inspect", "--type", "container", *ids, check=False)
    merged: dict[str, str] = {i: "" for i in ids}
    try:
        for entry in json.loads(inspected.stdout or "[]"):
            data = (entry.get("GraphDriver") or {}).get("Data") or {}
            merged[str(entry["Id"])] = str(data.get("MergedDir") or "")
    except (ValueError, KeyError, TypeError):
        pass
    return merged


def storage_mounts() -> list[str]:
    """Mount points in podman's storage (container roots, their /dev/shm), from this mount
    namespace (rootful podman mounts in the host's)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].startswith(STORAGE_ROOTS):
            points.append(fields[4])
    return points


def orphan_mounts(settle: float = 2.0) -> list[str]:
    """Mounts in podman's storage that belong to no existing container: a root whose
    container is gone, a container's shm after its removal. Checked twice ``settle`` seconds
    apart, so a container removed between the two looks ups is not counted."""

    def candidates() -> set[str]:
        points = storage_mounts()
        existing = existing_containers()
        merged = {m for m in existing.values() if m}
        left = set()
        for point in points:
            # the storage's own directories (podman bind-mounts its overlay dir onto itself)
            if point.rstrip("/") + "/" in STORAGE_ROOTS or point.count("/") <= 5:
                continue
            if point in merged:
                continue
            if any(f"/{cid}/" in point + "/" for cid in existing):
                continue
            left.add(point)
        return left

    first = candidates()
    if not first:
        return []
    time.sleep(settle)
    return sorted(first & candidates())
