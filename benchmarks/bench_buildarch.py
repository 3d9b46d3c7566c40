"""P3 and P6: buildArch in buildroots installed from the tag alone (mock's bootstrap model).

Inputs are real: the tag's repo holds the dev distribution (the task image's own files as
RPMs, ``koji_adjutant.devdistro``) and FILLER small noarch packages built here with rpmbuild
(tests/kojitopdir.py writes it as the hub's repo_init and kojid's createrepo would); its
``build`` group is the dev distribution's five packages plus the fillers, 305 packages in all,
the size of a minimal Fedora buildroot. The task is ``BuildArchAdapter.run`` of the bundled
sample, koji-adjutant-hello (C, ``BuildRequires: gcc`` which the build group meets, so a warm
build needs no bootstrap container), with the buildroot cache on and the user namespace kojid
gives buildArch containers by default (``userns_base`` 1000000000: a fresh root is then
cached as a tar read through the bootstrap container and imported, not committed).

Setup (not measured, also the warm-up): one cold build from repo 10, whose cache image P6
uses.

P3, each round: ``podman run --rm IMAGE true``, a cold build, a warm build of the same task,
``podman run --rm IMAGE true`` again; ``sync`` (not timed) before the round and between the
cold and the warm build, so that neither pays for writing out the previous cache image.

* Cold: a new repo of the tag (new repo id, new repomd.xml), so the cache key has never been
  seen (checked: ``cache_hit`` False, a bootstrap container was created, the root was stored);
  warm: the same repo again (checked: ``cache_hit`` True, no bootstrap container).
* Init time, from the task's state.log: from "Creating build container" to the first
  "Start: rebuild SRPM" (a warm build, whose container starts inside that step with the build
  as its main process: to podman's start event of the container). Ratio cold / warm, median
  of per-round ratios. Goal >= 20.
  The cold init is also split into its parts, dnf's among them from the timestamps of dnf's
  own output lines in container.log during the ``install @build`` step.
* Fixed overhead of a warm build: its wall time around ``BuildArchAdapter.run`` minus the time
  of its commands (a step exec's "Start:"/"Finish:" span of state.log; for the build as the
  build container's main process, podman's start event of its container to state.log's line
  saying the command ended), compared with the mean of the round's two
  ``podman run --rm true``. Goal <= 1.1.

P6, interleaved rounds (order rotating, one warm-up round): a whole warm buildArch of the
sample versus ``podman run --rm BUILDROOT rpmbuild --rebuild SRPM``, where BUILDROOT is the
cache image the warm builds start from (same toolchain, same rpmdb): as uid 1000:135 (the build
user) in the same user namespace mapping, HOME=/builddir, no network, no capabilities,
no-new-privileges, the adapter's rlimits, the SRPM bind-mounted read-only and ``_topdir`` a
fresh host temp dir bind-mounted into the container's /tmp (so both sides leave the RPMs on
the host). A ``podman run --rm BUILDROOT
true`` with the same options runs in the same rounds (diagnostic: the baseline's container
cost). Ratio adapter / baseline, median of per-round ratios. Goal <= 1.10.

Cache images this module stores are removed at the end; no container is left behind.
Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock PYTHONPATH=tests
.venv/bin/python -m benchmarks.bench_buildarch [--quick]``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from koji_adjutant import BuildArchAdapter, BuildArchResult, PodmanManager, TaskContext
from koji_adjutant.config import USERNS_BASE
from koji_adjutant.devdistro import DevDistro, ensure_dev_distro

from benchmarks import common

__all__ = ["BENCHMARKS", "ContainerLog", "StateLog", "run"]

BENCHMARKS = ("P3", "P6")
INIT_GOAL = 20.0
OVERHEAD_GOAL = 1.1
P6_GOAL = 1.10
ARCH = "x86_64"
TAG = "adj-bench"
FIRST_REPO_ID = 10
DIST = ".bench"
EXPECTED_RPMS = 2  # koji-adjutant-hello, -doc
#: Small noarch packages in the build group besides the dev distribution's.
FILLER = 300
MIN_GROUP = 300
#: The build user of the buildroot (src/core/buildroot/mod.rs BUILD_UID / BUILD_GID).
BUILD_UID, BUILD_GID = 1000, 135
#: USERNS_BASE: the user namespace kojid gives buildArch containers by default (adjutant.conf
#: ``userns_base``): container ids 0-65535 are host ids from this base. Both sides use it.
USERNS_SIZE = 65536
EXPORT_STEP = "export the root for the cache"
#: The warm build's one step: the SRPM rebuilt, then built in the same exec.
BUILD_STEP = "rebuild SRPM and build"
#: state.log's line when a warm build's command, the build container's main process, ended.
LEAD_ENDED = "The build container's command ended"
KEY_LABEL = "io.koji.adjutant.buildroot.key"

_STAMP = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z"
_LINE = re.compile(rf"^{_STAMP} (.*)$")
_CONTAINER_LINE = re.compile(rf"^{_STAMP} (?:stdout|stderr) \| ?(.*)$")
_FINISH = re.compile(r"^Finish: (.+?) \(exit status -?\d+, [\d.]+ s\)(?:: .*)?$")
_STORED = re.compile(
    r"^Finish: store buildroot in cache \(exit status 0, [\d.]+ s\): image "
    r"(?:sha256:)?([0-9a-f]{64})$"
)
_CREATED_FROM = re.compile(r"^Creating build container from (?:sha256:)?([0-9a-f]{64}) ")
_FRESH_KEY = re.compile(
    r"^Creating build container from .*\(fresh buildroot, cache key ([0-9a-f]{64})\)$"
)
_DNF_COUNT = re.compile(r"^Install\s+(\d+) Packages?\s*$")


def _parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")


def _epoch(stamp: dt.datetime) -> float:
    return stamp.replace(tzinfo=dt.timezone.utc).timestamp()


@dataclass(frozen=True)
class Span:
    name: str
    start: dt.datetime
    finish: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.finish - self.start).total_seconds()


@dataclass(frozen=True)
class StateLog:
    """A buildArch task's state.log: ``<UTC timestamp> <message>`` lines (1 ms resolution)."""

    entries: tuple[tuple[dt.datetime, str], ...]

    @classmethod
    def read(cls, path: Path) -> StateLog:
        entries = []
        for line in path.read_text().splitlines():
            match = _LINE.match(line)
            if match:
                entries.append((_parse_stamp(match.group(1)), match.group(2)))
        return cls(tuple(entries))

    def first(self, prefix: str) -> dt.datetime:
        for stamp, message in self.entries:
            if message.startswith(prefix):
                return stamp
        raise ValueError(f"state.log has no line starting {prefix!r}")

    def has(self, prefix: str) -> bool:
        return any(message.startswith(prefix) for _, message in self.entries)

    def spans(self, *, nested: bool = False) -> list[Span]:
        """The steps: a "Start: X" line and its "Finish: X (...)" line, in order of start.

        A step may run inside another (the cache store's root export); those are left out
        unless ``nested``, so the spans returned by default never overlap."""
        spans: list[tuple[int, Span]] = []
        open_steps: list[tuple[str, dt.datetime]] = []
        for stamp, message in self.entries:
            if message.startswith("Start: "):
                open_steps.append((message.removeprefix("Start: "), stamp))
            elif (finish := _FINISH.match(message)) and open_steps:
                name = finish.group(1)
                for depth in range(len(open_steps) - 1, -1, -1):
                    if open_steps[depth][0] == name:
                        spans.append((depth, Span(name, open_steps[depth][1], stamp)))
                        del open_steps[depth:]
                        break
        spans.sort(key=lambda item: item[1].start)
        return [span for depth, span in spans if nested or depth == 0]

    def span(self, name: str) -> Span:
        for span in self.spans(nested=True):
            if span.name == name:
                return span
        raise ValueError(f"state.log has no step {name!r}")

    def init_seconds(self) -> float:
        """From "Creating build container" to the first "Start: rebuild SRPM"."""
        return (
            self.first("Start: rebuild SRPM") - self.first("Creating build container")
        ).total_seconds()

    def step_seconds(self) -> float:
        return sum(span.seconds for span in self.spans())

    def fresh_keys(self) -> list[str]:
        """Cache keys of the fresh roots the task installed (whether or not it stored them)."""
        return [m.group(1) for _, message in self.entries if (m := _FRESH_KEY.match(message))]

    def stored_images(self) -> list[str]:
        """Cache images the task stored ("Finish: store buildroot in cache ...: image ID")."""
        return [m.group(1) for _, message in self.entries if (m := _STORED.match(message))]

    def base_image(self) -> str:
        """The image the build container was created from (the cache image when warm)."""
        for _, message in self.entries:
            if match := _CREATED_FROM.match(message):
                return match.group(1)
        raise ValueError("state.log names no image of the build container")


