"""Issue 14's fault matrix: kojid's tasks under faults, with real Podman, rpmbuild and dnf.

Each test makes one fault and asserts four things (docs/operations.md, "Faults"):

1. kojid (or the test's caller) keeps working: the next task on this worker succeeds;
2. the task ends failed or refused with a clear message (a killed kojid reports nothing:
   kojid's own restart or shutdown frees the task, ``host.freeTasks``, so the task is left
   open with no result, never closed);
3. the logs up to the fault are complete on the hub fake;
4. zero containers of this worker remain after the reaper (``koji-adjutant reap``).

"kojid" is a real process (tests/kojidtask.py) running kojid's task handler through
``TaskManager.runTask`` with kojid's SIGTERM handler, signalled from here. The Podman faults
use a Podman service of their own (never the tests' shared one) with a short
``podman_timeout``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import koji
import koji_adjutant
import kojidloader
import kojitopdir as kt
import pytest
import test_kojid_glue as glue
from conftest import LABEL_TASK, LABEL_WORKER, WORKER_ID, podman_cli, tmpfs
from hubfake import HubFake
from koji_adjutant import records
from koji_adjutant.devdistro import DevDistro
from koji_adjutant.kojid.__main__ import main as adjutant_main

# the glue tests' kojid flavours, hub fake, options and adjutant.conf
kojid = glue.kojid
handlers = glue.handlers
merge_slashes = glue.merge_slashes
hub = glue.hub
options = glue.options
conf = glue.conf
tools = glue.tools

pytestmark = [
    pytest.mark.podman,
    pytest.mark.slow,
    pytest.mark.usefixtures("no_leaks"),
    # koji's ClientSession.fastUpload leaves its file open (koji 1.35/1.36)
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]

HOST, ARCH, TAG, DIST = glue.HOST, glue.ARCH, glue.TAG, glue.DIST
#: how long a phase of a task may take to come (a guard against a hang, not a measurement)
PHASE_DEADLINE = 180.0
#: bytes of the log flood; 10G as the issue asks is ~3 min here (see docs/operations.md)
FLOOD_BYTES = int(os.environ.get("KOJI_ADJUTANT_FAULT_FLOOD_BYTES", str(1 << 30)))


# -- the builder of a test ---------------------------------------------------------------------


@dataclasses.dataclass
class Builder:
    """One kojid builder: the hub fake, kojid's options and handler classes, adjutant.conf,
    the tests' Podman (``manager``) and the dev distribution a tag's repo holds."""

    handlers: Any
    hub: HubFake
    options: Any
    conf: Callable[..., Path]
    image: str
    socket: str
    manager: Any
    dev_distro: DevDistro
    tools: list[Path]
    tmp_path: Path
    sessions: list[koji.ClientSession] = dataclasses.field(default_factory=list)

    def configure(self, **values: Any) -> None:
        """adjutant.conf: the tests' Podman and image, no network, no kept roots, and
        ``values``."""
        values.setdefault("podman_socket", self.socket)
        values.setdefault("task_image", self.image)
        values.setdefault("network", "none")
        # no failed root kept: a kept image of a small task id would outlive the test
        values.setdefault("keep_failed_root", "0")
        self.conf(**values)

    def session(self) -> koji.ClientSession:
        """A task's session (a subsession of a new exclusive host session: a kojid task
        process ends the test's earlier one). Closed after the test."""
        master = self.hub.host_session(HOST, use_fast_upload=True)
        child = master.subsession()
        self.sessions.extend((child, master))
        return child

    def close(self) -> None:
        for sess in self.sessions:
            try:
                sess.logout()
            except koji.GenericError:
                pass  # a later exclusive login ended it
            finally:
                sess.setSession(None)
                sess.rsession.close()
        # A file left open to the garbage collector by koji's client code (two of seven full
        # runs ended with an unclosed anonymous temporary file, as koji.openRemoteFile makes,
        # raised at the session's end where no filter applies) is collected here, under
        # this module's ResourceWarning filter.
        gc.collect()

    def world(self, fault: str | None) -> glue.World:
        """A tag (with ``rpm.macro.adj_fault``) whose repo holds the dev distribution, and
        the adj-fault SRPM in the hub's work dir."""
        extra = {"rpm.macro.dist": DIST, "rpm.macro.adj_flood_bytes": str(FLOOD_BYTES)}
        if fault:
            extra["rpm.macro.adj_fault"] = fault
        tag = self.hub.add_tag(f"{TAG}-{fault or 'none'}", arches=ARCH, extra=extra)
        libgreet = [p for p in self.tools if p.name.startswith("adj-libgreet")]
        glue._register_rpms(self.hub, [*self.dev_distro.rpms, *libgreet], tag["name"])
        repo = self.hub.add_repo(tag["name"])
        glue._make_repo_ready(self.hub, repo, self.dev_distro.groups)
        srpms = self.tmp_path / "srpms"
        srpm = kt.build_srpm(kt.spec_path("adj-fault"), srpms, defines={"dist": DIST})
        shutil.copy(srpm, Path(self.hub.topdir) / "work" / srpm.name)
        return glue.World(tag, repo, {}, {}, srpm.name)

    def build_task(self, fault: str | None) -> int:
        return glue.build_task(self.hub, self.world(fault))

    def build(self, fault: str | None) -> int:
        """A buildArch task whose %build does ``fault``, run here as a forked kojid task."""
        task_id = self.build_task(fault)
        kojidloader.run_task(self.handlers.build_arch, self.session(), self.options, task_id)
        return task_id

    def createrepo_task(self, tag: str, *, pad_bytes: int = 0) -> int:
        """A createrepo task of a new repo of ``tag`` (its RPMs already registered). With
        ``pad_bytes``, every package file gets that many sparse bytes at its end: createrepo_c
        reads (checksums) them all, so the task stays in createrepo_c for seconds."""
        repo = self.hub.add_repo(tag, state=koji.REPO_INIT)
        for path in (Path(self.hub.topdir) / "packages").rglob("*.rpm") if pad_bytes else ():
            data = path.read_bytes()  # a copy of its own: the topdir may hard-link it
            path.unlink()
            with open(path, "wb") as handle:
                handle.write(data)
                handle.truncate(len(data) + pad_bytes)
        return int(self.hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)["id"])

    def uploaded(self, task_id: int, name: str) -> bytes:
        """What the hub has of a task's file (b"" before its first upload)."""
        try:
            return self.hub.upload_bytes(f"{glue.upload_dir(task_id)}/{name}")
        except OSError:
            return b""

    def containers(self, task_id: int) -> list[dict[str, Any]]:
        labels = {LABEL_WORKER: WORKER_ID, LABEL_TASK: str(task_id)}
        return list(self.manager.list_containers(labels))

    def failed_with(self, task_id: int, *needles: str) -> str:
        """Assertion 2 for a task that fails: its fault's message, holding every needle."""
        task = self.hub.task(task_id)
        state = koji.TASK_STATES[task.state]
        assert state == "FAILED", (state, task.result)
        assert task.fault is not None
        message = str(task.fault[1])
        for needle in needles:
            assert needle in message, message
        return message

    def keeps_working(self) -> None:
        """Assertions 4 and 1: ``koji-adjutant reap`` leaves no container of this worker,
        and the worker takes its next task (a createrepo of an empty repo, the quickest)."""
        assert adjutant_main(["reap", "--workdir", self.options.workdir]) == 0
        assert self.manager.list_containers({LABEL_WORKER: WORKER_ID}) == []
        tag = self.hub.add_tag(f"{TAG}-next", arches=ARCH)
        task_id = self.createrepo_task(tag["name"])
        kojidloader.run_task(self.handlers.createrepo, self.session(), self.options, task_id)
        task = self.hub.task(task_id)
        assert task.fault is None, task.fault
        assert "EMPTY_REPO" in task.result[1]


