"""P3: buildArch buildroot init, cold versus warm (cached), and the adapter's fixed overhead.

Inputs are real: tests/kojitopdir.py builds debian-buildtools and adj-libgreet with rpmbuild
and writes a Koji-layout repo of them (as the hub's repo_init and kojid's createrepo would);
the task is ``BuildArchAdapter.run`` of adj-greeter (a C package with a BuildRequires from
that repo) with the buildroot cache on.

Each round runs a cold build, then a warm build of the same task config, next to bare
``podman run --rm IMAGE true`` runs (one before the cold build, one after the warm one):

* cold: a fresh ``cache_dir`` and a new random ``rpm.macro.adj_bench_nonce`` in the tag's
  extra settings, so its cache key has never been seen and init really runs (checked:
  ``cache_hit`` is False), then the buildroot is committed as a cache image.
* warm: the same config again, so it starts from that image (checked: ``cache_hit`` True).

Init time comes from the task's own state.log: from the "Creating container" line to the
first "Start: unpack SRPM" line. Cold, that is container create + start, the image's package
list, the config files, the init steps (create build directories, install @build, ...), the
cache commit and the buildroot package list; warm, create + start and the package list.
Ratio cold/warm, median of per-round ratios. Goal >= 10.

Fixed overhead of a warm build: its wall time (around ``BuildArchAdapter.run``) minus the
time spent inside its steps (each "Start:"/"Finish:" pair in state.log, 1 ms timestamps):
what the adapter adds around the commands it runs (image and cache look-ups, container
create/start/remove, config copies, logs). Compared with a bare ``podman run --rm true``
from the same rounds; goal <= 1.1 (the init work itself is the cold/warm row, not this).

Cache images this benchmark commits are removed at the end; no container is left behind.
Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock PYTHONPATH=tests
.venv/bin/python -m benchmarks.bench_buildarch [--quick]``.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from koji_adjutant import BuildArchAdapter, BuildArchResult, PodmanManager, TaskContext

from benchmarks import common

__all__ = ["BENCHMARKS", "StateLog", "run"]

BENCHMARKS = ("P3",)
INIT_GOAL = 10.0
OVERHEAD_GOAL = 1.1
ARCH = "x86_64"
TAG = "adj-bench"
REPO_ID = 10
PACKAGE = "adj-greeter"
EXPECTED_RPMS = 3  # adj-greeter, -tools, -doc

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (.*)$")
_FINISH = re.compile(r"^Finish: (.+) \(exit status -?\d+, [\d.]+ s\)$")
_SAVED = re.compile(r"^Saved buildroot cache image ([0-9a-f]{64}) ")


@dataclass(frozen=True)
class StateLog:
    """A buildArch task's state.log: ``<UTC timestamp> <message>`` lines."""

    entries: tuple[tuple[dt.datetime, str], ...]

    @classmethod
    def read(cls, path: Path) -> StateLog:
        entries = []
        for line in path.read_text().splitlines():
            match = _LINE.match(line)
            if match:
                stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                entries.append((stamp, match.group(2)))
        return cls(tuple(entries))

    def first(self, prefix: str) -> dt.datetime:
        for stamp, message in self.entries:
            if message.startswith(prefix):
                return stamp
        raise ValueError(f"state.log has no line starting {prefix!r}")

    def init_seconds(self) -> float:
        """From "Creating container" to the first "Start: unpack SRPM"."""
        return (self.first("Start: unpack SRPM") - self.first("Creating container")).total_seconds()

    def step_seconds(self) -> float:
        """Time inside steps: the sum over "Start: X" ... "Finish: X (...)" pairs."""
        total = 0.0
        started: tuple[str, dt.datetime] | None = None
        for stamp, message in self.entries:
            if message.startswith("Start: "):
                started = (message.removeprefix("Start: "), stamp)
                continue
            finish = _FINISH.match(message)
            if finish and started and started[0] == finish.group(1):
                total += (stamp - started[1]).total_seconds()
                started = None
        return total

    def steps(self) -> int:
        return sum(1 for _, message in self.entries if _FINISH.match(message))

    def cache_commit_seconds(self) -> float | None:
        """From the last step before "Saved buildroot cache image" to that line."""
        previous = None
        for stamp, message in self.entries:
            if _SAVED.match(message):
                return None if previous is None else (stamp - previous).total_seconds()
            if _FINISH.match(message):
                previous = stamp
        return None

    def saved_images(self) -> list[str]:
        return [m.group(1) for _, msg in self.entries if (m := _SAVED.match(msg))]


