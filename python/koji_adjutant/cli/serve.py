"""``koji-adjutant serve``: this builder's status over HTTP, and metrics for Prometheus.

kojid runs each task in a forked process of its own, so no process holds a registry of the
running tasks. The server asks the sources every task writes to instead, on every request:
Podman's containers and their labels (task, worker, role), their stats, the buildroot cache's
images, the task leases in kojid's workdir, and the records store that task processes append
to when they finish (:mod:`koji_adjutant.records`). It keeps no state of its own beyond
the counters it derives from new records.

Endpoints (all GET, JSON unless said):

* ``/status``: what ``koji-adjutant status --json`` prints, plus a summary of the records;
* ``/containers``: this worker's containers with their task, state, CPU and memory;
* ``/tasks/<id>``: one task's containers, kept failed root, lease and records (404: unknown);
* ``/metrics``: Prometheus' text format (``prometheus_client``, the ``serve`` extra).

It listens on 127.0.0.1 by default. There is no authentication, and the answers name task
ids, images and (in failure reasons) packages, so listening on any other address needs
``--allow-remote``: put it behind a firewall or an authenticating proxy.
"""

from __future__ import annotations

import argparse
import http.server
import ipaddress
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from koji_adjutant import records
from koji_adjutant.cli import status as _status
from koji_adjutant.cli._common import (
    PodmanAPI,
    PodmanAPIError,
    add_config_argument,
    builder_config,
)

DEFAULT_PORT = 9470
#: Buckets of the finished tasks' peak memory (64 MiB to 64 GiB) and CPU time (1 s to 24 h).
MEMORY_BUCKETS = tuple(float(2**n * 1024**2) for n in range(6, 17))
CPU_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 86400.0)