@pytest.fixture
def builder(
    handlers: Any,
    hub: HubFake,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    manager: Any,
    dev_distro: DevDistro,
    tools: list[Path],
    tmp_path: Path,
) -> Iterator[Builder]:
    made = Builder(
        handlers, hub, options, conf, image, podman_socket, manager, dev_distro, tools, tmp_path
    )
    made.configure()
    try:
        yield made
    finally:
        made.close()  # before the hub stops


def wait_for(what: str, ready: Callable[[], bool], child: subprocess.Popen[bytes] | None = None):
    deadline = time.monotonic() + PHASE_DEADLINE
    while not ready():
        if child is not None and child.poll() is not None:
            pytest.fail(f"the task ended (status {child.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {PHASE_DEADLINE} s")
        time.sleep(0.2)


# -- kojid killed ------------------------------------------------------------------------------


class KilledKojid:
    """A kojid task process (tests/kojidtask.py) of ``builder``, to be signalled."""

    def __init__(self, builder: Builder, kojid: Any, method: str, task_id: int):
        self.builder, self.task_id = builder, task_id
        self.state_dir = builder.tmp_path / "state"
        builder.configure(state_dir=self.state_dir)
        options = builder.options
        args = {
            "hub_url": builder.hub.url,
            "host": HOST,
            "task_id": task_id,
            "method": method,
            "options": {k: getattr(options, k) for k in ("topdir", "topurl", "workdir")},
            "kojid_source": str(kojidloader.kojid_source()) if kojid else None,
        }
        self.log = builder.tmp_path / "kojid.log"
        with open(self.log, "wb") as out:
            self.child = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("kojidtask.py")), json.dumps(args)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        try:
            wait_for(what, ready, self.child)
        except BaseException:
            self.child.kill()
            self.child.wait()
            raise

    def signal(self, sig: signal.Signals) -> None:
        self.child.send_signal(sig)
        try:
            self.child.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
            pytest.fail(f"the task did not end within 90 s of {sig.name}: {self.log.read_text()}")

    def left_as_kojid_leaves_it(self, sig: signal.Signals) -> None:
        """Assertion 2 for a killed kojid: nothing was reported (kojid frees the task when it
        stops or restarts); after SIGTERM the builder's records say it was interrupted. The
        adapter removed the containers on SIGTERM; SIGKILL leaves them to the reaper."""
        task = self.builder.hub.task(self.task_id)
        assert koji.TASK_STATES[task.state] == "OPEN"
        assert task.result is None and task.fault is None
        ended = [
            (r["outcome"], r["reason"])
            for r in records.read_records(str(self.state_dir))
            if r.get("task_id") == self.task_id
        ]
        left = self.builder.containers(self.task_id)
        if sig == signal.SIGKILL:
            assert ended == []
            assert left, "SIGKILL cannot be caught: the containers stay until reaped"
        else:
            assert ended == [("failed", "interrupted (SystemExit)")]
            assert left == [], f"kojid's SIGTERM handler left {left}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("phase", ["init", "rpmbuild"])
