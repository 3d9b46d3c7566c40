"""``koji-adjutant status``: what this builder's containers are doing now.

Lists the containers of this worker (label ``io.koji.adjutant.worker_id``) grouped by task,
with the task's method (from the containers' role label: ``build``/``bootstrap`` are a
buildArch, a ``createrepo_c``/``mergerepo_c`` command a createrepo), each container's age,
state, CPU and memory now; the buildroot cache's images and their sizes; and the failed
buildroots kept for inspection with the time they have left: images labelled
``io.koji.adjutant.kept.*`` (``localhost/koji-adjutant-kept:<task_id>``). Everything comes from
Podman, so it sees the tasks of every kojid task process. ``--json`` prints the same as JSON
(what ``koji-adjutant serve`` answers on ``/status``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from koji_adjutant.cli._common import (
    LABEL_CACHE,
    LABEL_CACHE_KEY,
    LABEL_ROLE,
    LABEL_TASK,
    LABEL_WORKER,
    PodmanAPI,
    PodmanAPIError,
    add_config_argument,
    builder_config,
    container_name,
    human_bytes,
    human_duration,
    labels_of,
)
from koji_adjutant.labels import KEPT_TASK, KEPT_UNTIL, KEPT_WORKER, METHOD

#: Kept failed buildroots as images ``localhost/koji-adjutant-kept:<task>`` with these labels
#: (src/core/buildroot/kept.rs).
LABEL_KEPT_TASK, LABEL_KEPT_WORKER, LABEL_KEPT_UNTIL = KEPT_TASK, KEPT_WORKER, KEPT_UNTIL
#: The method a container's role label means (roles set in src/core/buildarch.rs).
ROLE_METHODS = {"build": "buildArch", "bootstrap": "buildArch", "source": "buildSRPMFromSCM"}
#: The method a container's command means, for containers without a method label (createrepo's
#: containers carry one since they became one pausing container per task).
COMMAND_METHODS = {"createrepo_c": "createrepo", "mergerepo_c": "createrepo"}
#: A label naming the method outright (the buildroot runner sets it: buildArch, rebuildSRPM,
#: buildSRPMFromSCM) wins over both.
LABEL_METHOD = METHOD


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="this worker's containers by task, the buildroot cache, kept failed roots",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--sample",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="measure CPU use over this long (default: %(default)s; 0: CPU seconds only)",
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class _Sample:
    cpu_ns: int
    at: float


class StatsSampler:
    """CPU percent needs two readings: keeps the last reading of each container."""

    def __init__(self) -> None:
        self._last: dict[str, _Sample] = {}
        self._lock = threading.Lock()

    def sample(self, api: PodmanAPI, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        raw = api.stats(list(ids))
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for cid, stats in raw.items():
                cpu_ns = int(stats.get("CPUNano") or 0)
                last = self._last.get(cid)
                percent = None
                if last is not None and now - last.at >= 0.05 and cpu_ns >= last.cpu_ns:
                    percent = round(100.0 * (cpu_ns - last.cpu_ns) / 1e9 / (now - last.at), 1)
                self._last[cid] = _Sample(cpu_ns, now)
                limit = int(stats.get("MemLimit") or 0)
                out[cid] = {
                    "cpu_percent": percent,
                    "cpu_seconds": round(cpu_ns / 1e9, 3),
                    "memory_bytes": int(stats.get("MemUsage") or 0),
                    "memory_limit_bytes": limit or None,
                    "pids": int(stats.get("PIDs") or 0),
                }
            for gone in set(self._last) - set(ids):
                del self._last[gone]
        return out


def _created(container: Mapping[str, Any]) -> float | None:
    """A container's creation time (podman's list gives RFC 3339 with nanoseconds)."""
    text = str(container.get("Created") or "")
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    stamp = datetime.datetime.fromisoformat(match.group(1) + zone).timestamp()
    return stamp + float("0." + (match.group(2) or "0"))


def method_of(container: Mapping[str, Any]) -> str | None:
    """The kojid method a container works for, from its labels or its command."""
    labels = labels_of(container)
    if labels.get(LABEL_METHOD):
        return labels[LABEL_METHOD]
    if labels.get(LABEL_ROLE) in ROLE_METHODS:
        return ROLE_METHODS[labels[LABEL_ROLE]]
    command = container.get("Command") or []
    if command:
        return COMMAND_METHODS.get(os.path.basename(str(command[0])))
    return None


def _task_key(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def container_view(
    container: Mapping[str, Any], stats: Mapping[str, Any] | None, now: float
) -> dict[str, Any]:
    labels = labels_of(container)
    created = _created(container)
    view: dict[str, Any] = {
        "id": container.get("Id"),
        "name": container_name(container),
        "role": labels.get(LABEL_ROLE) or None,
        "method": method_of(container),
        "state": container.get("State"),
        "image": container.get("Image"),
        "created": created,
        "age_seconds": None if created is None else round(now - created, 1),
        "cpu_percent": None,
        "cpu_seconds": None,
        "memory_bytes": None,
        "memory_limit_bytes": None,
        "pids": None,
    }
    if stats is not None and container.get("State") == "running":
        view.update(stats)
    return view


def kept_images(api: PodmanAPI, worker_id: str, now: float) -> list[dict[str, Any]]:
    """This worker's kept roots that are images (a root whose expiry cannot be read has none
    left, as the core's reaper sees it)."""
    found = []
    for image in api.images({LABEL_KEPT_WORKER: worker_id}):
        labels = labels_of(image)
        task = _task_key(labels.get(LABEL_KEPT_TASK))
        until = _task_key(labels.get(LABEL_KEPT_UNTIL))
        tags = list(image.get("RepoTags") or image.get("Names") or [])
        found.append(
            {
                "kind": "image",
                "id": image.get("Id"),
                "name": tags[0] if tags else str(image.get("Id", ""))[:12],
                "task_id": task,
                "state": None,
                "expires": until,
                "seconds_left": round((until or 0) - now),
                "size_bytes": int(image.get("Size") or 0),
            }
        )
    return found