@dataclass(frozen=True)
class ContainerLog:
    """A task's container.log: every output line with the time it arrived (1 ms)."""

    lines: tuple[tuple[dt.datetime, str], ...]

    @classmethod
    def read(cls, path: Path) -> ContainerLog:
        lines = []
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                match = _CONTAINER_LINE.match(line.rstrip("\n"))
                if match:
                    lines.append((_parse_stamp(match.group(1)), match.group(2)))
        return cls(tuple(lines))

    def first(self, text: str, within: Span) -> dt.datetime:
        """The first line equal to ``text`` (stripped) that arrived during ``within``."""
        for stamp, line in self.lines:
            if within.start <= stamp <= within.finish and line.strip() == text:
                return stamp
        raise ValueError(f"container.log has no line {text!r} during step {within.name!r}")

    def installed_count(self, within: Span) -> int:
        """dnf's "Install N Packages" of the transaction summary during ``within``."""
        for stamp, line in self.lines:
            if within.start <= stamp <= within.finish and (m := _DNF_COUNT.match(line.strip())):
                return int(m.group(1))
        raise ValueError(f"container.log has no dnf transaction summary in {within.name!r}")


@dataclass(frozen=True)
class Build:
    task_id: int
    wall: float
    log: StateLog
    cache_hit: bool
    result_dir: Path
    #: Epoch seconds just before and after ``BuildArchAdapter.run``.
    called: float
    returned: float

    @property
    def init(self) -> float:
        return self.log.init_seconds()

    def lead_init(self, events: ContainerEvents | None) -> float | None:
        """The init: ``init``, but for a lead build (whose container starts inside its step)
        from "Creating build container" to podman's start event of it (None without the
        events)."""
        if not self.lead:
            return self.init
        if events is None:
            return None
        return events.first("start") - _epoch(self.log.first("Creating build container"))

    @property
    def lead(self) -> bool:
        """The build ran as the build container's main process (a warm build's lead step)."""
        return self.log.has(LEAD_ENDED)

    def overhead(self, events: ContainerEvents | None) -> float | None:
        """The wall time minus the time of the commands: each step exec's span in state.log,
        and for a lead step only its command, from podman's start event of its container to
        the line saying it ended (None without the events)."""
        if not self.lead:
            return self.wall - self.log.step_seconds()
        if events is None:
            return None
        spans = self.log.spans()
        others = sum(span.seconds for span in spans[1:])
        command = _epoch(self.log.first(LEAD_ENDED)) - events.first("start")
        return self.wall - others - command

    def container_log(self) -> ContainerLog:
        return ContainerLog.read(self.result_dir / "container.log")

    def phases(self) -> dict[str, float]:
        """A warm build from state.log's timestamps (1 ms), in order, summing to the wall
        time: before the build container, its create + start (and the task files), each
        step, the copies between steps, collecting the results and removing the container,
        back to the caller."""
        creating = self.log.first("Creating build container")
        spans = self.log.spans()
        finished = self.log.first("Finished:")
        parts = {
            "before the container": _epoch(creating) - self.called,
            "create+start": (spans[0].start - creating).total_seconds(),
        }
        labels = _labels(spans)
        for index, span in enumerate(spans):
            if index:
                gap = (span.start - spans[index - 1].finish).total_seconds()
                parts[f"between {labels[index - 1]} / {labels[index]}"] = gap
            parts[labels[index]] = span.seconds
        parts["collect+remove"] = (finished - spans[-1].finish).total_seconds()
        parts["return"] = self.returned - _epoch(finished)
        return parts

    def event_parts(self, events: ContainerEvents) -> dict[str, float]:
        """The phases around the steps of a warm build, split further by podman's events:
        "create+start" into the create call, the task files + init (to podman's init event),
        the start and the rest; "collect+remove" into copying the results out (until the
        container died, which the removal's kill causes) and stopping + removing it."""
        creating = _epoch(self.log.first("Creating build container"))
        spans = self.log.spans()
        first_step = _epoch(spans[0].start)
        last_finish = _epoch(spans[-1].finish)
        finished = _epoch(self.log.first("Finished:"))
        return {
            "create (to podman's create event)": events.first("create") - creating,
            "task files + init (to its init event)": events.first("init") - events.first("create"),
            "start (init to start event)": events.first("start") - events.first("init"),
            "start returned, first step noted": first_step - events.first("start"),
            "copy results out (until died)": events.last("died") - last_finish,
            "stop + remove (died to Finished)": finished - events.last("died"),
        }

    def split(self, events: ContainerEvents | None) -> dict[str, float] | None:
        """The build's phases by podman's events (``lead_parts`` or ``event_parts``)."""
        if events is None:
            return None
        return self.lead_parts(events) if self.lead else self.event_parts(events)

    def lead_parts(self, events: ContainerEvents) -> dict[str, float]:
        """A lead build (the build as the build container's main process), split by podman's
        events and state.log: create call, init (podman does it on the attach), start, the
        command (start event to the line saying it ended), its end (usage read, release, the
        container's processes gone, to "Finish:"), then the results and the removal."""
        creating = _epoch(self.log.first("Creating build container"))
        ended = _epoch(self.log.first(LEAD_ENDED))
        finish = _epoch(self.log.spans()[0].finish)
        return {
            "create (to podman's create event)": events.first("create") - creating,
            "attach + init (to its init event)": events.first("init") - events.first("create"),
            "start (init to start event)": events.first("start") - events.first("init"),
            "command (start event to its end line)": ended - events.first("start"),
            "end line to Finish (usage, release, processes gone)": finish - ended,
            "results, callbacks, removal (to Finished)": _epoch(self.log.first("Finished:"))
            - finish,
        }

    def exec_parts(self, events: ContainerEvents) -> dict[str, float] | None:
        """Each step split by podman's exec and exec_died events: from "Start:" to the exec
        event (exec create + start calls), the command (exec to exec_died: the step reaper,
        bash, the command), from exec_died to "Finish:" (end of the stream, exec inspect).

        The hardware report is an exec of its own beside the first step, requested once the
        step's exec has started; podman's events do not say which exec is which, so a step's
        exec is the first one that started within it and its end the last exec_died within
        it. None unless every step has one (and for a lead build, which has none)."""
        if self.lead:
            return None
        parts: dict[str, float] = {}
        spans = self.log.spans()
        for label, span in zip(_labels(spans), spans):
            start, finish = _epoch(span.start), _epoch(span.finish)
            begun = [t for t in events.times.get("exec", []) if start <= t <= finish]
            ended = [t for t in events.times.get("exec_died", []) if start <= t <= finish]
            if not begun or not ended:
                return None
            parts[f"{label}: exec start"] = min(begun) - start
            parts[f"{label}: command"] = max(ended) - min(begun)
            parts[f"{label}: exec end"] = finish - max(ended)
        return parts

    def cold_init_parts(self) -> dict[str, float]:
        """The cold init, from "Creating build container" to "Start: rebuild SRPM", in parts
        that sum to it. dnf's phases come from its own output lines in container.log (dnf
        logs them through a stream handler that flushes each line)."""
        log = self.log
        creating = log.first("Creating build container")
        bootstrap = log.first("Creating bootstrap container")
        first_step = log.spans()[0].start
        rebuild = log.first("Start: rebuild SRPM")
        install = log.span("install @build")
        store = log.span("store buildroot in cache")
        clog = self.container_log()
        downloading = clog.first("Downloading Packages:", install)
        check = clog.first("Running transaction check", install)
        transaction = clog.first("Running transaction", install)
        complete = clog.first("Complete!", install)
        return {
            "create T": (bootstrap - creating).total_seconds(),
            "create+start B": (first_step - bootstrap).total_seconds(),
            "dnf start+metadata+resolve": (downloading - install.start).total_seconds(),
            "dnf download/copy": (check - downloading).total_seconds(),
            "dnf transaction check+test": (transaction - check).total_seconds(),
            "dnf install": (complete - transaction).total_seconds(),
            "dnf exit": (install.finish - complete).total_seconds(),
            # the directories, the build user, the build dirs, and the gaps between steps
            "other init steps": (store.start - first_step).total_seconds() - install.seconds,
            **self._store_parts(store),
            "start T + package list": (rebuild - store.finish).total_seconds(),
        }

    def _store_parts(self, store: Span) -> dict[str, float]:
        """The cache store: a commit of T, or in a user namespace a tar of the root read
        through B (a step inside the store) and its import."""
        export = [s for s in self.log.spans(nested=True) if s.name == EXPORT_STEP]
        if not export:
            return {"cache store (commit)": store.seconds}
        return {
            "cache store: tar of the root": export[0].seconds,
            "cache store: import": store.seconds - export[0].seconds,
        }

    def dnf_resolved_after(self) -> float:
        """From the start of ``install @build`` to dnf's "Dependencies resolved." line."""
        install = self.log.span("install @build")
        resolved = self.container_log().first("Dependencies resolved.", install)
        return (resolved - install.start).total_seconds()

    def installed_packages(self) -> int:
        return self.container_log().installed_count(self.log.span("install @build"))