def test_kojid_killed_during_a_build(
    builder: Builder, kojid: Any, phase: str, sig: signal.Signals
) -> None:
    task_id = builder.build_task("sleep")
    kojid_task = KilledKojid(builder, kojid, "build_arch", task_id)
    if phase == "init":
        # dnf installs the root in the bootstrap container: root.log has its command
        kojid_task.wait_for(
            "dnf's install in root.log on the hub",
            lambda: (
                b"install" in builder.uploaded(task_id, "root.log")
                and any(
                    c["labels"].get("io.koji.adjutant.role") == "bootstrap"
                    for c in builder.containers(task_id)
                )
            ),
        )
    else:
        kojid_task.wait_for(
            "the sleeping %build in build.log on the hub",
            lambda: b"ADJ-FAULT: sleep starts" in builder.uploaded(task_id, "build.log"),
        )
    logs = {n: builder.uploaded(task_id, n) for n in ("root.log", "build.log", "state.log")}
    kojid_task.signal(sig)
    kojid_task.left_as_kojid_leaves_it(sig)
    # 3. what reached the hub before the signal is still there, whole (the hub keeps every
    # chunk; a later upload only appends)
    for name, before in logs.items():
        assert builder.uploaded(task_id, name).startswith(before), name
    assert b"dnf" in logs["root.log"]
    if phase == "init":
        assert logs["build.log"] == b"", "the build had started"
    else:
        assert b"ADJ-FAULT: sleep starts" in logs["build.log"]
    builder.keeps_working()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_kojid_killed_during_createrepo(builder: Builder, kojid: Any, sig: signal.Signals) -> None:
    builder.hub.add_tag(TAG, arches=ARCH)
    glue._register_rpms(builder.hub, builder.tools, TAG)
    task_id = builder.createrepo_task(TAG, pad_bytes=8 << 30)
    kojid_task = KilledKojid(builder, kojid, "createrepo", task_id)
    kojid_task.wait_for(
        "createrepo_c at work",
        lambda: (
            bool(builder.containers(task_id))
            and b"createrepo_c" in builder.uploaded(task_id, "createrepo.log")
        ),
    )
    log = builder.uploaded(task_id, "createrepo.log")
    kojid_task.signal(sig)
    kojid_task.left_as_kojid_leaves_it(sig)
    assert builder.uploaded(task_id, "createrepo.log").startswith(log)
    assert log.startswith(b"$ /usr/bin/createrepo_c")
    builder.keeps_working()