@dataclass(frozen=True)
class Build:
    wall: float
    log: StateLog
    cache_hit: bool
    #: Epoch seconds just before and after ``BuildArchAdapter.run``.
    called: float
    returned: float

    @property
    def init(self) -> float:
        return self.log.init_seconds()

    @property
    def overhead(self) -> float:
        return self.wall - self.log.step_seconds()

    def overhead_parts(self) -> dict[str, float]:
        """Where the overhead goes, from state.log's timestamps (ms resolution):
        before the container (SRPM and image checks, cache look-up), create + start,
        between steps (copies, log writes), remove, and back to the caller."""

        def epoch(stamp: dt.datetime) -> float:
            return stamp.replace(tzinfo=dt.timezone.utc).timestamp()

        entries = self.log.entries
        creating = self.log.first("Creating container")
        first_step = self.log.first("Start: ")
        finished = self.log.first("Finished:")
        gaps = 0.0
        last_finish = None
        for stamp, message in entries:
            if message.startswith("Start: ") and last_finish is not None:
                gaps += (stamp - last_finish).total_seconds()
            if _FINISH.match(message):
                last_finish = stamp
        return {
            "before": epoch(creating) - self.called,
            "create+start": (first_step - creating).total_seconds(),
            "between": gaps,
            "remove": (finished - last_finish).total_seconds() if last_finish else 0.0,
            "return": self.returned - epoch(finished),
        }


#: Packages in the benchmark's build group besides the toolchain provider.
FILLER = 250


def _filler_spec(count: int) -> str:
    """One SRPM with ``count`` tiny noarch subpackages (one file each)."""
    head = (
        "Name: adjbench-filler\nVersion: 1.0\nRelease: 1\nSummary: buildroot filler\n"
        "License: MIT\nBuildArch: noarch\n%description\nfiller\n"
    )
    parts = []
    install = ["%install", "mkdir -p %{buildroot}/usr/share/adjbench-filler"]
    for i in range(count):
        name = f"p{i:03d}"
        parts.append(f"%package {name}\nSummary: filler {name}\n%description {name}\nfiller\n")
        install.append(f"echo {name} > %{{buildroot}}/usr/share/adjbench-filler/{name}")
        parts.append(f"%files {name}\n/usr/share/adjbench-filler/{name}\n")
    return head + "".join(parts[0::2]) + "\n".join(install) + "\n" + "".join(parts[1::2])