def cache_entries(
    api: PodmanAPI, *, cache_dir: str | None, containers: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The buildroot cache's images, most recently used first (the order its eviction keeps).

    Last use is the mtime of ``<cache_dir>/<key>`` as the core records it, else the image's
    creation time (what the core's eviction uses without a cache dir).
    """
    users: dict[str, int] = {}
    for container in containers:
        image_id = str(container.get("ImageID") or "")
        users[image_id] = users.get(image_id, 0) + 1
    entries: list[dict[str, Any]] = []
    for image in api.images({LABEL_CACHE: "1"}):
        labels = labels_of(image)
        key = labels.get(LABEL_CACHE_KEY, "")
        created = float(image.get("Created") or 0)
        last_used = created
        if cache_dir and key and "/" not in key:
            try:
                last_used = os.stat(os.path.join(cache_dir, key)).st_mtime
            except OSError:
                pass
        entries.append(
            {
                "id": image.get("Id"),
                "tags": list(image.get("RepoTags") or image.get("Names") or []),
                "key": key or None,
                "size_bytes": int(image.get("Size") or 0),
                "created": created,
                "last_used": last_used,
                "containers": max(int(image.get("Containers") or 0), users.get(image["Id"], 0)),
            }
        )
    entries.sort(key=lambda e: e["last_used"], reverse=True)
    return entries


def collect(
    api: PodmanAPI,
    *,
    worker_id: str,
    cache_dir: str | None,
    sampler: StatsSampler | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """This worker's tasks and containers, the cache and the kept roots, as one dict."""
    everything = api.containers()
    now = time.time() if now is None else now
    mine = [c for c in everything if labels_of(c).get(LABEL_WORKER) == worker_id]
    kept = kept_images(api, worker_id, now)
    live = mine
    running = [str(c["Id"]) for c in live if c.get("State") == "running"]
    stats = (sampler or StatsSampler()).sample(api, running) if running else {}
    tasks: dict[int | None, dict[str, Any]] = {}
    for container in live:
        task_id = _task_key(labels_of(container).get(LABEL_TASK))
        view = container_view(container, stats.get(str(container.get("Id"))), now)
        task = tasks.setdefault(
            task_id, {"task_id": task_id, "method": None, "containers": [], "age_seconds": None}
        )
        task["containers"].append(view)
        task["method"] = task["method"] or view["method"]
        if view["age_seconds"] is not None:
            task["age_seconds"] = max(task["age_seconds"] or 0, view["age_seconds"])
    for task in tasks.values():
        task["containers"].sort(key=lambda v: v["created"] or 0)
        task["running"] = any(v["state"] == "running" for v in task["containers"])
        task["memory_bytes"] = _sum(v["memory_bytes"] for v in task["containers"])
        task["cpu_percent"] = _sum(v["cpu_percent"] for v in task["containers"])
    cache = cache_entries(api, cache_dir=cache_dir, containers=everything)
    return {
        "worker_id": worker_id,
        "socket": api.socket,
        "time": now,
        "tasks": sorted(tasks.values(), key=lambda t: (t["task_id"] is None, t["task_id"] or 0)),
        "cache": {
            "entries": cache,
            "count": len(cache),
            "total_bytes": sum(e["size_bytes"] for e in cache),
        },
        "kept_roots": sorted(kept, key=lambda k: k["expires"] or 0),
    }


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _cpu(view: Mapping[str, Any]) -> str:
    if view["cpu_seconds"] is None:
        return "-"
    percent = "" if view["cpu_percent"] is None else f"{view['cpu_percent']:.1f}% "
    return f"{percent}({view['cpu_seconds']:.1f}s)"


def render(status: Mapping[str, Any]) -> str:
    """The text ``koji-adjutant status`` prints."""
    now = status["time"]
    lines = [f"worker {status['worker_id']} on {status['socket']}"]
    if not status["tasks"]:
        lines.append("no containers")
    for task in status["tasks"]:
        name = "no task" if task["task_id"] is None else f"task {task['task_id']}"
        count = len(task["containers"])
        lines.append(
            f"{name}  {task['method'] or 'unknown method'}  {count} container(s)"
            f"  age {human_duration(task['age_seconds'] or 0)}"
        )
        for view in task["containers"]:
            memory = "-" if view["memory_bytes"] is None else human_bytes(view["memory_bytes"])
            lines.append(
                f"  {str(view['id'])[:12]}  {view['role'] or '-':<9}  {view['state']:<10}"
                f"  age {human_duration(view['age_seconds'] or 0):>7}"
                f"  cpu {_cpu(view)}  mem {memory}"
            )
    cache = status["cache"]
    lines.append(f"buildroot cache: {cache['count']} image(s), {human_bytes(cache['total_bytes'])}")
    for entry in cache["entries"]:
        tag = entry["tags"][0] if entry["tags"] else "<untagged>"
        use = f"  in use by {entry['containers']}" if entry["containers"] else ""
        lines.append(
            f"  {str(entry['id'])[:12]}  {tag}  {human_bytes(entry['size_bytes'])}"
            f"  last used {human_duration(now - entry['last_used'])} ago{use}"
        )
    lines.append(f"kept failed roots: {len(status['kept_roots'])}")
    for root in status["kept_roots"]:
        left = root["seconds_left"]
        when = (
            f"expires in {human_duration(left)}"
            if left > 0
            else f"expired {human_duration(-left)} ago (the reaper removes it)"
        )
        what = root["state"] or f"image, {human_bytes(root['size_bytes'])}"
        lines.append(f"  {root['name']}  task {root['task_id']}  {what}  {when}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = builder_config(args)
    if config is None:
        return 2
    if args.sample < 0 or args.sample > 60:
        print("error: --sample must be between 0 and 60 seconds", file=sys.stderr)
        return 2
    api = PodmanAPI(config.podman_socket)
    sampler = StatsSampler()
    try:
        if args.sample:
            running = [
                str(c["Id"])
                for c in api.containers({LABEL_WORKER: config.worker_id})
                if c.get("State") == "running"
            ]
            if running:
                sampler.sample(api, running)
                time.sleep(args.sample)
        status = collect(
            api,
            worker_id=config.worker_id,
            cache_dir=config.buildroot_cache_dir,
            sampler=sampler,
        )
    except PodmanAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(status, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(render(status))
    return 0