# -- the Podman service fails -----------------------------------------------------------------


class PrivatePodman:
    """A Podman API service of this test alone, on the shared storage (as
    scripts/podman-service.sh starts the tests' one): restarted and stopped at will."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="adj-podman-"))  # a short socket path
        self.socket = str(self.dir / "podman.sock")
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.dir / "service.log", "ab") as log:
            self.process = subprocess.Popen(
                ["podman", "--runtime", "runc", "system", "service", "--time=0", self.url],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,  # conmon's `oom` files land here (scripts/podman-service.sh)
            )
        manager = koji_adjutant.PodmanManager(self.socket, worker_id=WORKER_ID, timeout=5)
        deadline = time.monotonic() + 60
        while True:
            try:
                manager.ping()
                return
            except koji_adjutant.AdjutantError:
                assert self.process.poll() is None, (self.dir / "service.log").read_text()
                assert time.monotonic() < deadline, "the private podman service did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_podman(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePodman]:
    """The service kojid's tasks (and the reaper) use in this test: KOJI_ADJUTANT_PODMAN_SOCKET
    wins over adjutant.conf."""
    service = PrivatePodman()
    service.start()
    monkeypatch.setenv("KOJI_ADJUTANT_PODMAN_SOCKET", service.socket)
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(service.dir, ignore_errors=True)


def in_background(action: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def build_log_has(builder: Builder, task_id: int, marker: bytes) -> Callable[[], bool]:
    return lambda: marker in builder.uploaded(task_id, "build.log")


def test_podman_service_restarted_during_a_build(
    builder: Builder, private_podman: PrivatePodman
) -> None:
    builder.configure(podman_timeout=5)
    task_id = builder.build_task("sleep")
    before: dict[str, bytes] = {}

    def restart_during_rpmbuild() -> None:
        wait_for("the sleeping %build", build_log_has(builder, task_id, b"ADJ-FAULT: sleep starts"))
        before["build.log"] = builder.uploaded(task_id, "build.log")
        private_podman.restart()

    thread, errors = in_background(restart_during_rpmbuild)
    kojidloader.run_task(builder.handlers.build_arch, builder.session(), builder.options, task_id)
    thread.join()
    assert errors == []
    builder.failed_with(task_id, "the podman service at", private_podman.socket)
    assert builder.uploaded(task_id, "build.log").startswith(before["build.log"])
    assert b"ADJ-FAULT: sleep starts" in before["build.log"]
    builder.keeps_working()


def test_podman_service_stopped_longer_than_the_timeout(
    builder: Builder, private_podman: PrivatePodman
) -> None:
    builder.configure(podman_timeout=5)
    task_id = builder.build_task("sleep")
    task_ended = threading.Event()
    resumed_early: list[bool] = []

    def stop_during_rpmbuild() -> None:
        wait_for("the sleeping %build", build_log_has(builder, task_id, b"ADJ-FAULT: sleep starts"))
        private_podman.pause()
        # stopped until the task has ended; a guard resumes it if the task hangs
        resumed_early.append(not task_ended.wait(PHASE_DEADLINE))
        private_podman.resume()

    thread, errors = in_background(stop_during_rpmbuild)
    try:
        kojidloader.run_task(
            builder.handlers.build_arch, builder.session(), builder.options, task_id
        )
    finally:
        task_ended.set()
        thread.join()
    assert errors == [] and resumed_early == [False], "the task hung on a stopped podman"
    builder.failed_with(task_id, "the podman service at", "did not answer")
    assert b"ADJ-FAULT: sleep starts" in builder.uploaded(task_id, "build.log")
    # the containers it could not remove while podman was stopped: the reaper's
    builder.keeps_working()


# -- the build misbehaves ---------------------------------------------------------------------


def test_a_build_killed_by_its_memory_limit_says_out_of_memory(builder: Builder) -> None:
    builder.configure(memory_limit="192M")
    task_id = builder.build("oom")
    # rpmbuild's status is 1 or 137 (which process the OOM killer took): the note says why
    builder.failed_with(
        task_id, "rpmbuild exited with status", "out of memory", "memory limit of 192 MiB"
    )
    assert b"ADJ-FAULT: oom starts" in builder.uploaded(task_id, "build.log")
    assert b"out of memory" in builder.uploaded(task_id, "state.log")
    builder.keeps_working()


def test_a_fork_bomb_is_held_by_the_pids_limit(builder: Builder) -> None:
    builder.configure(pids_limit=64, cpus="0.5")
    builder.options.rpmbuild_timeout = 10  # kojid's, for each rpmbuild step
    task_id = builder.build("forkbomb")
    builder.failed_with(
        task_id, 'step "rebuild SRPM and build" of task', "exceeded its timeout of 10 s"
    )
    build_log = builder.uploaded(task_id, "build.log")
    assert b"ADJ-FAULT: forkbomb starts" in build_log
    assert b"Cannot fork" in build_log  # bash: fork() refused, the limit held
    # the host is fine: this process can still start processes
    assert subprocess.run(["true"], check=False).returncode == 0
    builder.keeps_working()


@pytest.fixture
def small_workdir(tmp_path: Path, options: Any) -> Iterator[Path]:
    """kojid's work dir on a 24 MiB tmpfs of its own."""
    with tmpfs(tmp_path / "small-work", "24m") as work:
        options.workdir = str(work)
        yield work


