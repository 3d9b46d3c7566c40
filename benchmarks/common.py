"""Shared helpers for the benchmarks: interleaved timing, peak RSS, sinks, the podman CLI.

Performance here is always a ratio of two things measured side by side in one run: the
machines are shared and noisy, so absolute times drift while the ratio of neighbouring runs
holds. ``interleave`` therefore runs the candidates in rounds (rotating which goes first, so
neither always runs on a warmer cache) and ``Samples.ratio`` takes the median of the per-round
ratios, which a slow phase of the machine shifts on both sides at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "IMAGE",
    "LABEL_BUILDROOT",
    "LABEL_WORKER",
    "CountingSink",
    "PeakRss",
    "RecordingSink",
    "Samples",
    "children_peak_rss_kib",
    "cli_restrictions",
    "cli_run",
    "current_rss_kib",
    "ensure_no_containers",
    "goal_row",
    "image",
    "interleave",
    "module_args",
    "peak_rss_kib",
    "podman",
    "podman_socket",
    "print_table",
    "reset_peak_rss",
    "rounds",
    "time_pairs",
    "wants",
    "worker_events",
    "worker_id",
]

IMAGE = os.environ.get("KOJI_ADJUTANT_TEST_IMAGE", "localhost/koji-adjutant-task:dev")
LABEL_WORKER = "io.koji.adjutant.worker_id"
LABEL_BUILDROOT = "io.koji.adjutant.buildroot"

#: The adapter's ceilings for container rlimits (src/core/spec.rs NOFILE/NPROC_CEILING).
_RLIMIT_CEILING = 16_384


# --- selection -------------------------------------------------------------------------------


def wants(args: object, bench_id: str) -> bool:
    """Whether the driver asked for benchmark ``bench_id`` (P1, P2, ...) of this module.

    The driver sets ``args.selected`` to the ids picked with ``--only`` or to None for all;
    a module run on its own (no such attribute) runs everything.
    """
    selected = getattr(args, "selected", None)
    return selected is None or bench_id.upper() in selected


def rounds(args: object, full: int, quick: int) -> int:
    """How many measured rounds: ``--pairs`` if given, else ``quick`` under ``--quick``."""
    pairs = getattr(args, "pairs", None)
    if pairs:
        return int(pairs)
    return quick if getattr(args, "quick", False) else full


def image(args: object) -> str:
    return str(getattr(args, "image", None) or IMAGE)


def module_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Arguments for running one benchmark module as a script (``python -m benchmarks.x``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--image", default=IMAGE)
    return parser.parse_args(argv)


# --- interleaved timing ----------------------------------------------------------------------


@dataclass
class Samples:
    """Wall times (seconds) per candidate, one entry per measured round, in round order."""

    times: dict[str, list[float]]
    results: dict[str, list[object]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratios(self, num: str, den: str) -> list[float]:
        """Per-round ratios num/den: each compares two runs made seconds apart."""
        return [a / b for a, b in zip(self.times[num], self.times[den])]

    def ratio(self, num: str, den: str) -> float:
        """Median of the per-round ratios num/den."""
        return statistics.median(self.ratios(num, den))

    def spread(self, name: str) -> str:
        """min-max of one candidate's times in ms, to show the noise next to the median."""
        values = self.times[name]
        return f"{min(values) * 1e3:.0f}-{max(values) * 1e3:.0f} ms"


def interleave(
    candidates: Mapping[str, Callable[[], object]],
    n_rounds: int,
    *,
    warmup: int = 1,
) -> Samples:
    """Times every candidate once per round, rotating the order each round.

    ``warmup`` rounds run first and are discarded (first use of an image, page cache, the
    service's connection pool). A candidate's return value is kept in ``results`` so callers
    can check what each run produced (bytes received, exit codes).
    """
    if n_rounds < 1:
        raise ValueError("need at least one round")
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, list[object]] = {name: [] for name in names}
    for index in range(warmup + n_rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            value = candidates[name]()
            elapsed = time.perf_counter() - started
            if index >= warmup:
                times[name].append(elapsed)
                results[name].append(value)
    return Samples(times=times, results=results)


def time_pairs(
    first: Callable[[], object], second: Callable[[], object], pairs: int, *, warmup: int = 1
) -> tuple[float, float, float]:
    """``pairs`` interleaved runs of two callables: (median first, median second, ratio).

    The ratio is the median of per-pair first/second ratios.
    """
    samples = interleave({"first": first, "second": second}, pairs, warmup=warmup)
    return samples.median("first"), samples.median("second"), samples.ratio("first", "second")


# --- memory ----------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM; getrusage's ru_maxrss where /proc lacks it)."""
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    current = _status_kib("VmRSS")
    return current if current is not None else peak_rss_kib()


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0, ``clear_refs`` value 5); False if not."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children_peak_rss_kib() -> int:
    """The largest peak RSS of any waited-for child process (e.g. a ``podman`` CLI run)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


class PeakRss:
    """``with PeakRss() as peak: ...`` then ``peak.growth_kib``: how far the peak RSS rose
    above the RSS at entry. Without a resettable VmHWM, growth is measured against the old
    peak and so shows only growth past it (``peak.exact`` is False)."""

    def __enter__(self) -> PeakRss:
        self.exact = reset_peak_rss()
        self.start_kib = current_rss_kib() if self.exact else peak_rss_kib()
        self.growth_kib = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_kib = max(0, peak_rss_kib() - self.start_kib)


# --- sinks -----------------------------------------------------------------------------------


class CountingSink:
    """A LogSink that only counts bytes and chunks (the cheapest Python sink possible)."""

    def __init__(self) -> None:
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.chunks = 0

    def write_stdout(self, data: bytes) -> None:
        self.stdout_bytes += len(data)
        self.chunks += 1

    def write_stderr(self, data: bytes) -> None:
        self.stderr_bytes += len(data)
        self.chunks += 1


class RecordingSink:
    """A LogSink that keeps each stream's bytes."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()

    def write_stdout(self, data: bytes) -> None:
        self.stdout += data

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data