def _labels(spans: Sequence[Span]) -> list[str]:
    """Step names, a repeated one marked (the package list is read before and after the
    build)."""
    seen: set[str] = set()
    labels = []
    for span in spans:
        labels.append(f"{span.name} (again)" if span.name in seen else span.name)
        seen.add(span.name)
    return labels


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


@dataclass(frozen=True)
class ContainerEvents:
    """Podman's events of one build container (epoch seconds, ns resolution), read after the
    rounds: they split the phases state.log cannot (create vs start, copy-out vs removal)."""

    times: dict[str, list[float]]

    def first(self, status: str) -> float:
        return self.times[status][0]

    def last(self, status: str) -> float:
        return self.times[status][-1]

    @staticmethod
    def read(worker: str, since: float) -> dict[int, ContainerEvents]:
        """{task id: events} of the build containers of ``worker`` since ``since`` (epoch).

        Containers made from a cache image inherit its labels (the committing task's id and
        role), so a CLI container of that image looks like a build container of the setup
        task: only containers that had an exec count. Empty when podman's event log has
        nothing (another events backend, or the log was rotated)."""
        by_container: dict[str, tuple[int, dict[str, list[float]]]] = {}
        for event in common.worker_events(worker, since):
            try:
                attributes = event.get("Attributes") or {}
                if (
                    event.get("Type") != "container"
                    or attributes.get("io.koji.adjutant.role") != "build"
                ):
                    continue
                task = int(attributes["io.koji.adjutant.task_id"])
                when = _event_epoch(event["Time"])
            except (ValueError, KeyError, TypeError):
                continue
            entry = by_container.setdefault(event["ID"], (task, {}))
            entry[1].setdefault(event["Status"], []).append(when)
        found: dict[int, ContainerEvents] = {}
        for task, times in by_container.values():
            if "exec" in times and {"create", "start", "died", "remove"} <= times.keys():
                found[task] = ContainerEvents({k: sorted(v) for k, v in times.items()})
        return found