def test_a_full_work_dir_fails_the_build_clearly(builder: Builder, small_workdir: Path) -> None:
    # the flood (FLOOD_BYTES) cannot fit: the logs fill the file system
    task_id = builder.build("flood")
    builder.failed_with(task_id, "log sink failed", str(small_workdir), "No space left on device")
    assert b"ADJ-FAULT: flood starts" in builder.uploaded(task_id, "build.log")
    assert b"dnf" in builder.uploaded(task_id, "root.log")
    builder.keeps_working()


def test_a_log_flood_through_a_capped_sink(builder: Builder) -> None:
    cap = 4 << 20
    builder.configure(log_cap_bytes="4M")
    started = time.monotonic()
    task_id = builder.build("flood")
    print(f"log flood: {FLOOD_BYTES} bytes in a task of {time.monotonic() - started:.1f} s")
    # the flood itself is no failure: the task succeeds with the newest bytes of its log
    task = builder.hub.task(task_id)
    assert task.fault is None, task.fault
    build_log = builder.uploaded(task_id, "build.log")
    assert len(build_log) <= cap + 4096, len(build_log)
    assert b"earlier bytes dropped" in build_log
    assert b"ADJ-FAULT: flood done" in build_log
    builder.keeps_working()


def test_non_utf8_and_nul_bytes_in_the_output_reach_the_hub_unchanged(builder: Builder) -> None:
    task_id = builder.build("bytes")
    message = builder.failed_with(task_id, "rpmbuild exited with status 1", "build.log")
    assert "\x00" not in message
    build_log = builder.uploaded(task_id, "build.log")
    assert b"ADJ-FAULT stdout: \xff\xfe NUL[\x00] bad-utf8[\xc3\x28] end\n" in build_log
    assert b"ADJ-FAULT stderr: \x80\x81 NUL[\x00\x00] end\n" in build_log
    builder.keeps_working()