class Koji:
    """The Koji topdir and SRPM of the benchmark, made once in a temp dir."""

    def __init__(self, base: Path) -> None:
        import kojitopdir as kt  # tests/ is on PYTHONPATH under `make bench`

        kt.ensure_rpm_tools()
        self.top = kt.KojiTopdir(base / "koji")
        for spec in (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet")):
            self.top.add_build(kt.build_package(spec, base / "rpms", defines={"dist": ".el1"}).all)
        # A build group the size of a minimal Fedora buildroot (a few hundred packages): the
        # toolchain provider plus FILLER small noarch packages, so init does real dnf work.
        filler_spec = base / "adjbench-filler.spec"
        filler_spec.write_text(_filler_spec(FILLER))
        self.top.add_build(kt.build_package(filler_spec, base / "rpms").all)
        group = ["debian-buildtools", *(f"adjbench-filler-p{i:03d}" for i in range(FILLER))]
        self.repo = self.top.make_repo(
            TAG, REPO_ID, ARCH, groups={"build": group, "srpm-build": group}
        )
        self.srpm = kt.build_srpm(kt.spec_path(PACKAGE), base / "srpms")


class Runner:
    """Runs builds in fresh task dirs and remembers every cache image they commit."""

    def __init__(self, base: Path, koji: Koji, manager: PodmanManager, image: str) -> None:
        self.base = base
        self.koji = koji
        # Bounds far above what this run creates: eviction is global over all cache images
        # on the host, and a benchmark must not evict anyone else's.
        self.adapter = BuildArchAdapter(
            manager,
            image,
            cache=True,
            cache_dir=base / "cache",
            cache_max_images=1_000_000,
            cache_max_bytes=1 << 62,
        )
        self.task_id = 70_000
        self.saved: list[str] = []

    @staticmethod
    def config(nonce: str) -> dict[str, object]:
        return {
            "id": 1,
            "name": TAG,
            "arches": ARCH,
            "locked": False,
            "perm": None,
            "extra": {"rpm.macro.dist": ".bench", "rpm.macro.adj_bench_nonce": nonce},
        }

    def build(self, config: dict[str, object]) -> Build:
        self.task_id += 1
        work = self.base / f"task-{self.task_id}"
        work.mkdir()
        work.chmod(0o755)
        srpm = work / self.koji.srpm.name
        shutil.copy(self.koji.srpm, srpm)
        ctx = TaskContext(self.task_id, work)
        called = time.time()
        started = time.perf_counter()
        try:
            result: BuildArchResult = self.adapter.run(
                ctx,
                srpm,
                ARCH,
                repo=str(self.koji.repo.arch_dir),
                repo_id=REPO_ID,
                tag_name=TAG,
                build_config=config,
            )
            wall = time.perf_counter() - started
            returned = time.time()
        finally:
            state = work / "result" / "state.log"
            if state.exists():
                self.saved += StateLog.read(state).saved_images()
        if len(result.rpms) != EXPECTED_RPMS:
            raise AssertionError(f"expected {EXPECTED_RPMS} RPMs, got {result.rpms}")
        return Build(
            wall=wall,
            log=StateLog.read(Path(result.result_dir) / "state.log"),
            cache_hit=result.cache_hit,
            called=called,
            returned=returned,
        )

    def remove_images(self) -> list[str]:
        """Removes the cache images this run committed; returns any that remain."""
        for image_id in self.saved:
            common.podman("rmi", "-f", image_id, check=False)
        present = set(
            common.podman(
                "images", "-q", "--no-trunc", "--filter", f"label={common.LABEL_BUILDROOT}=1"
            ).stdout.split()
        )
        return [i for i in self.saved if f"sha256:{i}" in present or i in present]


def _cli_true(image: str, worker: str) -> float:
    run_true = common.cli_run(image, worker, ["true"])
    started = time.perf_counter()
    run_true()
    return time.perf_counter() - started


def _median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def _measure(runner: Runner, image: str, worker: str, n: int) -> list[dict[str, object]]:
    colds: list[Build] = []
    warms: list[Build] = []
    cli: list[float] = []  # per round: mean of the CLI run before the cold and after the warm
    _cli_true(image, worker)  # warm-up: first CLI use after setup
    for index in range(n):
        before = _cli_true(image, worker)
        nonce = uuid.uuid4().hex
        cold = runner.build(Runner.config(nonce))
        warm = runner.build(Runner.config(nonce))
        after = _cli_true(image, worker)
        if cold.cache_hit or not warm.cache_hit:
            raise AssertionError(
                f"round {index}: cache_hit cold={cold.cache_hit} warm={warm.cache_hit}"
            )
        colds.append(cold)
        warms.append(warm)
        cli.append((before + after) / 2)
        print(
            f"  P3 round {index + 1}: cold wall {cold.wall:.2f} s, init {cold.init:.3f} s | "
            f"warm wall {warm.wall:.2f} s, init {warm.init:.3f} s, steps "
            f"{warm.log.step_seconds():.3f} s, overhead {warm.overhead:.3f} s | "
            f"CLI true {before:.3f}/{after:.3f} s"
        )
        parts = warm.overhead_parts()
        print(
            "           warm overhead parts (ms): "
            + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in parts.items())
        )

    med = statistics.median
    init_ratio = _median_ratio([b.init for b in colds], [b.init for b in warms])
    commits = [c for b in colds if (c := b.log.cache_commit_seconds()) is not None]
    cold_steps = [
        sum((stamp - start).total_seconds() for start, stamp in _init_step_spans(b.log))
        for b in colds
    ]
    init_detail = (
        f"median of {n} rounds: init cold {med(b.init for b in colds):.3f} s "
        f"(init steps {med(cold_steps):.3f} s, cache commit "
        f"{med(commits) if commits else float('nan'):.3f} s), "
        f"warm {med(b.init for b in warms):.3f} s; whole build cold "
        f"{med(b.wall for b in colds):.2f} s, warm {med(b.wall for b in warms):.2f} s"
    )
    overhead_ratio = _median_ratio([b.overhead for b in warms], cli)
    parts = {k: med(b.overhead_parts()[k] for b in warms) for k in warms[0].overhead_parts()}
    overhead_detail = (
        f"median of {n} rounds: warm build {med(b.wall for b in warms):.2f} s wall - "
        f"{med(b.log.step_seconds() for b in warms):.2f} s in {warms[0].log.steps()} steps = "
        f"{med(b.overhead for b in warms) * 1e3:.0f} ms overhead ("
        + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in parts.items())
        + f" ms); podman run --rm true {med(cli) * 1e3:.0f} ms"
    )
    return [
        common.goal_row(
            "P3 buildroot init: cold / warm (cached)", init_ratio, ">=", INIT_GOAL, init_detail
        ),
        common.goal_row(
            "P3 warm build overhead / podman run `true`",
            overhead_ratio,
            "<=",
            OVERHEAD_GOAL,
            overhead_detail,
        ),
    ]