def _event_epoch(text: str) -> float:
    """``2026-11-29T09:24:10.703445895Z`` (podman's event time) as epoch seconds."""
    base, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")
    return _epoch(dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or 0}")


class Koji:
    """The Koji topdir and the sample SRPM, made once in a temp dir; new repos on demand."""

    def __init__(self, base: Path, distro: DevDistro) -> None:
        import kojitopdir as kt  # tests/ is on PYTHONPATH under `make bench`

        kt.ensure_rpm_tools()
        self.top = kt.KojiTopdir(base / "koji")
        self.top.add_build([distro.srpm, *distro.rpms])
        filler_spec = base / "adjbench-filler.spec"
        filler_spec.write_text(_filler_spec(FILLER))
        self.top.add_build(kt.build_package(filler_spec, base / "rpms").all)
        fillers = [f"adjbench-filler-p{i:03d}" for i in range(FILLER)]
        self.groups = {
            "build": [*distro.groups["build"], *fillers],
            "srpm-build": [*distro.groups["srpm-build"], *fillers],
        }
        if len(self.groups["build"]) < MIN_GROUP:
            raise AssertionError(f"build group has {len(self.groups['build'])} packages")
        self.srpm = kt.build_srpm(kt.SAMPLE_SPEC, base / "srpms")
        self.next_id = FIRST_REPO_ID

    def new_repo(self) -> tuple[int, Path]:
        """A new repo of the tag (as a regen-repo makes): (repo id, its arch dir)."""
        repo_id = self.next_id
        self.next_id += 1
        repo = self.top.make_repo(TAG, repo_id, ARCH, groups=self.groups)
        return repo_id, repo.arch_dir


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
            userns_base=USERNS_BASE,
        )
        self.task_id = 70_000
        self.saved: list[str] = []
        self.keys: list[str] = []

    @staticmethod
    def config() -> dict[str, object]:
        return {
            "id": 1,
            "name": TAG,
            "arches": ARCH,
            "locked": False,
            "perm": None,
            "extra": {"rpm.macro.dist": DIST},
        }

    def build(self, repo: tuple[int, Path], *, cold: bool) -> Build:
        self.task_id += 1
        work = self.base / f"task-{self.task_id}"
        work.mkdir()
        work.chmod(0o755)
        srpm = work / self.koji.srpm.name
        shutil.copy(self.koji.srpm, srpm)
        ctx = TaskContext(self.task_id, work)
        repo_id, arch_dir = repo
        called = time.time()
        started = time.perf_counter()
        try:
            result: BuildArchResult = self.adapter.run(
                ctx,
                srpm,
                ARCH,
                repo=str(arch_dir),
                repo_id=repo_id,
                tag_name=TAG,
                build_config=self.config(),
            )
            wall = time.perf_counter() - started
            returned = time.time()
        finally:
            state = work / "result" / "state.log"
            if state.exists():
                log = StateLog.read(state)
                self.saved += log.stored_images()
                self.keys += log.fresh_keys()
        if len(result.rpms) != EXPECTED_RPMS:
            raise AssertionError(f"expected {EXPECTED_RPMS} RPMs, got {result.rpms}")
        build = Build(
            task_id=self.task_id,
            wall=wall,
            log=StateLog.read(Path(result.result_dir) / "state.log"),
            cache_hit=result.cache_hit,
            result_dir=Path(result.result_dir),
            called=called,
            returned=returned,
        )
        bootstrap = build.log.has("Creating bootstrap container")
        stored = bool(build.log.stored_images())
        if cold and (build.cache_hit or not bootstrap or not stored):
            raise AssertionError(
                f"task {self.task_id}: a cold build must install and store its root "
                f"(cache_hit {build.cache_hit}, bootstrap {bootstrap}, stored {stored})"
            )
        if not cold and (not build.cache_hit or bootstrap or stored):
            raise AssertionError(
                f"task {self.task_id}: a warm build must start from the cache without a "
                f"bootstrap container (cache_hit {build.cache_hit}, bootstrap {bootstrap})"
            )
        return build

    def remove_images(self) -> list[str]:
        """Removes the cache images this run stored: those its state.logs name, and any
        carrying the cache key of a root one of its tasks installed (keys are new per run:
        they cover this run's repos). Returns any that remain."""
        ours = set(self.saved)
        for key in self.keys:
            ours.update(self._images(f"{KEY_LABEL}={key}"))
        for image_id in sorted(ours):
            common.podman("rmi", "-f", image_id, check=False)
        present = {i.removeprefix("sha256:") for i in self._images(f"{common.LABEL_BUILDROOT}=1")}
        self.saved = sorted(ours)
        return sorted(ours & present)

    @staticmethod
    def _images(label: str) -> list[str]:
        listed = common.podman("images", "-q", "--no-trunc", "--filter", f"label={label}")
        return [i.removeprefix("sha256:") for i in listed.stdout.split()]


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def _medians(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(d.get(k, 0.0) for d in dicts) for k in dicts[0]}


