"""P2 (log sinks): container output through a Rust FileSink versus a raw attach that
discards it.

1 GB of stdout (``head -c 1000000000 /dev/zero``) through ``PodmanManager.run`` into a
``FileSink`` (a file under $BUILD_DIR, removed after each run) versus the same run with no
sink (the attach stream is read and dropped). Interleaved rounds; the ratio is the median of
per-round throughput ratios sink/discard, goal >= 0.9. Peak RSS growth of this process during
the sink runs, goal < 32 MB. Every run must deliver 1e9 bytes (checked from the sink's
state). The same rounds also run a FileSink capped at 10 MiB, reported without a goal: its
drop-oldest rewrites copy about one byte per byte written past the cap.

Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock .venv/bin/python -m
benchmarks.bench_logsink [--quick]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from koji_adjutant import ContainerSpec, FileSink, PodmanManager

from benchmarks import common

__all__ = ["BENCHMARKS", "run"]

BENCHMARKS = ("P2-LOG",)
BYTES = 1_000_000_000
CAP = 10 * 1024 * 1024
GOAL_RATIO = 0.9
GOAL_RSS_MB = 32


def run(args: object) -> list[dict[str, object]]:
    if not common.wants(args, "P2-LOG"):
        return []
    worker = common.worker_id("bench-logsink")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    image = common.image(args)
    spec = ContainerSpec(image, ["head", "-c", str(BYTES), "/dev/zero"])
    out_dir = Path(tempfile.mkdtemp(prefix="adj-bench-log-", dir=os.environ.get("BUILD_DIR")))
    growth: list[int] = []

    def through_file_sink(cap: int | None) -> int:
        path = out_dir / "container.log"
        sink = FileSink(path, cap_bytes=cap)
        with common.PeakRss() as peak:
            if manager.run(spec, sink).exit_code != 0:
                raise RuntimeError("container failed")
        sink.finish()
        growth.append(peak.growth_kib)
        state = sink.state()
        if state["bytes_written"] != BYTES:
            raise RuntimeError(f"file sink got {state['bytes_written']} bytes, not {BYTES}")
        path.unlink()
        return int(state["bytes_written"])

    def discarded() -> int:
        if manager.run(spec).exit_code != 0:
            raise RuntimeError("container failed")
        return BYTES

    try:
        samples = common.interleave(
            {
                "file sink": lambda: through_file_sink(None),
                "capped file sink": lambda: through_file_sink(CAP),
                "discard": discarded,
            },
            common.rounds(args, 3, 1),
            warmup=0,
        )
    finally:
        common.ensure_no_containers(worker)
        for leftover in out_dir.iterdir():
            leftover.unlink()
        out_dir.rmdir()
    # Throughput ratio = inverse of the time ratio.
    ratio = 1 / samples.ratio("file sink", "discard")
    capped_ratio = 1 / samples.ratio("capped file sink", "discard")
    mb_s = {name: BYTES / 1e6 / samples.median(name) for name in samples.times}
    worst_growth_mb = max(growth) / 1024
    rows = [
        common.goal_row(
            "P2-LOG throughput (FileSink / discard)",
            ratio,
            ">=",
            GOAL_RATIO,
            f"file sink {mb_s['file sink']:.0f} MB/s, discard {mb_s['discard']:.0f} MB/s, "
            f"{len(samples.times['discard'])} rounds, 1 GB each",
        ),
        {
            "name": "P2-LOG capped at 10 MiB (capped / discard)",
            "ratio": capped_ratio,
            "goal": "-",
            "met": None,
            "detail": f"capped file sink {mb_s['capped file sink']:.0f} MB/s (informational)",
        },
        common.goal_row(
            "P2-LOG peak RSS growth (MB)",
            worst_growth_mb,
            "<=",
            GOAL_RSS_MB,
            f"largest VmHWM rise over all FileSink runs: {max(growth)} KiB",
        ),
    ]
    common.print_table("P2 (log sinks): 1 GB of container output", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
