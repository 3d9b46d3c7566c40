"""P5: N buildArch tasks at once through the adapter (kojid's ``maxjobs``), against the same N
one after another.

Each task is what kojid runs in a forked child: a process of its own calling
``BuildArchAdapter.run`` of a tiny noarch package (``benchmarks.soak``'s setup: the dev
distribution's tag, its build group, kojid's default user namespace) with the buildroot cache
warm (one cold build first, not measured). Every round, in rotating order:

* sequential: N task processes one after another; ``mean`` is their mean wall time, and the
  sequential bound is N x mean, what one builder running them one at a time would take;
* concurrent: the N task processes started at once; its wall time is from the first start to
  the last exit.

Ratio: sequential bound / concurrent wall time (throughput of N at once relative to one at a
time), median of the per-round ratios; goal >= 0.9 (running N at once costs at most 10 %).
On a 2-core machine a ratio above 1 means the tasks' waits (Podman calls, container starts)
overlap; above the number of cores it cannot go far, since a warm build is mostly CPU.
Every task must exit 0 having built its one RPM. Leaks are looked for after the last round:
containers of the benchmark's worker, conmon processes of its containers (right after the
last task; again once podman's exec exit delay of 300 s passed, except with ``--quick``,
where only container monitors count), zombie processes, mounts in podman's storage of no
container, and the podman service's open fds before and after.

Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock PYTHONPATH=tests
.venv/bin/python -m benchmarks.bench_concurrency [--quick] [--pairs N]``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from koji_adjutant import PodmanManager
from koji_adjutant import labels as lb

from benchmarks import common, probes, soak

__all__ = ["BENCHMARKS", "run"]

BENCHMARKS = ("P5",)
GOAL = 0.9
TASKS = 8
ROOT = Path(__file__).resolve().parent.parent
#: podman's exec sessions keep their conmon this long after the exec ends (--exit-delay)
EXEC_EXIT_DELAY = 300


class Tasks:
    """Starts task processes (``python -m benchmarks.soak --child``), one per task id."""

    def __init__(self, setup: soak.Setup) -> None:
        self.setup = setup
        self.next_id = 800_000
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))

    def start(self) -> subprocess.Popen[str]:
        self.next_id += 1
        argv = [sys.executable, "-m", "benchmarks.soak", "--child", self.setup.to_json()]
        return subprocess.Popen(
            [*argv, str(self.next_id)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def finish(proc: subprocess.Popen[str]) -> None:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"task process exited {proc.returncode}: {err[-2000:]}")

    def sequential(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            self.finish(self.start())
            times.append(time.perf_counter() - started)
        return times

    def concurrent(self, count: int) -> float:
        started = time.perf_counter()
        procs = [self.start() for _ in range(count)]
        for proc in procs:
            self.finish(proc)
        return time.perf_counter() - started


def run(args: object = None) -> list[dict[str, object]]:
    if not common.wants(args, "P5"):
        return []
    image = common.image(args)
    rounds = common.rounds(args, full=3, quick=1)
    socket = common.podman_socket()
    worker = common.worker_id("concurrency")
    manager = PodmanManager(socket, worker_id=worker)
    manager.ensure_image_available(image, pull_policy="never")
    base = Path(tempfile.mkdtemp(prefix="adj-bench-concurrency-"))
    base.chmod(0o755)
    since = time.time()
    setup, _top = soak.make_setup(base, image, socket, worker, manager)
    try:
        tasks = Tasks(setup)
        tasks.finish(tasks.start())  # the cold build: the cache is warm from here on
        service = probes.service_pid(socket)
        fds_before = probes.fd_count(service) if service else None
        busy0, total0 = probes.cpu_times()
        means, walls, ratios = [], [], []
        for index in range(rounds):
            order = ("sequential", "concurrent") if index % 2 == 0 else ("concurrent", "sequential")
            for side in order:
                if side == "sequential":
                    mean = statistics.mean(tasks.sequential(TASKS))
                else:
                    wall = tasks.concurrent(TASKS)
            means.append(mean)
            walls.append(wall)
            ratios.append(TASKS * mean / wall)
            print(
                f"  round {index + 1}: sequential mean {mean:.2f} s (bound {TASKS * mean:.1f} s), "
                f"{TASKS} at once {wall:.1f} s, ratio {ratios[-1]:.2f}",
                flush=True,
            )
        busy1, total1 = probes.cpu_times()
        fds_after = probes.fd_count(service) if service else None
        left = probes.worker_containers(worker)
        ours = probes.container_ids_of(worker, since)

        def our_conmons() -> list[probes.Conmon]:
            return [c for c in probes.conmons() if c.container_id in ours]

        at_end = our_conmons()
        monitors = [c for c in at_end if not c.exec_session]
        # exec sessions' conmons outlive their exec by podman's exit delay (not with --quick)
        wait = 0 if getattr(args, "quick", False) else EXEC_EXIT_DELAY + 30
        deadline = time.monotonic() + wait
        while our_conmons() and time.monotonic() < deadline:
            time.sleep(5)
        conmons = our_conmons() if wait else monitors
        if wait:
            conmons += [c for c in probes.stale_conmons(since) if c not in conmons]
        zombies = probes.persistent_zombies([os.getpid(), *([service] if service else [])])
        mounts = probes.orphan_mounts()
    finally:
        for key in {p.name.removesuffix(".lock") for p in setup.cache_dir.glob("*")}:
            for cached in manager.list_images({lb.CACHE_KEY: key}):
                manager.remove_image(str(cached["id"]))
        manager.reap({lb.WORKER: worker})
        shutil.rmtree(base, ignore_errors=True)
    ratio = statistics.median(ratios)
    leaks = len(left) + len(conmons) + len(zombies) + len(mounts)
    busy = 100.0 * (busy1 - busy0) / max(1, total1 - total0)
    detail = (
        f"{TASKS} warm buildArch processes at once {statistics.median(walls):.1f} s vs "
        f"{TASKS} x {statistics.median(means):.2f} s one at a time (median of {rounds} rounds; "
        f"{os.cpu_count()} CPUs, {busy:.0f} % busy); leaks: {len(left)} containers, "
        f"{len(conmons)} conmons ({len(at_end)} right after the last task, "
        f"{len(monitors)} of them container monitors), "
        f"{len(zombies)} zombies, {len(mounts)} orphan mounts; podman service fds "
        f"{fds_before} -> {fds_after}"
    )
    rows = [common.goal_row("P5 8 buildArch at once", ratio, ">=", GOAL, detail)]
    if leaks:
        rows[0]["met"] = False
        print(f"  leaks: {left} {conmons} {zombies} {mounts}")
    common.print_table("Concurrency (P5)", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