def _ms(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v * 1e3:.0f}" for k, v in parts.items())


def _seconds(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in parts.items())


# --- P3 --------------------------------------------------------------------------------------


def measure_p3(
    runner: Runner, image: str, worker: str, n: int, warmup: Build
) -> list[dict[str, object]]:
    colds: list[Build] = []
    warms: list[Build] = []
    cli: list[float] = []  # per round: mean of the CLI run before the cold and after the warm
    run_true = common.cli_run(image, worker, ["true"])
    _timed(run_true)  # first CLI use after setup
    print(
        f"  P3 warm-up cold build: init {warmup.init:.2f} s ({_seconds(warmup.cold_init_parts())})"
    )
    since = time.time()
    for index in range(n):
        repo = runner.koji.new_repo()
        os.sync()  # the last round's cache image written out before this one (not timed)
        before = _timed(run_true)
        cold = runner.build(repo, cold=True)
        os.sync()  # its cache image written out before the warm build (not timed)
        warm = runner.build(repo, cold=False)
        after = _timed(run_true)
        colds.append(cold)
        warms.append(warm)
        cli.append((before + after) / 2)
        print(
            f"  P3 round {index + 1}: cold wall {cold.wall:.2f} s, init {cold.init:.2f} s | "
            f"warm wall {warm.wall:.3f} s, steps "
            f"{warm.log.step_seconds():.3f} s | CLI true {before:.3f}/{after:.3f} s"
        )
        print(f"           cold init (s): {_seconds(cold.cold_init_parts())}")
        print(f"           warm phases (ms): {_ms(warm.phases())}")

    med = statistics.median
    packages = {b.installed_packages() for b in colds}
    events = ContainerEvents.read(worker, since)
    warm_inits = [b.lead_init(events.get(b.task_id)) for b in warms]
    if any(i is None for i in warm_inits):
        raise SystemExit("P3: podman's events of a warm build are missing: no init to report")
    warm_init = [i for i in warm_inits if i is not None]
    init_ratio = _median_ratio([b.init for b in colds], warm_init)
    cold_parts = _medians([b.cold_init_parts() for b in colds])
    resolved = med(b.dnf_resolved_after() for b in colds)
    init_detail = (
        f"median of {n} rounds, @build = {'/'.join(map(str, sorted(packages)))} packages: "
        f"init cold {med(b.init for b in colds):.2f} s = {_seconds(cold_parts)} "
        f"(dnf's 'Dependencies resolved.' at {resolved:.2f} s); "
        f"warm {med(warm_init):.3f} s (create, task files and start; the package "
        f"list is the cache record's); whole build cold "
        f"{med(b.wall for b in colds):.2f} s, warm {med(b.wall for b in warms):.2f} s"
    )
    split = [b.split(events.get(b.task_id)) for b in warms]
    split = [x for x in split if x]
    if split:
        print(f"  P3 warm build split by podman's events (ms): {_ms(_medians(split))}")
    overheads = [b.overhead(events.get(b.task_id)) for b in warms]
    if any(o is None for o in overheads):
        raise SystemExit("P3: podman's events of a warm build are missing: no overhead to report")
    overhead_ratio = _median_ratio([o for o in overheads if o is not None], cli)
    overhead_detail = (
        f"median of {n} rounds: warm build {med(b.wall for b in warms):.3f} s wall - "
        f"the commands' time = {med(o for o in overheads if o is not None) * 1e3:.0f} ms "
        f"overhead; podman run --rm true {med(cli) * 1e3:.0f} ms"
        + (f"; by podman's events: {_ms(_medians(split))} ms" if split else "")
    )
    return [
        common.goal_row(
            "P3 buildroot init: cold / warm (cached)", init_ratio, ">=", INIT_GOAL, init_detail
        ),
        common.goal_row(
            "P3 warm-build overhead / podman run `true`",
            overhead_ratio,
            "<=",
            OVERHEAD_GOAL,
            overhead_detail,
        ),
    ]


