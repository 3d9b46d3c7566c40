"""P1 and P2: the container layer (``PodmanManager.run``) against ``podman run`` on the CLI.

P1, fixed cost of one container: ``PodmanManager.run`` of ``true`` versus ``podman run --rm
IMAGE true`` with the same restrictions (no network, no capabilities, no-new-privileges,
pids 4096, the same nofile/nproc), interleaved rounds, median of the per-round ratios
adapter/CLI. Goal <= 1.1. Two diagnostic candidates run in the same rounds to say where the
time goes: the same REST calls the adapter makes (create, start, wait, delete; no attach)
issued from Python, once with podman's default ``wait`` polling interval (250 ms) and once
with ``interval=10ms``.

P2, output streaming: 50 MB of stdout (``head -c 50000000 /dev/zero``) through
``PodmanManager.run`` into a Python sink that counts bytes, versus the CLI writing it to
/dev/null. Throughput ratio adapter/CLI, median of per-round ratios. Goal >= 0.9. Every
adapter run must deliver exactly 50000000 bytes. The same rounds also run ``true`` on both
sides so the streaming rate net of container start-up can be reported too.

Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock .venv/bin/python -m
benchmarks.bench_container [--quick]``.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from koji_adjutant import ContainerSpec, PodmanManager

from benchmarks import common

__all__ = ["BENCHMARKS", "run"]

BENCHMARKS = ("P1", "P2")
P1_GOAL = 1.1
P2_GOAL = 0.9
P2_BYTES = 50_000_000
#: The API version prefix the adapter uses (podman-api's LATEST_API_VERSION).
API = "/v4.3.1/libpod"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(120)
        sock.connect(self._path)
        self.sock = sock


class RawRest:
    """The REST calls ``PodmanManager.run`` makes, issued directly: a floor for the adapter.

    Without attach/streaming (``true`` prints nothing), so it isolates what the service
    itself costs per container, including the ``wait`` endpoint's polling interval.
    """

    def __init__(self, socket_path: str, image: str, worker: str, rlimits: tuple[int, int]):
        self.socket_path = socket_path
        nofile, nproc = rlimits
        self.body = json.dumps(
            {
                "image": image,
                "command": ["true"],
                "labels": {common.LABEL_WORKER: worker, "io.koji.adjutant.task_id": "none"},
                "stop_timeout": 10,
                "r_limits": [
                    {"type": "nofile", "soft": nofile, "hard": nofile},
                    {"type": "nproc", "soft": nproc, "hard": nproc},
                ],
                "no_new_privileges": True,
                "cap_drop": ["ALL"],
                "netns": {"nsmode": "none"},
                "resource_limits": {"pids": {"limit": 4096}},
            }
        )

    def _call(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: str | None = None
    ) -> bytes:
        conn.request(method, API + path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return data

    def run_true(self, wait_query: str = "") -> int:
        conn = _UnixConnection(self.socket_path)
        try:
            cid = json.loads(self._call(conn, "POST", "/containers/create", self.body))["Id"]
            try:
                self._call(conn, "POST", f"/containers/{cid}/start")
                code = int(
                    self._call(
                        conn,
                        "POST",
                        f"/containers/{cid}/wait?condition=exited&condition=stopped{wait_query}",
                    ).strip()
                )
            finally:
                self._call(conn, "DELETE", f"/containers/{cid}?force=true&v=true")
        finally:
            conn.close()
        if code != 0:
            raise RuntimeError(f"raw REST run of true exited {code}")
        return code


def _rlimits() -> tuple[int, int]:
    """(nofile, nproc) as passed to the CLI, parsed back from cli_restrictions()."""
    values = {}
    for option in common.cli_restrictions():
        if option.startswith("--ulimit="):
            name, limits = option.removeprefix("--ulimit=").split("=")
            values[name] = int(limits.split(":")[0])
    return values["nofile"], values["nproc"]


def _adapter_true(manager: PodmanManager, image: str) -> Callable[[], int]:
    spec = ContainerSpec(image, ["true"])

    def run_true() -> int:
        result = manager.run(spec)
        if result.exit_code != 0:
            raise RuntimeError(f"adapter run of true exited {result.exit_code}")
        return result.exit_code

    return run_true


@dataclass(frozen=True)
class Streamed:
    """What one adapter run of the 50 MB command delivered to its sink."""

    bytes: int
    chunks: int
    rss_growth_kib: int


def _adapter_stream(
    manager: PodmanManager, image: str, *, sink: bool = True
) -> Callable[[], Streamed]:
    spec = ContainerSpec(image, ["sh", "-c", f"head -c {P2_BYTES} /dev/zero"])

    def stream() -> Streamed:
        counting = common.CountingSink() if sink else None
        with common.PeakRss() as peak:
            result = manager.run(spec, counting)
        if result.exit_code != 0:
            raise RuntimeError(f"adapter run of head exited {result.exit_code}")
        if counting is None:
            return Streamed(P2_BYTES, 0, peak.growth_kib)  # nothing to count: discarded in Rust
        total = counting.stdout_bytes + counting.stderr_bytes
        return Streamed(total, counting.chunks, peak.growth_kib)

    return stream


def _p1(manager: PodmanManager, image: str, worker: str, n: int) -> dict[str, object]:
    rest = RawRest(common.podman_socket(), image, worker, _rlimits())
    samples = common.interleave(
        {
            "adapter": _adapter_true(manager, image),
            "cli": common.cli_run(image, worker, ["true"]),
            "rest": rest.run_true,
            "rest-10ms": lambda: rest.run_true("&interval=10ms"),
        },
        n,
    )
    ms = {name: samples.median(name) * 1e3 for name in samples.times}
    for name in samples.times:
        print(f"  P1 {name:<10} median {ms[name]:6.0f} ms  ({samples.spread(name)})")
    per_round = " ".join(f"{r:.2f}" for r in samples.ratios("adapter", "cli"))
    print(f"  P1 per-round adapter/CLI: {per_round}")
    detail = (
        f"median of {n} rounds: adapter {ms['adapter']:.0f} ms, CLI {ms['cli']:.0f} ms; "
        f"raw REST create/start/wait/delete {ms['rest']:.0f} ms "
        f"({samples.ratio('rest', 'cli'):.2f}x CLI), same with wait interval=10ms "
        f"{ms['rest-10ms']:.0f} ms ({samples.ratio('rest-10ms', 'cli'):.2f}x CLI)"
    )
    return common.goal_row(
        "P1 run `true`: adapter / podman CLI (time)",
        samples.ratio("adapter", "cli"),
        "<=",
        P1_GOAL,
        detail,
    )


def _p2(manager: PodmanManager, image: str, worker: str, n: int) -> dict[str, object]:
    head = ["sh", "-c", f"head -c {P2_BYTES} /dev/zero"]
    samples = common.interleave(
        {
            "adapter": _adapter_stream(manager, image),
            "cli": common.cli_run(image, worker, head),
            "adapter-true": _adapter_true(manager, image),
            "cli-true": common.cli_run(image, worker, ["true"]),
            "adapter-nosink": _adapter_stream(manager, image, sink=False),
        },
        n,
    )
    runs: list[Streamed] = samples.results["adapter"]  # type: ignore[assignment]
    received = [r.bytes for r in runs]
    if any(count != P2_BYTES for count in received):
        raise AssertionError(f"adapter runs received {received} bytes, expected {P2_BYTES} each")
    growth_mib = max(r.rss_growth_kib for r in runs) / 1024
    chunk_kib = P2_BYTES / statistics.median(r.chunks for r in runs) / 1024
    mb = P2_BYTES / 1e6
    rate = {name: mb / samples.median(name) for name in ("adapter", "cli")}
    # Throughput ratio adapter/CLI = CLI time / adapter time, per round.
    ratio = samples.ratio("cli", "adapter")
    # Streaming alone: each side's 50 MB run minus its `true` run of the same round.
    times = samples.times
    net = {
        side: [a - b for a, b in zip(times[side], times[f"{base}-true"])]
        for side, base in (("adapter", "adapter"), ("cli", "cli"), ("adapter-nosink", "adapter"))
    }
    net_ratio = statistics.median(c / a for c, a in zip(net["cli"], net["adapter"]))
    net_rate = {side: mb / statistics.median(values) for side, values in net.items()}
    for name in times:
        print(
            f"  P2 {name:<14} median {samples.median(name) * 1e3:6.0f} ms  ({samples.spread(name)})"
        )
    print(f"  P2 adapter bytes received per run: {received}")
    detail = (
        f"median of {n} rounds: adapter {rate['adapter']:.0f} MB/s, CLI {rate['cli']:.0f} MB/s "
        f"(whole run incl. container start/stop); streaming alone (minus a `true` run): "
        f"adapter {net_rate['adapter']:.0f} MB/s, CLI {net_rate['cli']:.0f} MB/s, ratio "
        f"{net_ratio:.2f}, adapter without a Python sink {net_rate['adapter-nosink']:.0f} MB/s; "
        f"bytes == {P2_BYTES} in {len(received)}/{len(received)} runs; "
        f"{chunk_kib:.0f} KiB per sink call; peak RSS growth {growth_mib:.1f} MiB"
    )
    return common.goal_row(
        "P2 50 MB stdout: adapter / podman CLI (throughput)", ratio, ">=", P2_GOAL, detail
    )


def run(args: object = None) -> list[dict[str, object]]:
    """The P1/P2 rows (whichever are selected); prints their table."""
    image = common.image(args)
    worker = common.worker_id("container")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    manager.ensure_image_available(image, pull_policy="never")
    rows: list[dict[str, object]] = []
    try:
        if common.wants(args, "P1"):
            n = common.rounds(args, full=20, quick=5)
            print(f"P1: `true`, adapter vs CLI vs raw REST, {n} interleaved rounds (+1 warm-up)")
            rows.append(_p1(manager, image, worker, n))
        if common.wants(args, "P2"):
            n = common.rounds(args, full=5, quick=3)
            print(f"P2: {P2_BYTES} bytes of stdout, adapter vs CLI, {n} rounds (+1 warm-up)")
            rows.append(_p2(manager, image, worker, n))
    except BaseException:
        manager.reap({common.LABEL_WORKER: worker})  # after a failure; the error says why
        raise
    common.ensure_no_containers(worker)
    common.print_table("Container layer (P1, P2)", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