def _init_step_spans(log: StateLog) -> list[tuple[dt.datetime, dt.datetime]]:
    """Start/Finish pairs before the first "Start: unpack SRPM" (the init steps and queries)."""
    spans = []
    started: tuple[str, dt.datetime] | None = None
    for stamp, message in log.entries:
        if message == "Start: unpack SRPM":
            break
        if message.startswith("Start: "):
            started = (message.removeprefix("Start: "), stamp)
        elif (finish := _FINISH.match(message)) and started and started[0] == finish.group(1):
            spans.append((started[1], stamp))
            started = None
    return spans


def run(args: object = None) -> list[dict[str, object]]:
    """The P3 rows; prints their table."""
    if not common.wants(args, "P3"):
        return []
    image = common.image(args)
    n = common.rounds(args, full=3, quick=1)
    worker = common.worker_id("buildarch")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    manager.ensure_image_available(image, pull_policy="never")
    base = Path(tempfile.mkdtemp(prefix="adj-bench-buildarch-"))
    base.chmod(0o755)
    runner: Runner | None = None
    try:
        started = time.perf_counter()
        koji = Koji(base)
        print(
            f"P3: Koji repo and {PACKAGE} SRPM built in {time.perf_counter() - started:.1f} s; "
            f"{n} cold/warm rounds"
        )
        runner = Runner(base, koji, manager, image)
        rows = _measure(runner, image, worker, n)
    except BaseException:
        manager.reap({common.LABEL_WORKER: worker})  # after a failure; the error says why
        raise
    finally:
        left = runner.remove_images() if runner else []
        shutil.rmtree(base, ignore_errors=True)
    if left:
        raise RuntimeError(f"cache images not removed: {left}")
    common.ensure_no_containers(worker)
    print(f"  P3 removed {len(runner.saved)} cache images created by this run")
    common.print_table("buildArch (P3)", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