# --- P6 --------------------------------------------------------------------------------------


class Rebuild:
    """``podman run --rm BUILDROOT rpmbuild --rebuild SRPM`` as the build user, the RPMs
    written to a host temp dir; and the same container running ``true``."""

    TOPDIR = "/tmp/rpmbuild"

    def __init__(self, base: Path, srpm: Path, buildroot: str, worker: str) -> None:
        self.topdir = base / "cli-topdir"
        srpm_in = f"/srpm/{srpm.name}"
        mapping = f"0:{USERNS_BASE}:{USERNS_SIZE}"
        options = [
            f"--uidmap={mapping}",
            f"--gidmap={mapping}",
            f"--user={BUILD_UID}:{BUILD_GID}",
            "--env=HOME=/builddir",
            "--workdir=/builddir",
            f"--volume={srpm}:{srpm_in}:ro",
            f"--volume={self.topdir}:{self.TOPDIR}:rw",
        ]
        argv = [
            "rpmbuild",
            "--rebuild",
            "--define",
            f"_topdir {self.TOPDIR}",
            "--define",
            f"dist {DIST}",
            srpm_in,
        ]
        self.run_rebuild = common.cli_run(buildroot, worker, argv, options)
        self.run_true = common.cli_run(buildroot, worker, ["true"], options)
        self.reset()

    def reset(self) -> None:
        """A fresh, empty _topdir owned by the build user as the host sees it (not timed)."""
        shutil.rmtree(self.topdir, ignore_errors=True)
        self.topdir.mkdir()
        os.chown(self.topdir, USERNS_BASE + BUILD_UID, USERNS_BASE + BUILD_GID)

    def rebuild(self) -> float:
        self.reset()
        seconds = _timed(self.run_rebuild)
        rpms = sorted(self.topdir.glob("RPMS/*/*.rpm"))
        if len(rpms) != EXPECTED_RPMS:
            raise AssertionError(f"rpmbuild --rebuild made {[p.name for p in rpms]}")
        return seconds

    def true(self) -> float:
        self.reset()
        return _timed(self.run_true)