# -- the caller's sink raises; the image goes away ----------------------------------------------


class RaisingSink:
    """A LogSink whose writes raise after the first chunk."""

    def __init__(self) -> None:
        self.seen = bytearray()

    def write_stdout(self, data: bytes) -> None:
        if self.seen:
            raise OSError(28, "No space left on device (the sink's)")
        self.seen += data

    write_stderr = write_stdout


def test_a_sink_that_raises_fails_the_run_and_removes_its_container(builder: Builder) -> None:
    """The adapters take a caller's sink beside their own log files (kojid's glue passes
    none): the createrepo adapter, its sink raising while createrepo_c writes."""
    hub = builder.hub
    hub.add_tag(TAG, arches=ARCH)
    glue._register_rpms(hub, builder.tools, TAG)
    adapter = koji_adjutant.CreaterepoAdapter(builder.manager, builder.image, pull_policy="never")
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    repo_dir = Path(hub.repo_dir(repo["id"])) / ARCH
    work = builder.tmp_path / "work"
    work.mkdir()
    sink = RaisingSink()
    ctx = koji_adjutant.TaskContext(4711, work, worker_id=WORKER_ID)
    with pytest.raises(OSError, match="the sink's"):
        adapter.run(ctx, repo_dir=repo_dir, topdir=hub.topdir, sink=sink)
    # the log file has every byte up to the fault (and the sink's first chunk)
    log = (work / "createrepo.log").read_bytes()
    assert log.startswith(b"$ /usr/bin/createrepo_c")
    assert bytes(sink.seen) in log
    assert builder.manager.list_containers({LABEL_WORKER: WORKER_ID}) == []
    # the caller keeps working: the same adapter makes the repo
    again = builder.tmp_path / "again"
    again.mkdir()
    ctx = koji_adjutant.TaskContext(4712, again, worker_id=WORKER_ID)
    result = adapter.run(ctx, repo_dir=repo_dir, topdir=hub.topdir)
    assert (Path(result.repodata_dir) / "repomd.xml").is_file()
    builder.keeps_working()


def test_the_task_image_removed_while_a_task_waits(builder: Builder) -> None:
    """The image is untagged while the task waits for the hub (host.newBuildRoot), after the
    image was chosen and checked: its containers cannot be made from it."""
    victim = f"localhost/adj-victim-{os.getpid()}:1"
    tagged = podman_cli("tag", builder.image, victim)
    assert tagged.returncode == 0, tagged.stderr
    handlers = builder.hub.hub.handlers
    new_buildroot = handlers["host.newBuildRoot"]

    def untag_then_answer(*args: Any, **kwargs: Any) -> Any:
        removed = podman_cli("untag", victim, victim)
        assert removed.returncode == 0, removed.stderr
        return new_buildroot(*args, **kwargs)

    try:
        builder.configure(task_image=victim)
        handlers["host.newBuildRoot"] = untag_then_answer
        task_id = builder.build(None)
    finally:
        handlers["host.newBuildRoot"] = new_buildroot
        podman_cli("untag", victim, victim)
    builder.failed_with(task_id, f"image {victim}: ")
    # no container was made: nothing ran
    assert builder.uploaded(task_id, "build.log") == b""
    (broot,) = builder.hub.buildroots
    assert broot.state_history == ["INIT", "EXPIRED"]
    # with an image that exists again, the next task runs
    builder.configure()
    builder.keeps_working()
