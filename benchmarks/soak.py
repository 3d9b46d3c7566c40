"""The soak: many short tasks through the adapter, a fault every ``--fault-every`` tasks, and
what they leave behind (``make soak``; ``python -m benchmarks.soak --tasks N``).

Tasks cycle through four kinds, each a real task of the adapter on the podman service of
``KOJI_ADJUTANT_PODMAN_SOCKET``:

* ``exec``: ``PodmanManager.run`` of a short command in the task image, output in a FileSink;
* ``createrepo``: ``CreaterepoAdapter.run`` on a new repo of a tiny tag (3 builds);
* ``buildArch`` (twice per cycle of four): ``BuildArchAdapter.run`` of a tiny noarch package
  from a tag holding the dev distribution, buildroot cache warm (one cold build first, not
  counted), in kojid's default user namespace.

Every ``--fault-every`` tasks the next task is a fault instead, chosen at random (``--seed``)
from: ``sigterm`` / ``sigkill`` (a buildArch in a process of its own, as kojid runs a task,
signalled once its build container runs rpmbuild; SIGTERM goes through a handler that raises,
as kojid's does), ``service-restart`` (the podman service stopped and started while an exec
task streams output), ``failing-build`` (a buildArch whose %build exits 1), ``log-flood`` (64 MiB
of output into a FileSink capped at 1 MiB) and ``raising-sink`` (a LogSink that raises).
A container a SIGKILL or a lost service leaves is removed the way kojid's glue removes an
orphan at the next task start (``PodmanManager.reap`` by the task's labels) and counted.

Reported: tasks run and their outcomes, tasks that hung (no end within ``--hang-after``
seconds: interrupted and counted), containers of the soak's worker left at the end, conmon and
zombie processes left (of the service, of this process, of any conmon), mounts in podman's
storage belonging to no container, the podman service's open fds and this process's RSS and
threads at start, every ``--sample-every`` tasks and at the end. Exit status 1 if a leak, a
hang or an unexpected outcome was seen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from koji_adjutant import (
    AdjutantError,
    BuildArchAdapter,
    BuildArchResult,
    BuildError,
    ContainerSpec,
    CreaterepoAdapter,
    FileSink,
    PodmanManager,
    TaskContext,
)
from koji_adjutant import labels as lb
from koji_adjutant.config import USERNS_BASE
from koji_adjutant.devdistro import DevDistro, ensure_dev_distro

from benchmarks import common, probes

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
ARCH = "x86_64"
BUILD_TAG = "soak-build"
REPO_TAG = "soak-repo"
DIST = ".soak"
FAULTS = ("sigterm", "sigkill", "service-restart", "failing-build", "log-flood", "raising-sink")
KINDS = ("exec", "buildArch", "createrepo", "buildArch")
FLOOD_BYTES = 64 << 20
FLOOD_CAP = 1 << 20


def _spec(name: str, build: str) -> str:
    return textwrap.dedent(
        f"""\
        Name: {name}
        Version: 1.0
        Release: 1%{{?dist}}
        Summary: soak package
        License: MIT
        BuildArch: noarch

        %description
        A tiny package for the soak.

        %prep
        %setup -q -c -T
        echo {name} > marker.txt

        %build
        {build}

        %install
        install -D -m 0644 marker.txt %{{buildroot}}%{{_datadir}}/{name}/marker.txt

        %files
        %{{_datadir}}/{name}/
        """
    )


@dataclass
class Setup:
    """The Koji topdir, the build tag's repo, the SRPMs; shared with child processes."""

    base: Path
    image: str
    socket: str
    worker: str
    top: Path
    build_repo_id: int
    build_repo: Path
    srpm: Path
    failing_srpm: Path
    cache_dir: Path

    def to_json(self) -> str:
        return json.dumps({k: str(v) for k, v in vars(self).items()})

    @classmethod
    def from_json(cls, text: str) -> Setup:
        raw = json.loads(text)
        paths = {"base", "top", "build_repo", "srpm", "failing_srpm", "cache_dir"}
        values: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in raw.items()}
        values["build_repo_id"] = int(values["build_repo_id"])
        return cls(**values)

    def build_adapter(self, manager: PodmanManager) -> BuildArchAdapter:
        # bounds far above what exists: eviction is global over the host's cache images
        return BuildArchAdapter(
            manager,
            self.image,
            pull_policy="never",
            cache=True,
            cache_dir=self.cache_dir,
            cache_max_images=1_000_000,
            cache_max_bytes=1 << 62,
            userns_base=USERNS_BASE,
        )

    def build(
        self, adapter: BuildArchAdapter, task_id: int, *, failing: bool = False
    ) -> BuildArchResult:
        work = self.base / "tasks" / str(task_id)
        work.mkdir(parents=True)
        work.chmod(0o755)
        source = self.failing_srpm if failing else self.srpm
        srpm = work / source.name
        shutil.copy(source, srpm)
        config = {"id": 1, "name": BUILD_TAG, "arches": ARCH, "locked": False, "perm": None}
        config["extra"] = {"rpm.macro.dist": DIST}
        result = adapter.run(
            TaskContext(task_id, work),
            srpm,
            ARCH,
            repo=str(self.build_repo),
            repo_id=self.build_repo_id,
            tag_name=BUILD_TAG,
            build_config=config,
        )
        return result