def measure_p6(
    runner: Runner, repo: tuple[int, Path], buildroot: str, worker: str, n: int
) -> list[dict[str, object]]:
    rebuild = Rebuild(runner.base, runner.koji.srpm, buildroot, worker)
    warm_image = runner.build(repo, cold=False)
    if warm_image.log.base_image() != buildroot:
        raise AssertionError(f"warm build started from {warm_image.log.base_image()}")
    adapter: list[Build] = []
    cli: list[float] = []
    cli_true: list[float] = []
    candidates: dict[str, Callable[[], object]] = {
        "adapter": lambda: runner.build(repo, cold=False),
        "rebuild": rebuild.rebuild,
        "true": rebuild.true,
    }
    names = list(candidates)
    os.sync()  # cache images written out before the rounds (not timed)
    since = time.time()
    for index in range(1 + n):  # round 0 is a warm-up
        shift = index % len(names)
        got = {name: candidates[name]() for name in names[shift:] + names[:shift]}
        if index == 0:
            continue
        build = got["adapter"]
        assert isinstance(build, Build)
        adapter.append(build)
        cli.append(float(got["rebuild"]))  # type: ignore[arg-type]
        cli_true.append(float(got["true"]))  # type: ignore[arg-type]
        print(
            f"  P6 round {index}: adapter {build.wall:.3f} s, podman run rpmbuild --rebuild "
            f"{cli[-1]:.3f} s, podman run true {cli_true[-1]:.3f} s; "
            f"ratio {build.wall / cli[-1]:.2f}"
        )
    med = statistics.median
    ratio = _median_ratio([b.wall for b in adapter], cli)
    phases = _medians([b.phases() for b in adapter])
    events = ContainerEvents.read(worker, since)
    split = [x for b in adapter if (x := b.split(events.get(b.task_id)))]
    print(f"  P6 where the adapter's time goes (median of {n} rounds, ms):")
    for name, value in phases.items():
        print(f"    {name:<52} {value * 1e3:7.0f}")
    print(f"    {'= adapter wall':<52} {med(b.wall for b in adapter) * 1e3:7.0f}")
    if split:
        print(f"    podman's events ({len(split)} of {n} builds) split the phases:")
        for name, value in _medians(split).items():
            print(f"      {name:<50} {value * 1e3:7.0f}")
    execs = [x for b in adapter if b.task_id in events and (x := b.exec_parts(events[b.task_id]))]
    if execs:
        print(f"    ... and the steps ({len(execs)} of {n} builds):")
        for name, value in _medians(execs).items():
            print(f"      {name:<50} {value * 1e3:7.0f}")
    taken = sorted(
        p
        for p in adapter[-1].result_dir.iterdir()
        if p.suffix == ".rpm" or p.name.startswith("dnf")
    )
    print(
        "    files copied out of the build container: "
        + ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in taken)
        + " (the task's own logs are written on the host; the dnf logs are the cached root's)"
    )
    rpmbuild_alone = med(a - b for a, b in zip(cli, cli_true))
    print(
        f"    baseline: podman run rpmbuild --rebuild {med(cli) * 1e3:.0f} ms; the same "
        f"container running `true` {med(cli_true) * 1e3:.0f} ms, so rpmbuild --rebuild "
        f"itself about {rpmbuild_alone * 1e3:.0f} ms (the adapter's rpmbuild steps: "
        f"{phases[BUILD_STEP] * 1e3:.0f} ms, the SRPM rebuild included)"
    )
    exec_note = ""
    if execs:
        totals = _medians(
            [
                {
                    "exec calls": sum(v for k, v in x.items() if not k.endswith(": command")),
                    "commands": sum(v for k, v in x.items() if k.endswith(": command")),
                }
                for x in execs
            ]
        )
        exec_note = (
            f"; its {len(adapter[0].log.spans())} steps = {_ms(totals)} ms by podman's events"
        )
    detail = (
        f"median of {n} rounds: adapter {med(b.wall for b in adapter):.3f} s = "
        f"{_ms(phases)} ms{exec_note}; podman run rpmbuild --rebuild {med(cli):.3f} s "
        f"(podman run true in the same image {med(cli_true):.3f} s, so rpmbuild about "
        f"{rpmbuild_alone:.3f} s)"
    )
    return [
        common.goal_row(
            "P6 warm buildArch / podman run rpmbuild --rebuild", ratio, "<=", P6_GOAL, detail
        )
    ]