# --- podman ----------------------------------------------------------------------------------


def podman_socket() -> str:
    """The service socket the adapter uses (``make bench`` sets KOJI_ADJUTANT_PODMAN_SOCKET)."""
    socket = os.environ.get("KOJI_ADJUTANT_PODMAN_SOCKET", "").removeprefix("unix://")
    if not socket or not Path(socket).is_socket():
        raise RuntimeError(
            f"no podman service socket (KOJI_ADJUTANT_PODMAN_SOCKET={socket!r}): run `make bench`"
        )
    return socket


def worker_id(name: str) -> str:
    """A worker id of our own, so leftovers of this run (and only those) can be found."""
    return f"bench-{name}-{os.getpid()}"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The podman CLI with runc (crun does not work on these hosts)."""
    return subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, check=check
    )


def worker_events(worker: str, since: float, *filters: str) -> list[dict[str, Any]]:
    """podman's events about ``worker``'s containers since ``since`` (epoch seconds), each as
    podman's JSON object, narrowed by further ``--filter`` values (``event=create``). Empty
    when podman's event log has nothing (another events backend, or the log was rotated)."""
    stamp = dt.datetime.fromtimestamp(since - 1, dt.timezone.utc)
    args = ["--filter", f"label={LABEL_WORKER}={worker}"]
    for value in filters:
        args += ["--filter", value]
    proc = podman(
        "events",
        "--stream=false",
        "--since",
        stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        *args,
        "--format",
        "json",
        check=False,
    )
    events = []
    for line in proc.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _hard_limit(name: str, fallback: int) -> int:
    try:
        lines = Path("/proc/self/limits").read_text().splitlines()
    except OSError:
        return fallback
    for line in lines:
        if line.startswith(name):
            value = line[len(name) :].split()[1]
            return 1 << 62 if value == "unlimited" else int(value)
    return fallback


def cli_restrictions() -> list[str]:
    """``podman run`` options giving the CLI container what the adapter gives its own.

    The adapter's containers (src/core/podman.rs create_body) have no network, no
    capabilities, no-new-privileges, a 4096 pids limit and nofile/nproc set to the caller's
    hard limits capped at 16384; the CLI run must do the same work to be a fair baseline.
    """
    nofile = min(_hard_limit("Max open files", 1024), _RLIMIT_CEILING)
    nproc = min(_hard_limit("Max processes", 4096), _RLIMIT_CEILING)
    return [
        f"--ulimit=nofile={nofile}:{nofile}",
        f"--ulimit=nproc={nproc}:{nproc}",
        "--network=none",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--pids-limit=4096",
    ]


def cli_run(
    image: str, worker: str, argv: Sequence[str], options: Sequence[str] = ()
) -> Callable[[], int]:
    """A callable running ``podman run --rm`` of ``argv`` with the adapter's restrictions and
    the benchmark's worker label, output discarded; raises if the command fails.

    ``options`` are further ``podman run`` options (user, mounts, environment)."""
    command = [
        "podman",
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--label",
        f"{LABEL_WORKER}={worker}",
        *cli_restrictions(),
        *options,
        image,
        *argv,
    ]

    def run_cli() -> int:
        proc = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr}")
        return proc.returncode

    return run_cli


def ensure_no_containers(worker: str) -> None:
    """Raises if any container labelled with ``worker`` exists, after removing them all."""
    listed = podman("ps", "-a", "-q", "--filter", f"label={LABEL_WORKER}={worker}").stdout.split()
    if listed:
        podman("rm", "-f", *listed, check=False)
        raise RuntimeError(f"containers left behind by worker {worker}: {listed}")


# --- reporting -------------------------------------------------------------------------------


def goal_row(name: str, ratio: float, op: str, target: float, detail: str) -> dict[str, object]:
    """A result row; ``met`` is ``ratio <= target`` for op "<=", ``ratio >= target`` for ">="."""
    if op == "<=":
        met = ratio <= target
    elif op == ">=":
        met = ratio >= target
    else:
        raise ValueError(f"unknown goal operator {op!r}")
    return {"name": name, "ratio": ratio, "goal": f"{op} {target:g}", "met": met, "detail": detail}


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def print_table(title: str, rows: Iterable[Mapping[str, object]]) -> None:
    """Prints rows as an aligned table: name, ratio, goal, met, detail."""
    rows = list(rows)
    header = ("benchmark", "ratio", "goal", "met", "detail")
    cells = [
        tuple(_cell(row.get(key)) for key in ("name", "ratio", "goal", "met", "detail"))
        for row in rows
    ]
    widths = [max([len(header[i])] + [len(c[i]) for c in cells]) for i in range(4)]
    print(f"\n{title}")
    line = "  ".join(f"{header[i]:<{widths[i]}}" for i in range(4)) + "  " + header[4]
    print(line)
    print("-" * min(len(line) + 40, 160))
    for c in cells:
        print("  ".join(f"{c[i]:<{widths[i]}}" for i in range(4)) + "  " + c[4])