def make_setup(
    base: Path, image: str, socket: str, worker: str, manager: PodmanManager
) -> tuple[Setup, Any]:
    """The Setup, and the KojiTopdir (tests/kojitopdir.py) holding its packages."""
    import kojitopdir as kt  # tests/ is on PYTHONPATH under `make soak`

    kt.ensure_rpm_tools()
    distro: DevDistro = ensure_dev_distro(manager, image, pull_policy="never")
    top = kt.KojiTopdir(base / "koji")
    top.add_build([distro.srpm, *distro.rpms])
    build_repo = top.make_repo(BUILD_TAG, 1, ARCH, groups=distro.groups)
    specs = base / "specs"
    specs.mkdir()
    (specs / "adj-soak.spec").write_text(_spec("adj-soak", "echo SOAK-BUILD"))
    (specs / "adj-soak-fail.spec").write_text(_spec("adj-soak-fail", "echo SOAK-FAIL; exit 1"))
    srpm = kt.build_srpm(specs / "adj-soak.spec", base / "srpms", defines={"dist": DIST})
    failing = kt.build_srpm(specs / "adj-soak-fail.spec", base / "srpms", defines={"dist": DIST})
    # the createrepo tag: three small builds, a new repo of them per task
    out = base / "repo-rpms"
    for spec in (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet"), kt.spec_path("adj-hello")):
        top.add_build(kt.build_package(spec, out, defines={"dist": ".el1"}).all)
    return Setup(
        base=base,
        image=image,
        socket=socket,
        worker=worker,
        top=top.root,
        build_repo_id=1,
        build_repo=build_repo.arch_dir,
        srpm=srpm,
        failing_srpm=failing,
        cache_dir=base / "cache",
    ), top


# --- the child: one buildArch in a process of its own ------------------------------------------


class _Terminated(Exception):
    """What kojid's SIGTERM handler raises (its ServerExit)."""


def child(setup_json: str, task_id: int) -> int:
    """Runs one buildArch; SIGTERM raises, as under kojid."""

    def on_term(signum: int, frame: object) -> None:
        raise _Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    setup = Setup.from_json(setup_json)
    manager = PodmanManager(setup.socket, worker_id=setup.worker)
    try:
        result = setup.build(setup.build_adapter(manager), task_id)
    except _Terminated:
        return 143
    rpms = [Path(p).name for p in result.rpms]
    if rpms != [f"adj-soak-1.0-1{DIST}.noarch.rpm"]:
        print(f"task {task_id}: unexpected RPMs {rpms}", file=sys.stderr)
        return 2
    return 0


# --- the soak -------------------------------------------------------------------------------


@dataclass
class Sample:
    tasks: int
    seconds: float
    service_pid: int | None
    service_fds: int | None
    rss_kib: int
    threads: int
    containers: int
    note: str = ""

    def line(self) -> str:
        return (
            f"{self.note + ', ' if self.note else ''}after {self.tasks:4d} tasks, "
            f"{self.seconds:6.0f} s: podman service (pid "
            f"{self.service_pid}) {self.service_fds} fds, RSS {self.rss_kib} KiB, "
            f"{self.threads} threads, {self.containers} containers of the worker"
        )


@dataclass
class Soak:
    setup: Setup
    #: the KojiTopdir (tests/kojitopdir.py) the createrepo tasks make repos in
    top: Any
    manager: PodmanManager
    args: argparse.Namespace
    started: float = field(default_factory=time.monotonic)
    task_id: int = 900_000
    repo_id: int = 100
    outcomes: Counter[str] = field(default_factory=Counter)
    durations: dict[str, list[float]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    reaped: int = 0
    samples: list[Sample] = field(default_factory=list)
    restarts: int = 0
    #: tasks finished
    done: int = 0

    def __post_init__(self) -> None:
        self.build_adapter = self.setup.build_adapter(self.manager)
        self.repo_adapter = CreaterepoAdapter(self.manager, self.setup.image, pull_policy="never")

    # -- bookkeeping

    def next_task(self) -> int:
        self.task_id += 1
        return self.task_id

    def sample(self, tasks: int, note: str = "") -> Sample:
        pid = probes.service_pid(self.setup.socket)
        sample = Sample(
            tasks=tasks,
            seconds=time.monotonic() - self.started,
            service_pid=pid,
            service_fds=probes.fd_count(pid) if pid else None,
            rss_kib=common.current_rss_kib(),
            threads=probes.thread_count(),
            containers=len(probes.worker_containers(self.setup.worker)),
            note=note,
        )
        self.samples.append(sample)
        print(sample.line(), flush=True)
        return sample

    @contextlib.contextmanager
    def watchdog(self, name: str) -> Iterator[None]:
        """Interrupts the task (SIGINT: kojid's handlers raise, block_on passes it on) if it
        runs longer than --hang-after seconds, and counts it as hung."""
        done = threading.Event()
        fired = []

        def watch() -> None:
            if not done.wait(self.args.hang_after):
                fired.append(True)
                os.kill(os.getpid(), signal.SIGINT)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield
        except KeyboardInterrupt:
            if not fired:
                raise
        finally:
            done.set()
            thread.join()
            if fired:
                self.hung.append(name)

    def reap_task(self, task_id: int) -> int:
        """Removes what a task left (as the glue does for an orphan at the next task)."""
        removed = self.manager.reap({lb.WORKER: self.setup.worker, lb.TASK: str(task_id)})
        self.reaped += removed
        return removed

    def record(self, kind: str, outcome: str, seconds: float, expected: bool) -> None:
        self.outcomes[f"{kind}: {outcome}"] += 1
        self.durations.setdefault(kind, []).append(seconds)
        if not expected:
            self.unexpected.append(f"task {self.task_id} {kind}: {outcome}")

    def left_of(self, task_id: int) -> list[dict[str, object]]:
        return self.manager.list_containers({lb.WORKER: self.setup.worker, lb.TASK: str(task_id)})

    # -- the tasks

    def task_exec(self, task_id: int) -> str:
        work = self.setup.base / "tasks" / str(task_id)
        work.mkdir(parents=True)
        sink = FileSink(work / "exec.log")
        spec = ContainerSpec(
            self.setup.image, ["sh", "-c", f"echo soak task {task_id}; id -u"], task_id=task_id
        )
        result = self.manager.run(spec, sink)
        sink.finish()
        text = (work / "exec.log").read_text()
        if result.exit_code != 0 or f"soak task {task_id}" not in text:
            return f"exit {result.exit_code}, log {text[:80]!r}"
        return "ok"

    def task_build(self, task_id: int) -> str:
        result = self.setup.build(self.build_adapter, task_id)
        rpms = [Path(p).name for p in result.rpms]
        if rpms != [f"adj-soak-1.0-1{DIST}.noarch.rpm"] or not result.cache_hit:
            return f"rpms {rpms}, cache_hit {result.cache_hit}"
        return "ok"

    def task_createrepo(self, task_id: int) -> str:
        self.repo_id += 1
        repo = self.top.make_repo(REPO_TAG, self.repo_id, ARCH, with_repodata=False)
        work = self.setup.base / "tasks" / str(task_id)
        work.mkdir(parents=True)
        result = self.repo_adapter.run(TaskContext(task_id, work), repo_dir=repo.arch_dir)
        if "repomd.xml" not in result.files:
            return f"files {result.files}"
        shutil.rmtree(repo.repo_dir, ignore_errors=True)
        return "ok"

    # -- the faults

    def fault_signal(self, task_id: int, signum: int) -> tuple[str, bool]:
        """A buildArch in a child process, signalled once rpmbuild runs in its container."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.soak",
                "--child",
                self.setup.to_json(),
                str(task_id),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        state = self.setup.base / "tasks" / str(task_id) / "result" / "state.log"
        deadline = time.monotonic() + self.args.hang_after
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and "Start: rebuild SRPM" in state.read_text(errors="replace"):
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            return f"ended before the signal (exit {proc.returncode}): {err[-500:]}", False
        proc.send_signal(signum)
        try:
            proc.communicate(timeout=self.args.hang_after)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.hung.append(f"task {task_id} after {signal.Signals(signum).name}")
            return "hung after the signal", False
        left = len(self.left_of(task_id))
        if signum == signal.SIGTERM:
            # the handler raised inside block_on: the task removed its containers itself
            ok = proc.returncode == 143 and left == 0
            return f"exit {proc.returncode}, {left} containers left", ok
        removed = self.reap_task(task_id)
        ok = proc.returncode == -signal.SIGKILL and not self.left_of(task_id)
        return f"killed, {left} containers left, {removed} reaped", ok

    def restart_service(self) -> None:
        self.sample(self.done, "before a service restart")
        env = dict(os.environ, BUILD_DIR=str(Path(self.setup.socket).parent))
        for action in ("stop", "start"):
            subprocess.run(
                [str(ROOT / "scripts" / "podman-service.sh"), action],
                env=env,
                check=True,
                capture_output=True,
            )
        self.restarts += 1

    def fault_service_restart(self, task_id: int) -> tuple[str, bool]:
        spec = ContainerSpec(
            self.setup.image,
            ["sh", "-c", "for i in $(seq 40); do echo tick $i; sleep 0.1; done"],
            task_id=task_id,
        )
        restarter = threading.Timer(1.0, self.restart_service)
        restarter.start()
        try:
            outcome = f"exit {self.manager.run(spec, common.CountingSink()).exit_code}"
        except AdjutantError as exc:
            outcome = f"{type(exc).__name__}"
        finally:
            restarter.join()
        for _ in range(100):
            with contextlib.suppress(AdjutantError):
                self.manager.ping()
                break
            time.sleep(0.1)
        removed = self.reap_task(task_id)
        return f"{outcome}, {removed} reaped", not self.left_of(task_id)

    def fault_failing_build(self, task_id: int) -> tuple[str, bool]:
        try:
            self.setup.build(self.build_adapter, task_id, failing=True)
        except BuildError as exc:
            left = len(self.left_of(task_id))
            return f"BuildError, {left} containers left", left == 0 and "exit" in str(exc)
        return "succeeded", False

    def fault_log_flood(self, task_id: int) -> tuple[str, bool]:
        work = self.setup.base / "tasks" / str(task_id)
        work.mkdir(parents=True)
        sink = FileSink(work / "flood.log", cap_bytes=FLOOD_CAP)
        spec = ContainerSpec(
            self.setup.image,
            ["sh", "-c", f"yes 'soak flood line' | head -c {FLOOD_BYTES}"],
            task_id=task_id,
        )
        code = self.manager.run(spec, sink).exit_code
        sink.finish()
        size = (work / "flood.log").stat().st_size
        left = len(self.left_of(task_id))
        # the cap plus the sink's own note that it dropped the rest
        return f"exit {code}, log {size} bytes", code == 0 and size <= FLOOD_CAP + 4096 and not left

    def fault_raising_sink(self, task_id: int) -> tuple[str, bool]:
        class Raising:
            def write_stdout(self, data: bytes) -> None:
                raise RuntimeError("soak: the sink broke")

            def write_stderr(self, data: bytes) -> None:
                raise RuntimeError("soak: the sink broke")

        spec = ContainerSpec(
            self.setup.image, ["sh", "-c", "yes soak | head -c 1000000"], task_id=task_id
        )
        try:
            self.manager.run(spec, Raising())
        except Exception as exc:  # the sink's own error or LogSinkError, both name it
            left = len(self.left_of(task_id))
            return f"{type(exc).__name__}, {left} containers left", left == 0
        return "no error", False

    def run_one(self, kind: str, fault: bool) -> None:
        task_id = self.next_task()
        started = time.monotonic()
        expected = True
        with self.watchdog(f"task {task_id} {kind}"):
            try:
                if kind == "exec":
                    outcome = self.task_exec(task_id)
                elif kind == "buildArch":
                    outcome = self.task_build(task_id)
                elif kind == "createrepo":
                    outcome = self.task_createrepo(task_id)
                elif kind == "sigterm":
                    outcome, expected = self.fault_signal(task_id, signal.SIGTERM)
                elif kind == "sigkill":
                    outcome, expected = self.fault_signal(task_id, signal.SIGKILL)
                elif kind == "service-restart":
                    outcome, expected = self.fault_service_restart(task_id)
                elif kind == "failing-build":
                    outcome, expected = self.fault_failing_build(task_id)
                elif kind == "log-flood":
                    outcome, expected = self.fault_log_flood(task_id)
                elif kind == "raising-sink":
                    outcome, expected = self.fault_raising_sink(task_id)
                else:
                    raise ValueError(kind)
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:200]}"
        if not fault and outcome != "ok":
            expected = False
        seconds = time.monotonic() - started
        self.record(("fault " if fault else "") + kind, outcome.split(",")[0], seconds, expected)
        if not expected or self.args.verbose:
            print(f"task {task_id} {kind}: {outcome} ({seconds:.1f} s)", flush=True)
        shutil.rmtree(self.setup.base / "tasks" / str(task_id), ignore_errors=True)


def plan(count: int, every: int, seed: int) -> list[tuple[str, bool]]:
    """The soak's tasks in order: (kind, is a fault). Every ``every``-th task is a fault, the
    faults drawn in shuffled rounds of all of them (so each kind comes up evenly)."""
    rng = random.Random(seed)
    faults: list[str] = []
    tasks = []
    for index in range(1, count + 1):
        if every and index % every == 0:
            if not faults:
                faults = list(FAULTS)
                rng.shuffle(faults)
            tasks.append((faults.pop(), True))
        else:
            tasks.append((KINDS[index % len(KINDS)], False))
    return tasks


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--tasks", type=int, default=500, help="tasks to run (default 500)")
    parser.add_argument("--fault-every", type=int, default=25, help="default 25; 0: none")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--hang-after", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument(
        "--settle",
        type=float,
        default=330.0,
        help="seconds to wait for exec sessions' conmons to exit (podman's exit delay is 300; "
        "0: count only container monitors, for a smoke run)",
    )
    parser.add_argument("--image", default=common.IMAGE)
    parser.add_argument("--verbose", action="store_true", help="print every task")
    parser.add_argument("--child", nargs=2, metavar=("SETUP", "TASK_ID"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _settled(check: Callable[[], list[T]], seconds: float) -> list[T]:
    """``check()`` until it finds nothing or ``seconds`` passed; what it found last."""
    deadline = time.monotonic() + seconds
    found = check()
    while found and time.monotonic() < deadline:
        time.sleep(5)
        found = check()
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]))
    socket = common.podman_socket()
    worker = common.worker_id("soak")
    manager = PodmanManager(socket, worker_id=worker)
    manager.ensure_image_available(args.image, pull_policy="never")
    base = Path(tempfile.mkdtemp(prefix="adj-soak-"))
    base.chmod(0o755)
    since = time.time()
    tasks = plan(args.tasks, args.fault_every, args.seed)
    print(
        f"soak: {len(tasks)} tasks ({sum(f for _, f in tasks)} faults, seed {args.seed}), "
        f"worker {worker}, {base}; load {probes.load_average()}",
        flush=True,
    )
    setup, top = make_setup(base, args.image, socket, worker, manager)
    soak = Soak(setup, top, manager, args)
    done = 0
    first: Sample | None = None
    try:
        # the cold build (not counted) that makes the cache warm for every later buildArch
        setup.build(soak.build_adapter, soak.next_task())
        first = soak.sample(0)
        for kind, fault in tasks:
            soak.run_one(kind, fault)
            done = soak.done = done + 1
            if done % args.sample_every == 0:
                soak.sample(done)
    except KeyboardInterrupt:
        print(f"soak interrupted after {done} tasks", flush=True)
    finally:
        last = None
        if soak.samples:
            last = soak.samples[-1] if soak.samples[-1].tasks == done else soak.sample(done)
        elapsed = time.monotonic() - soak.started
        ours = probes.container_ids_of(worker, since)
        left = probes.worker_containers(worker)

        def our_conmons() -> list[probes.Conmon]:
            return [c for c in probes.conmons() if c.container_id in ours]

        def stale_conmons() -> list[probes.Conmon]:
            return list(probes.stale_conmons(since))

        def our_zombies() -> list[tuple[int, int, str]]:
            pid = probes.service_pid(socket)
            return list(probes.persistent_zombies([os.getpid(), *([pid] if pid else [])]))

        # exec sessions' conmons wait podman's exit delay (300 s) after the exec ends
        at_end = our_conmons()
        conmons_at_end = len(at_end)
        stale: list[probes.Conmon] = []
        if args.settle:
            conmons = _settled(our_conmons, args.settle)
            stale = _settled(stale_conmons, 30)
        else:  # a smoke run: only container monitors count (exec sessions' linger 300 s)
            conmons = [c for c in at_end if not c.exec_session]
        zombies = _settled(our_zombies, 30)
        mounts = probes.orphan_mounts()
        kept = probes.kept_images(worker)
        removed_images = _remove_cache_images(manager, setup.cache_dir)
        if left:
            manager.reap({lb.WORKER: worker})
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nsoak: {done} of {len(tasks)} tasks in {elapsed:.0f} s; load {probes.load_average()}")
    for name, count in sorted(soak.outcomes.items()):
        print(f"  {count:4d}  {name}")
    for kind, times in sorted(soak.durations.items()):
        print(f"  {kind}: mean {sum(times) / len(times):.1f} s, max {max(times):.1f} s")
    print(f"containers of the soak's worker in podman's event log: {len(ours)}")
    print(f"containers a fault left, removed by the reaper: {soak.reaped}")
    print(f"podman service restarts: {soak.restarts}")
    print(f"leaked containers at the end: {len(left)} {left}")
    print(f"kept roots left: {len(kept)}")
    print(
        f"conmon processes of the soak's containers: {conmons_at_end} at the end, "
        + (
            f"{len(conmons)} left after {args.settle:.0f} s (podman's exec exit delay is 300 s) "
            if args.settle
            else f"{len(conmons)} of them container monitors (--settle 0) "
        )
        + f"{conmons}"
    )
    print(
        f"conmon processes started during the soak whose container is gone (anyone's): "
        f"{len(stale)} {stale}"
    )
    print(f"zombie processes left: {len(zombies)} {zombies}")
    print(f"mounts in podman's storage of no container: {len(mounts)} {mounts}")
    print(f"tasks that hung: {len(soak.hung)} {soak.hung}")
    print(f"unexpected outcomes: {len(soak.unexpected)}")
    for line in soak.unexpected:
        print(f"  {line}")
    if first is not None and last is not None:
        print(
            f"podman service fds: start {first.service_fds} (pid {first.service_pid}), "
            f"end {last.service_fds} (pid {last.service_pid}); each sample:"
        )
        for sample in soak.samples:
            print(f"  {sample.line()}")
        print(
            f"RSS of this process: start {first.rss_kib} KiB, end {last.rss_kib} KiB "
            f"({last.rss_kib - first.rss_kib:+d} KiB); threads {first.threads} -> {last.threads}"
        )
    print(f"cache images of the run removed: {removed_images}")
    bad = left or conmons or stale or zombies or mounts or kept or soak.hung or soak.unexpected
    return 1 if bad else 0


def _remove_cache_images(manager: PodmanManager, cache_dir: Path) -> int:
    """Removes the cache images whose keys the soak's builds recorded in its cache dir."""
    removed = 0
    names = [p.name for p in cache_dir.iterdir()] if cache_dir.is_dir() else []
    keys = {name.removesuffix(".lock") for name in names}
    for key in keys:
        for image in manager.list_images({lb.CACHE_KEY: key}):
            removed += bool(manager.remove_image(str(image["id"])))
    return removed


if __name__ == "__main__":
    sys.exit(main())