# --- driver ----------------------------------------------------------------------------------


def run(args: object = None) -> list[dict[str, object]]:
    """The P3 and P6 rows (those selected); prints their table."""
    wanted = [b for b in BENCHMARKS if common.wants(args, b)]
    if not wanted:
        return []
    image = common.image(args)
    n3 = common.rounds(args, full=5, quick=1)
    n6 = common.rounds(args, full=9, quick=2)
    worker = common.worker_id("buildarch")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    manager.ensure_image_available(image, pull_policy="never")
    base = Path(tempfile.mkdtemp(prefix="adj-bench-buildarch-"))
    base.chmod(0o755)
    runner: Runner | None = None
    rows: list[dict[str, object]] = []
    try:
        started = time.perf_counter()
        distro = ensure_dev_distro(manager, image, pull_policy="never")
        koji = Koji(base, distro)
        runner = Runner(base, koji, manager, image)
        print(
            f"P3/P6: dev distribution, {FILLER} fillers, Koji topdir and "
            f"{koji.srpm.name} made in {time.perf_counter() - started:.1f} s; "
            f"build group {len(koji.groups['build'])} packages"
        )
        setup_repo = koji.new_repo()
        setup = runner.build(setup_repo, cold=True)  # the warm-up, and P6's cache image
        buildroot = setup.log.stored_images()[0]
        if "P3" in wanted:
            rows += measure_p3(runner, image, worker, n3, setup)
        if "P6" in wanted:
            rows += measure_p6(runner, setup_repo, buildroot, worker, n6)
    except BaseException:
        manager.reap({common.LABEL_WORKER: worker})  # after a failure; the error says why
        raise
    finally:
        left = runner.remove_images() if runner else []
        shutil.rmtree(base, ignore_errors=True)
    if left:
        raise RuntimeError(f"cache images not removed: {left}")
    common.ensure_no_containers(worker)
    print(f"  removed {len(runner.saved)} cache images created by this run")
    common.print_table(f"buildArch ({', '.join(wanted)})", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