logger = logging.getLogger("koji_adjutant.serve")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve status JSON and Prometheus metrics over HTTP (loopback by default)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument(
        "--listen", default="127.0.0.1", metavar="ADDR", help="address (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --listen (no authentication: see docs/operations.md)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the records store (default: ${records.STATE_DIR_ENV} or"
        f" {records.DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--workdir", default="/var/tmp/koji", help="kojid's workdir, for task leases"
    )
    parser.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Monitor:
    """Answers the endpoints from Podman and the records store; one per server."""

    def __init__(
        self,
        api: PodmanAPI,
        *,
        worker_id: str,
        cache_dir: str | None,
        state_dir: str,
        workdir: str,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.api = api
        self.worker_id = worker_id
        self.cache_dir = cache_dir
        self.state_dir = state_dir
        self.workdir = workdir
        self.sampler = _status.StatsSampler()
        self.lock = threading.Lock()
        self._seen: set[str] = set()
        self._snapshot: dict[str, Any] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]  # a custom collector
        self.finished = Counter(
            "koji_adjutant_tasks_finished",
            "Tasks finished on this builder (since the server started), by method and outcome",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "koji_adjutant_task_refusals",
            "Tasks this builder refused (since the server started), by method",
            ["method"],
            registry=self.registry,
        )
        self.peak_memory = Histogram(
            "koji_adjutant_task_peak_memory_bytes",
            "Peak memory of each finished task's containers",
            ["method"],
            buckets=MEMORY_BUCKETS,
            registry=self.registry,
        )
        self.cpu_seconds = Histogram(
            "koji_adjutant_task_cpu_seconds",
            "CPU seconds of each finished task's containers",
            ["method"],
            buckets=CPU_BUCKETS,
            registry=self.registry,
        )
        self.written = Counter(
            "koji_adjutant_task_written_bytes",
            "Bytes written by finished tasks' containers",
            ["method"],
            registry=self.registry,
        )
        self.reaped = Counter(
            "koji_adjutant_reaped_containers",
            "Orphaned containers removed (since the server started)",
            registry=self.registry,
        )

    # -- data ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """collect()'s dict plus the records' summary; PodmanAPIError when Podman is down."""
        status = _status.collect(
            self.api, worker_id=self.worker_id, cache_dir=self.cache_dir, sampler=self.sampler
        )
        finished = records.read_records(self.state_dir, kind="finished")
        outcomes: dict[str, int] = {}
        for record in finished:
            outcome = str(record.get("outcome"))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        status["records"] = {
            "state_dir": self.state_dir,
            "finished": outcomes,
            "reaped": len(records.read_records(self.state_dir, kind="reaped")),
        }
        return status

    def containers(self) -> list[dict[str, Any]]:
        status = _status.collect(
            self.api, worker_id=self.worker_id, cache_dir=self.cache_dir, sampler=self.sampler
        )
        return [
            {**view, "task_id": task["task_id"]}
            for task in status["tasks"]
            for view in task["containers"]
        ]

    def task(self, task_id: int) -> dict[str, Any] | None:
        status = _status.collect(
            self.api, worker_id=self.worker_id, cache_dir=self.cache_dir, sampler=self.sampler
        )
        mine = [t for t in status["tasks"] if t["task_id"] == task_id]
        kept = [k for k in status["kept_roots"] if k["task_id"] == task_id]
        found = [r for r in records.read_records(self.state_dir) if r.get("task_id") == task_id]
        lease = self._lease(task_id)
        if not (mine or kept or found or lease):
            return None
        return {
            "task_id": task_id,
            "method": mine[0]["method"] if mine else None,
            "running": bool(mine and mine[0]["running"]),
            "containers": mine[0]["containers"] if mine else [],
            "kept_roots": kept,
            "lease": lease,
            "finished": [r for r in found if r.get("kind") == "finished"],
            "reaped": [r for r in found if r.get("kind") == "reaped"],
        }

    def _lease(self, task_id: int) -> dict[str, Any] | None:
        try:
            from koji_adjutant.kojid import reaper
        except ImportError:  # koji's library is not installed: no leases to read
            return None
        lease = reaper.read_lease(self.workdir, task_id)
        if lease is None:
            return None
        return {
            "pid": lease.pid,
            "worker_id": lease.worker_id,
            "alive": reaper.task_is_alive(self.workdir, task_id, self.worker_id),
        }

    # -- metrics ---------------------------------------------------------------------------

    def _take_new_records(self) -> None:
        """Counts the records not seen before (rotation drops old ones; counters never go
        back, as Prometheus expects of them)."""
        current = records.read_records(self.state_dir)
        ids = set()
        for record in current:
            rid = str(record.get("id"))
            ids.add(rid)
            if rid in self._seen:
                continue
            if record.get("kind") == "reaped":
                self.reaped.inc()
                continue
            if record.get("kind") != "finished":
                continue
            method = str(record.get("method") or "unknown")
            outcome = record.get("outcome")
            if outcome == "refused":
                self.refusals.labels(method).inc()
                continue
            self.finished.labels(method, str(outcome)).inc()
            if isinstance(record.get("peak_memory_bytes"), (int, float)):
                self.peak_memory.labels(method).observe(record["peak_memory_bytes"])
            if isinstance(record.get("cpu_seconds"), (int, float)):
                self.cpu_seconds.labels(method).observe(record["cpu_seconds"])
            if isinstance(record.get("bytes_written"), (int, float)):
                self.written.labels(method).inc(record["bytes_written"])
        self._seen = ids

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        with self.lock:
            self._take_new_records()
            try:
                self._snapshot = _status.collect(
                    self.api, worker_id=self.worker_id, cache_dir=self.cache_dir
                )
            except PodmanAPIError as exc:
                logger.warning("podman does not answer: %s", exc)
                self._snapshot = None
            data: bytes = generate_latest(self.registry)
            return data

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        """The gauges, from the snapshot metrics() just took (prometheus_client's collector
        protocol)."""
        from prometheus_client.core import GaugeMetricFamily

        snapshot = self._snapshot
        up = GaugeMetricFamily("koji_adjutant_up", "Whether the Podman service answered")
        up.add_metric([], 0.0 if snapshot is None else 1.0)
        yield up
        if snapshot is None:
            return
        running: dict[str, int] = {}
        states: dict[str, int] = {}
        for task in snapshot["tasks"]:
            if task["running"] and task["task_id"] is not None:
                method = task["method"] or "unknown"
                running[method] = running.get(method, 0) + 1
            for view in task["containers"]:
                states[str(view["state"])] = states.get(str(view["state"]), 0) + 1
        tasks = GaugeMetricFamily(
            "koji_adjutant_tasks_running",
            "Tasks with a running container on this worker, by method",
            labels=["method"],
        )
        for method in ("buildArch", "createrepo"):
            running.setdefault(method, 0)
        for method, count in sorted(running.items()):
            tasks.add_metric([method], float(count))
        yield tasks
        containers = GaugeMetricFamily(
            "koji_adjutant_containers", "This worker's containers, by state", labels=["state"]
        )
        for state, count in sorted(states.items()):
            containers.add_metric([state], float(count))
        yield containers
        cache = snapshot["cache"]
        yield GaugeMetricFamily(
            "koji_adjutant_cache_entries", "Buildroot cache images", value=cache["count"]
        )
        yield GaugeMetricFamily(
            "koji_adjutant_cache_bytes",
            "Size of the buildroot cache images",
            value=cache["total_bytes"],
        )
        yield GaugeMetricFamily(
            "koji_adjutant_kept_roots",
            "Failed buildroots kept for inspection",
            value=len(snapshot["kept_roots"]),
        )


_TASK_PATH = re.compile(r"/tasks/(?P<id>[^/]+)/?")


def make_handler(monitor: Monitor) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def version_string(self) -> str:
            return "koji-adjutant"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: object) -> None:
            body = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
            self._send(status, body, "application/json")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                self._route(path)
            except PodmanAPIError as exc:
                self._json(503, {"error": f"podman does not answer: {exc}"})
            except Exception:
                logger.exception("serving %s", path)
                self._json(500, {"error": "internal error (see the server's log)"})

        def _route(self, path: str) -> None:
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._send(200, monitor.metrics(), CONTENT_TYPE_LATEST)
            elif path == "/status":
                self._json(200, monitor.status())
            elif path == "/containers":
                self._json(200, monitor.containers())
            elif match := _TASK_PATH.fullmatch(path):
                raw = match.group("id")
                if not raw.isdigit():
                    self._json(400, {"error": f"not a task id: {raw!r}"})
                    return
                task = monitor.task(int(raw))
                if task is None:
                    self._json(404, {"error": f"nothing known about task {raw} here"})
                else:
                    self._json(200, task)
            elif path == "/":
                self._json(
                    200, {"endpoints": ["/status", "/containers", "/tasks/<id>", "/metrics"]}
                )
            else:
                self._json(404, {"error": f"no such endpoint: {path}"})

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def make_server(monitor: Monitor, host: str, port: int) -> Server:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (Server,), {"address_family": family})
    return server_class((host, port), make_handler(monitor))


def run(args: argparse.Namespace) -> int:
    try:
        import prometheus_client
    except ImportError:
        print(
            "error: serve needs prometheus_client: pip install 'koji-adjutant[serve]'"
            " (or prometheus_client)",
            file=sys.stderr,
        )
        return 2
    if not _is_loopback(args.listen) and not args.allow_remote:
        print(
            f"error: refusing to listen on {args.listen}: serve has no authentication and"
            " shows task ids, images and package names; use --allow-remote to do it anyway"
            " (behind a firewall or an authenticating proxy)",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port}: expected 0 to 65535", file=sys.stderr)
        return 2
    config = builder_config(args)
    if config is None:
        return 2
    if hasattr(prometheus_client, "disable_created_metrics"):  # 0.18 and newer
        prometheus_client.disable_created_metrics()  # no *_created series beside each counter
    monitor = Monitor(
        PodmanAPI(config.podman_socket, timeout=10),
        worker_id=config.worker_id,
        cache_dir=config.buildroot_cache_dir,
        state_dir=records.state_dir(args.state_dir),
        workdir=args.workdir,
    )
    try:
        server = make_server(monitor, args.listen, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}:{args.port}: {exc}", file=sys.stderr)
        return 2
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port} (worker {config.worker_id})", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    logger.info("stopped after %.0f s", time.monotonic() - started)
    return 0
