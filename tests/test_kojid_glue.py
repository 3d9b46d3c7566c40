"""The kojid glue, driven as kojid drives a task, against the hub fake.

Each task goes through ``koji.daemon.TaskManager.runTask`` (PyPI koji's own code, which
reports ``host.closeTask``/``failTask``/``refuseTask``) on a host subsession, as a forked kojid
task does. The handler classes are built on kojid's classes when ``KOJI_SRC`` names a koji
checkout (the real ``builder/kojid``), and always on the stand-ins of
``koji_adjutant.kojid.compat`` (what CI has: PyPI koji ships no kojid).

The first half replaces the adapters and Podman by scripted fakes, to pin the hub traffic, the
result dicts, the failure paths and the log streaming without containers; the second half
(marked ``podman``) runs the real adapters in the task image.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, ClassVar

import koji
import koji.plugin
import koji.tasks
import koji_adjutant
import kojidloader
import kojitopdir as kt
import pytest
from conftest import LABEL_TASK, LABEL_WORKER, WORKER_ID, podman_cli
from hubfake import HubFake
from hubfake import server as hubfake_server
from koji_adjutant import records
from koji_adjutant.devdistro import DevDistro
from koji_adjutant.kojid import compat, make_handlers, reaper
from koji_adjutant.kojid import handlers as handlers_mod
from koji_adjutant.kojid.handlers import Handlers
from koji_adjutant.kojid.images import ImagePolicyError, select_image
from koji_adjutant.kojid.logs import LiveUpload, LogWatcher, TaskLogUploads

# koji's ClientSession.fastUpload leaves its file open (koji 1.35/1.36)
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")

HOST = "builder1"
ARCH = "x86_64"
TAG = "f40-build"
DIST = ".fc40"
IMAGE = "localhost/koji-adjutant-task:dev"
SRPM_DEFINES = {"dist": DIST, "vendor": "Koji", "packager": "Koji", "distribution": "Koji"}
FAST_UPLOAD_INTERVAL = 0.1


# -- kojid flavours -----------------------------------------------------------------------


def _kojid_flavours() -> list[Any]:
    flavours: list[Any] = [pytest.param(None, id="compat")]
    source = kojidloader.kojid_source()
    if source is not None:
        flavours.append(pytest.param(source, id="kojid"))
    return flavours


@pytest.fixture(scope="module", params=_kojid_flavours())
def kojid(request: pytest.FixtureRequest) -> Any:
    """kojid's module (KOJI_SRC) or None for the compat stand-ins."""
    if request.param is None:
        return None
    return kojidloader.load_kojid(request.param)


@pytest.fixture
def handlers(kojid: Any, monkeypatch: pytest.MonkeyPatch) -> Handlers:
    made = make_handlers(kojid)
    for cls in (made.build_arch, made.createrepo):
        monkeypatch.setattr(cls, "log_upload_interval", FAST_UPLOAD_INTERVAL)
    return made


# -- the builder: hub, session, options, adjutant.conf ------------------------------------


@pytest.fixture(autouse=True)
def merge_slashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve topurl paths with '//' as Apache does (MergeSlashes On, its default).

    kojid builds repo URLs as topurl + '/' + '/repos/...' (BuildRoot.get_repo_dir() starts
    with '/'), which real hubs' web servers forgive; the hub fake's file server does not.
    """
    original = hubfake_server._RequestHandler.do_GET

    def do_get(handler: Any) -> None:
        while "//" in handler.path:
            handler.path = handler.path.replace("//", "/")
        original(handler)

    monkeypatch.setattr(hubfake_server._RequestHandler, "do_GET", do_get)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubFake]:
    top = tmp_path / "koji"
    top.mkdir()
    top.chmod(0o755)  # builders and buildroot users read the topdir
    with HubFake(topdir=str(top)) as fake:
        fake.add_host(HOST, arches="x86_64 noarch")
        yield fake


@pytest.fixture
def session(hub: HubFake) -> Iterator[koji.ClientSession]:
    """A task's session: a subsession of the host's exclusive session (TaskManager.forkTask)."""
    master = hub.host_session(HOST, use_fast_upload=True)
    child = master.subsession()
    yield child
    for sess in (child, master):
        try:
            sess.logout()
        finally:
            sess.setSession(None)
            sess.rsession.close()


@pytest.fixture
def options(hub: HubFake, tmp_path: Path) -> Any:
    work = tmp_path / "kojid-work"
    work.mkdir()
    return kojidloader.kojid_options(topdir=hub.topdir, topurl=hub.topurl, workdir=str(work))


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write adjutant.conf (KOJI_ADJUTANT_CONFIG) with the tests' worker id and socket."""
    for name in list(os.environ):
        if name.startswith("KOJI_ADJUTANT_") and name not in (
            "KOJI_ADJUTANT_PODMAN_SOCKET",
            "KOJI_ADJUTANT_TEST_IMAGE",
        ):
            monkeypatch.delenv(name)
    path = tmp_path / "adjutant.conf"

    def write(**values: Any) -> Path:
        values.setdefault("worker_id", WORKER_ID)
        values.setdefault("task_image", IMAGE)
        values.setdefault("buildroot_cache", "no")
        body = "".join(f"{k} = {v}\n" for k, v in values.items())
        path.write_text(f"[adjutant]\n{body}", encoding="utf-8")
        return path

    monkeypatch.setenv("KOJI_ADJUTANT_CONFIG", str(path))
    write()
    return write


# -- fakes for the Podman-free half --------------------------------------------------------


class FakeManager:
    """PodmanManager as the glue uses it, with containers that are only label sets."""

    instances: ClassVar[list[FakeManager]] = []
    down = False

    def __init__(
        self,
        socket: str | None = None,
        *,
        worker_id: str | None = None,
        timeout: float | None = None,
    ):
        self.socket = socket
        self.worker_id = worker_id
        self.timeout = timeout
        self.containers: list[dict[str, Any]] = []
        self.reaped: list[dict[str, str]] = []
        FakeManager.instances.append(self)

    def ping(self) -> str:
        if FakeManager.down:
            raise koji_adjutant.ContainerError("connect: No such file or directory")
        return "OK"

    def list_containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [c for c in self.containers if labels.items() <= c["labels"].items()]

    def reap(self, labels: dict[str, str]) -> int:
        self.reaped.append(dict(labels))
        gone = self.list_containers(labels)
        self.containers = [c for c in self.containers if c not in gone]
        return len(gone)

    def inspect_image(self, image: str) -> dict[str, Any]:
        return {
            "Id": image,
            "Digest": "sha256:" + "d" * 64,
            "Architecture": "amd64",
            "RootFS": {"Type": "layers", "Layers": ["sha256:" + "e" * 64]},
            "Config": {"Cmd": ["/bin/bash"]},
        }


@dataclasses.dataclass
class BuildScript:
    """What the fake BuildArchAdapter does: logs written in steps, then results or a failure."""

    initial: list[dict[str, Any]]
    final: list[dict[str, Any]]
    rpms: list[Path]
    srpms: list[Path]
    fail: str | None = None  # "init" or "build"
    refuse: str | None = None  # check() raises TaskRefused with this message
    usage: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "build": {"peak_memory_bytes": 5 << 20, "cpu_seconds": 1.5, "bytes_written": 4096},
            "bootstrap": {"peak_memory_bytes": 9 << 20, "cpu_seconds": 0.5, "bytes_written": 0},
        }
    )
    steps: int = 4
    step_seconds: float = 0.15
    written: dict[str, bytes] = dataclasses.field(default_factory=dict)
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class FakeBuildArchAdapter:
    script: BuildScript

    def __init__(self, manager: Any, image: str, **kwargs: Any):
        self.image = image
        self.kwargs = kwargs
        self.script.calls.append({"image": image, **kwargs})

    def _log(self, result: Path, name: str, line: str) -> None:
        data = line.encode()
        with open(result / name, "ab") as handle:
            handle.write(data)
        self.script.written[name] = self.script.written.get(name, b"") + data

    def check(self, arch: str, *, build_config: Any, buildroot_arch: str | None = None) -> str:
        self.script.calls.append({"check": arch, "buildroot_arch": buildroot_arch})
        if self.script.refuse:
            raise koji_adjutant.TaskRefused(self.script.refuse)
        return buildroot_arch or arch

    def run(self, ctx: Any, srpm: str, arch: str, **kw: Any) -> Any:
        """As the real adapter: the list after a failure past the initial list, and the
        containers' usage, on every path."""
        try:
            return self._run(ctx, srpm, arch, **kw)
        finally:
            kw["on_usage"](self.script.usage)

    def _run(self, ctx: Any, srpm: str, arch: str, **kw: Any) -> Any:
        script = self.script
        script.calls.append({"run": (ctx.task_id, srpm, arch), **kw})
        result = Path(ctx.work_dir) / "result"
        result.mkdir()
        for n in range(script.steps):
            self._log(result, "root.log", f"init step {n}\n")
            self._log(result, "state.log", f"Start: step {n}\n")
            time.sleep(script.step_seconds)
        if script.fail == "init":
            exc = koji_adjutant.BuildError(
                f"could not init buildroot for task {ctx.task_id} (arch {arch}): step"
                ' "install" exited with status 1; see root.log for more information'
            )
            exc.log, exc.exit_code = str(result / "root.log"), 1
            raise exc
        kw["on_buildroot_ready"](script.initial)
        for n in range(script.steps):
            self._log(result, "build.log", f"build line {n}\n" * 2000)
            time.sleep(script.step_seconds)
        kw["on_buildroot_final"](script.final)
        if script.fail == "build":
            exc = koji_adjutant.BuildError(
                f"error building package (arch {arch}), rpmbuild exited with status 1; see"
                " build.log for more information"
            )
            exc.log, exc.exit_code = str(result / "build.log"), 1
            raise exc
        rpms = [shutil.copy(p, result / p.name) for p in script.rpms]
        srpms = [shutil.copy(p, result / p.name) for p in script.srpms] if kw["keep_srpm"] else []
        return SimpleNamespace(
            rpms=[Path(p) for p in rpms],
            srpms=[Path(p) for p in srpms],
            logs=[result / n for n in ("root.log", "build.log", "state.log")],
            buildroot=script.final,
            lock_rpms=[lock_entry(e) for e in script.final],
            unknown_rpms=[],
            buildroot_arch=kw.get("buildroot_arch") or arch,
            cache_hit=False,
            image_id="f" * 64,
            image_digest="sha256:" + "d" * 64,
            result_dir=result,
        )


def lock_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The adapter's lock_rpms item of a buildroot list entry (mock's rpms item, no url)."""
    epoch = entry["epoch"]
    return {
        "name": entry["name"],
        "epoch": None if epoch is None else str(epoch),
        "version": entry["version"],
        "release": entry["release"],
        "arch": entry["arch"],
        "sigmd5": entry["payloadhash"],
        "license": "MIT",
        "signature": None,
    }


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> type[FakeManager]:
    FakeManager.instances = []
    FakeManager.down = False
    monkeypatch.setattr(koji_adjutant, "PodmanManager", FakeManager)
    monkeypatch.setattr(koji_adjutant, "BuildArchAdapter", FakeBuildArchAdapter)
    return FakeManager


# -- hub state -------------------------------------------------------------------------------


def rpm_entry(info: dict[str, Any]) -> dict[str, Any]:
    """A buildroot list entry as an adapter reports it (kojid's getPackageList, no id)."""
    keys = ("name", "version", "release", "epoch", "arch", "payloadhash", "size", "buildtime")
    return {k: info[k] for k in keys}


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> kt.BuiltPackage:
    """adj-hello built on the host: a noarch RPM and an SRPM carrying vendor/packager."""
    kt.ensure_rpm_tools("rpm", "rpmbuild")
    return kt.build_package(
        kt.spec_path("adj-hello"), tmp_path_factory.mktemp("hello"), defines=SRPM_DEFINES
    )


@dataclasses.dataclass
class World:
    tag: dict[str, Any]
    repo: dict[str, Any]
    bash: dict[str, Any]
    glibc: dict[str, Any]
    srpm_name: str


@pytest.fixture
def world(hub: HubFake, hello: kt.BuiltPackage) -> World:
    tag = hub.add_tag(TAG, arches=ARCH, extra={"rpm.macro.dist": DIST})
    bash = hub.add_rpm("bash", "5.2", "1.fc40", ARCH, tags=(TAG,))
    glibc = hub.add_rpm("glibc", "2.39", "2.fc40", ARCH, epoch=0, tags=(TAG,))
    repo = hub.add_repo(TAG)
    # a READY repo has repodata (repoDone put it there); its repomd.xml keys the cache
    repodata = Path(hub.repo_dir(repo["id"])) / ARCH / "repodata"
    repodata.mkdir()
    (repodata / "repomd.xml").write_text("<repomd/>\n")
    shutil.copy(hello.srpm, Path(hub.topdir) / "work" / hello.srpm.name)
    return World(tag, repo, bash, glibc, hello.srpm.name)


def build_task(
    hub: HubFake, world: World, arch: str = "noarch", keep_srpm: bool = False, **kw: Any
) -> int:
    request = [world.srpm_name, world.tag["id"], arch, keep_srpm, {"repo_id": world.repo["id"]}]
    task = hub.add_task("buildArch", request, arch=kw.pop("task_arch", arch), host=HOST, **kw)
    return int(task["id"])


def upload_dir(task_id: int) -> str:
    return koji.pathinfo.taskrelpath(task_id)


def hub_methods(hub: HubFake) -> list[str]:
    return hub.call_names(skip=("rawUpload", "checkUpload", "uploadFile"))


# kojid's BuildArchTask.handler conversation (tests/hubfake/server.py), minus mock_config.log
KOJID_BUILD_ARCH_CALLS = [
    "getTaskInfo",  # TaskManager.takeTask
    "repoInfo",
    "getAverageBuildDuration",
    "getTaskInfo",  # noarch: the task's preferred arch
    "host.getHost",
    "getBuildConfig",
    "repoInfo",
    "getBuildConfig",
    "host.newBuildRoot",
    "getExternalRepoList",
    "host.setBuildRootList",
    "host.setBuildRootState",
    "getExternalRepoList",
    "host.updateBuildRootList",
    "host.setBuildRootState",
]


# == Podman-free: the glue's structure ======================================================


def test_handlers_subclass_kojids_classes_with_the_same_methods(kojid: Any) -> None:
    made = make_handlers(kojid)
    base_ba = kojid.BuildArchTask if kojid else compat.BuildArchTaskBase
    base_cr = kojid.CreaterepoTask if kojid else compat.CreaterepoTaskBase
    assert issubclass(made.build_arch, base_ba) and made.build_arch.Methods == ["buildArch"]
    assert issubclass(made.createrepo, base_cr) and made.createrepo.Methods == ["createrepo"]
    broot = made.build_arch.buildroot_class  # type: ignore[attr-defined]
    assert issubclass(broot, kojid.BuildRoot if kojid else compat.BuildRootBase)
    # kojid's weights are inherited
    assert made.build_arch.weight(None) == 1.5  # type: ignore[arg-type]
    assert made.createrepo._taskWeight == 1.5
    for cls, name, method in (
        (made.rebuild_srpm, "RebuildSRPM", "rebuildSRPM"),
        (made.build_srpm_from_scm, "BuildSRPMFromSCMTask", "buildSRPMFromSCM"),
    ):
        base = getattr(kojid, name) if kojid else getattr(compat, f"{name}Base")
        assert issubclass(cls, base) and cls.Methods == [method]
        assert cls._taskWeight == 1.0
        assert cls.buildroot_class is broot  # type: ignore[attr-defined]


def test_plugin_replaces_kojids_handlers_in_kojids_registration_order(
    kojid: Any, conf: Callable[..., Path], fakes: type[FakeManager]
) -> None:
    """kojid registers its globals, then koji.tasks, then each plugin (TaskManager.scanPlugin)."""
    namespace = (
        kojid
        if kojid is not None
        else {
            "BuildArchTask": compat.BuildArchTaskBase,
            "CreaterepoTask": compat.CreaterepoTaskBase,
        }
    )
    tm = kojidloader.task_manager(None)  # type: ignore[arg-type]
    tm.findHandlers(vars(kojid) if kojid else namespace)
    tm.findHandlers(vars(koji.tasks))
    plugin = kojidloader.load_plugin(namespace)
    tm.scanPlugin(plugin)
    assert tm.handlers["buildArch"] is plugin.AdjutantBuildArchTask
    assert tm.handlers["createrepo"] is plugin.AdjutantCreaterepoTask
    assert tm.handlers["rebuildSRPM"] is plugin.AdjutantRebuildSRPM
    assert tm.handlers["buildSRPMFromSCM"] is plugin.AdjutantBuildSRPMFromSCMTask
    assert issubclass(
        plugin.AdjutantBuildArchTask,
        namespace["BuildArchTask"] if isinstance(namespace, dict) else namespace.BuildArchTask,
    )
    # every other method keeps its handler
    assert tm.handlers["waitrepo"] is koji.tasks.WaitrepoTask
    # loading the plugin (kojid start) made no Podman connection in kojid's process: the
    # reaper runs in a process of its own (test_plugin_load_reaps_in_a_process_of_its_own)
    assert fakes.instances == []


def test_check_host_compares_tag_and_host_arches(
    handlers: Handlers, hub: HubFake, world: World, session: koji.ClientSession, options: Any
) -> None:
    """TaskManager.takeTask asks checkHost before opening a buildArch task (kojid's or ours)."""
    task_id = build_task(hub, world, arch=ARCH)
    handler = kojidloader.make_handler(handlers.build_arch, session, options, task_id)
    assert handler.checkHost({"arches": "x86_64 noarch"}) is True
    assert handler.checkHost({"arches": "aarch64"}) is False


def test_plugin_loads_with_an_invalid_config(
    conf: Callable[..., Path], fakes: type[FakeManager], caplog: pytest.LogCaptureFixture
) -> None:
    conf(memory_limit="lots")
    plugin = kojidloader.load_plugin(None)
    assert plugin.AdjutantBuildArchTask.Methods == ["buildArch"]
    assert "invalid value for memory_limit: 'lots'" in caplog.text
    assert fakes.instances == []  # nothing to reap with: no usable config


@pytest.mark.podman
def test_plugin_load_reaps_in_a_process_of_its_own_and_leaves_no_thread(
    manager: Any, image: str, podman_socket: str, tmp_path: Path
) -> None:
    """kojid forks a child per task: its parent must not hold the core's runtime threads."""
    leftover = manager.create(koji_adjutant.ContainerSpec(image, ["sleep", "600"], task_id=424242))
    conf = tmp_path / "adjutant.conf"
    conf.write_text(
        f"[adjutant]\nworker_id = {WORKER_ID}\npodman_socket = {podman_socket}\n"
        f"state_dir = {tmp_path / 'state'}\n"
    )
    code = (
        f"import os, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import kojidloader\n"
        "from koji_adjutant.kojid import compat\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "kojidloader.load_plugin({'BuildArchTask': compat.BuildArchTaskBase,"
        " 'CreaterepoTask': compat.CreaterepoTaskBase})\n"
        "print(before, len(os.listdir('/proc/self/task')), 'koji_adjutant._core' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJI_ADJUTANT_")}
    env["KOJI_ADJUTANT_CONFIG"] = str(conf)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr
    before, after, _ = done.stdout.split()
    assert before == after == "1", done.stdout  # only kojid's own thread, before and after
    assert manager.list_containers({LABEL_TASK: "424242"}) == []
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []
    [reaped] = records.read_records(str(tmp_path / "state"), kind="reaped")
    assert reaped["container_id"] == leftover.container_id and reaped["task_id"] == 424242


# == image policy ===========================================================================


@pytest.mark.parametrize(
    ("extra", "method", "arch", "expected"),
    [
        ({}, "buildArch", "x86_64", ("default/img", "task_image")),
        ({"adjutant.image": "tag/img"}, "buildArch", "x86_64", ("tag/img", "adjutant.image")),
        (
            {"adjutant.image": "tag/img", "adjutant.image.x86_64": "arch/img"},
            "buildArch",
            "x86_64",
            ("arch/img", "adjutant.image.x86_64"),
        ),
        (
            {"adjutant.image": "tag/img", "adjutant.image.aarch64": "arch/img"},
            "buildArch",
            "x86_64",
            ("tag/img", "adjutant.image"),
        ),
        (
            {"adjutant.image.x86_64": "arch/img", "adjutant.image.createrepo": "tools/img"},
            "createrepo",
            "x86_64",
            ("tools/img", "adjutant.image.createrepo"),
        ),
        (
            {"adjutant.image.createrepo": "tools/img", "adjutant.image.buildArch": "b/img:1"},
            "buildArch",
            "x86_64",
            ("b/img:1", "adjutant.image.buildArch"),
        ),
    ],
)
def test_image_precedence_method_then_arch_then_tag_then_default(
    extra: dict[str, Any], method: str, arch: str, expected: tuple[str, str]
) -> None:
    choice = select_image(extra, tag_name=TAG, method=method, arch=arch, default="default/img")
    assert (choice.image, choice.source) == expected


def test_mock_bootstrap_image_comes_first_for_a_tag_mode_bootstrap() -> None:
    extra = {"mock.bootstrap_image": "reg.example/fedora:40", "adjutant.image": "tag/img"}

    def pick(extra: dict[str, Any], method: str = "buildArch", bootstrap: bool = True) -> Any:
        choice = select_image(
            extra, tag_name=TAG, method=method, arch=ARCH, default="d/img", bootstrap=bootstrap
        )
        return (choice.image, choice.source)

    assert pick(extra) == ("reg.example/fedora:40", "mock.bootstrap_image")
    # image mode (the image is the buildroot, not a bootstrap) and createrepo ignore it
    assert pick(extra, bootstrap=False) == ("tag/img", "adjutant.image")
    assert pick(extra, method="createrepo", bootstrap=False) == ("tag/img", "adjutant.image")
    # mock's switch turns it off, as it turns off mock's bootstrap image
    for off in (False, 0, "False", "no", ""):
        assert pick({**extra, "mock.use_bootstrap_image": off}) == ("tag/img", "adjutant.image")
    assert pick({**extra, "mock.use_bootstrap_image": True})[1] == "mock.bootstrap_image"
    with pytest.raises(ImagePolicyError, match=r"mock\.bootstrap_image = 'Not An Image'"):
        pick({"mock.bootstrap_image": "Not An Image"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"adjutant.image": 7}, r"tag f40-build: extra adjutant.image = 7: expected a string"),
        ({"adjutant.image": "Fedora:40"}, r"adjutant.image = 'Fedora:40': expected an image"),
        ({"adjutant.image.x86-64": "a/b"}, r"unknown extra key 'adjutant.image.x86-64'"),
        ({"adjutant.image.buildarch": "a/b"}, r"suffix must be a task method"),
    ],
)
def test_invalid_tag_image_extra_fails_clearly(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ImagePolicyError, match=message):
        select_image(extra, tag_name=TAG, method="buildArch", arch=ARCH, default="ok/img")


def test_no_image_anywhere_is_an_error_naming_what_to_set() -> None:
    with pytest.raises(ImagePolicyError, match=r"set the tag extra adjutant\.image"):
        select_image({}, tag_name=TAG, method="createrepo", arch=ARCH, default=None)
    assert issubclass(ImagePolicyError, koji.ConfigurationError)


# == leases and orphan reaping (no Podman) ====================================================


def test_lease_marks_a_live_task_and_dies_with_its_process(tmp_path: Path) -> None:
    root = str(tmp_path)
    task_dir = tmp_path / koji.pathinfo.taskrelpath(7)
    task_dir.mkdir(parents=True)
    reaper.write_lease(str(task_dir), 7, "w1")
    assert reaper.task_is_alive(root, 7, "w1")
    assert not reaper.task_is_alive(root, 7, "another-worker")
    assert not reaper.task_is_alive(root, 8, "w1")  # no lease
    # a lease written by a process that has exited
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from koji_adjutant.kojid import reaper;"
            " reaper.write_lease(sys.argv[1], 7, 'w1')",
            str(task_dir),
        ],
        check=True,
    )
    assert child.returncode == 0
    assert not reaper.task_is_alive(root, 7, "w1")


def test_find_orphans_keeps_live_and_own_tasks(tmp_path: Path) -> None:
    root = str(tmp_path)
    for task_id in (1, 2):
        (tmp_path / koji.pathinfo.taskrelpath(task_id)).mkdir(parents=True)
    reaper.write_lease(str(tmp_path / koji.pathinfo.taskrelpath(1)), 1, "w1")

    def box(cid: str, task: str | None) -> dict[str, Any]:
        labels = {LABEL_WORKER: "w1"} | ({LABEL_TASK: task} if task else {})
        return {"id": cid, "labels": labels}

    containers = [box("a", "1"), box("b", "2"), box("c", "3"), box("d", "3"), box("e", None)]
    orphans = reaper.find_orphans(containers, workdir_root=root, worker_id="w1", keep=(3,))
    assert orphans == {2: ["b"]}
    orphans = reaper.find_orphans(containers, workdir_root=root, worker_id="w1")
    assert orphans == {2: ["b"], 3: ["c", "d"]}


# == log streaming ============================================================================


def test_log_watcher_streams_growing_logs_with_kojids_naming(
    hub: HubFake, world: World, session: koji.ClientSession, tmp_path: Path
) -> None:
    task_id = build_task(hub, world)
    sink = TaskLogUploads(session, upload_dir(task_id), logging.getLogger("t"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    watcher = LogWatcher(sink, [str(tmp_path / "a" / "*.log"), str(tmp_path / "b" / "*.log")])
    (tmp_path / "a" / "root.log").write_bytes(b"one\n")
    watcher.sync_logs()
    with open(tmp_path / "a" / "root.log", "ab") as fo:
        fo.write(b"two\n")
    (tmp_path / "b" / "root.log").write_bytes(b"other\n")  # same name: a .DUP00 alias
    watcher.sync_logs()
    watcher.sync_logs()  # nothing new: nothing sent
    (tmp_path / "a" / "root.log").write_bytes(b"new\n")  # truncated/rewritten: read again
    watcher.sync_logs()
    watcher.close_logs()
    rel = upload_dir(task_id)
    assert hub.upload_bytes(f"{rel}/root.log") == b"new\n"
    assert [(c.offset, c.size) for c in hub.upload_chunks(f"{rel}/root.log")] == [
        (0, 4),
        (4, 4),
        (0, 4),
    ]
    assert hub.upload_bytes(f"{rel}/root.DUP00.log") == b"other\n"
    assert sink.logs == {"root.log", "root.DUP00.log"}


def test_log_watcher_never_follows_a_planted_link_nor_blocks_on_a_fifo(
    hub: HubFake, world: World, session: koji.ClientSession, tmp_path: Path
) -> None:
    """createrepo's logs are in a directory its container can write: a log replaced by a link
    to a host file, or by a FIFO, is neither read nor uploaded, and nothing blocks."""
    task_id = build_task(hub, world)
    sink = TaskLogUploads(session, upload_dir(task_id), logging.getLogger("t"))
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"HOST SECRET\n")
    work = tmp_path / "work"
    work.mkdir()
    watcher = LogWatcher(sink, [str(work / "*.log")])
    (work / "createrepo.log").symlink_to(secret)
    os.mkfifo(work / "mergerepos.log")
    (work / "state.log").write_bytes(b"fine\n")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (watcher.sync_logs(), done.set()), daemon=True)
    thread.start()
    assert done.wait(10), "the watcher blocked"
    # a regular log later replaced by a link: the link is not followed either
    (work / "state.log").unlink()
    (work / "state.log").symlink_to(secret)
    watcher.sync_logs()
    watcher.close_logs()
    rel = upload_dir(task_id)
    assert hub.upload_bytes(f"{rel}/state.log") == b"fine\n"
    assert sink.logs == {"state.log"}
    for name in ("createrepo.log", "mergerepos.log"):
        assert hub.upload_chunks(f"{rel}/{name}") == []


def test_live_upload_runs_beside_a_blocking_call_and_reraises_its_error() -> None:
    passes: list[float] = []
    closed: list[bool] = []
    with LiveUpload(
        lambda: passes.append(time.monotonic()), lambda: closed.append(True), interval=0.05
    ):
        time.sleep(0.3)
    assert len(passes) >= 4 and closed == [True]

    def broken() -> None:
        raise koji.ActionNotAllowed("task 1 is not owned by this host")

    with pytest.raises(koji.ActionNotAllowed):
        with LiveUpload(broken, lambda: None, interval=0.01):
            time.sleep(0.1)
    # a signal skips the final pass
    final: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        with LiveUpload(lambda: final.append(1), lambda: None, interval=10):
            raise KeyboardInterrupt
    assert final == []


# == the buildroot record =====================================================================


def test_buildroot_record_follows_kojids_states_and_strict_lookups(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    tmp_path: Path,
) -> None:
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    broot = handlers.build_arch.buildroot_class(  # type: ignore[attr-defined]
        session, options, TAG, ARCH, task_id, repo_id=world.repo["id"], workdir=str(tmp_path)
    )
    broot.set_initial_list([rpm_entry(world.bash)])
    late = hub.add_rpm("make", "4.4", "1.fc40", ARCH)  # not in the repo: looked up by NVRA
    broot.update_list([rpm_entry(world.bash), rpm_entry(world.glibc), rpm_entry(late)])
    broot.expire()
    assert hub_methods(hub) == KOJID_BUILD_ARCH_CALLS[6:]
    record = hub.buildroot(broot.id)
    assert record.state_history == ["INIT", "BUILDING", "EXPIRED"]
    assert (record.task_id, record.repo_id, record.arch) == (task_id, world.repo["id"], ARCH)
    listed = {(r["name"], r["is_update"]) for r in hub.buildroot_rpms(broot.id)}
    assert listed == {("bash", False), ("glibc", True), ("make", True)}
    # internal RPMs were sent with their id from rpmlist.jsonl, as kojid's mapInternalRPMs does
    set_list = next(c for c in hub.calls if c.method == "host.setBuildRootList")
    assert set_list.args[1][0]["id"] == world.bash["id"]
    # a payload hash that differs from the repo's is refused before the hub sees it
    with pytest.raises(koji.BuildrootError, match="payloadhash"):
        broot.package_list([dict(rpm_entry(world.bash), payloadhash="0" * 32)])
    # and the hub refuses an RPM it does not know
    other = handlers.build_arch.buildroot_class(  # type: ignore[attr-defined]
        session, options, TAG, ARCH, task_id, repo_id=world.repo["id"], workdir=str(tmp_path)
    )
    with pytest.raises(koji.GenericError, match="No such rpm"):
        other.set_initial_list([dict(rpm_entry(world.bash), name="not-in-koji")])


def test_buildroot_refuses_a_repo_that_is_not_ready(
    handlers: Handlers, hub: HubFake, world: World, session: koji.ClientSession, options: Any
) -> None:
    task_id = build_task(hub, world, arch=ARCH)
    init_repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    with pytest.raises(koji.BuildrootError, match=r"Requested repo \(\d+\) is INIT"):
        handlers.build_arch.buildroot_class(  # type: ignore[attr-defined]
            session, options, TAG, ARCH, task_id, repo_id=init_repo["id"], workdir="/tmp"
        )
    assert not any(c.method == "host.newBuildRoot" for c in hub.calls)


def _write_origin_repodata(arch_dir: Path, origins: dict[str, str]) -> None:
    """repodata with only repomd.xml and a pkgorigins file, as mergerepo_c --koji leaves."""
    repodata = arch_dir / "repodata"
    repodata.mkdir(exist_ok=True)
    with gzip.open(repodata / "pkgorigins.gz", "wt") as fo:
        for nvra, url in origins.items():
            fo.write(f"{nvra}\t{url}\n")
    (repodata / "repomd.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<repomd xmlns="http://linux.duke.edu/metadata/repo">\n'
        '  <data type="origin"><location href="repodata/pkgorigins.gz"/></data>\n'
        "</repomd>\n"
    )


def test_external_rpms_are_recorded_against_their_repo(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    kojid: Any,
    tmp_path: Path,
) -> None:
    if kojid is not None:
        pytest.skip("kojid's markExternalRPMs needs librepo, which PyPI does not ship")
    ext = hub.add_external_repo("centos-base", "http://mirror.example/$arch/")
    tag = hub.add_tag(TAG, arches=ARCH, external_repos=("centos-base",))
    bash = hub.add_rpm("bash", "5.2", "1.fc40", ARCH, tags=(TAG,))
    repo = hub.add_repo(TAG)
    arch_dir = Path(hub.repo_dir(repo["id"])) / ARCH
    zlib = {
        "name": "zlib",
        "version": "1.3",
        "release": "1.el9",
        "epoch": None,
        "arch": ARCH,
        "payloadhash": "ab" * 16,
        "size": 100,
        "buildtime": 1700000000,
    }
    _write_origin_repodata(
        arch_dir,
        {
            "bash-5.2-1.fc40.x86_64": f"file:///var/tmp/koji/repo_{repo['id']}_premerge/",
            "zlib-1.3-1.el9.x86_64": "http://mirror.example/x86_64/",
        },
    )
    task = hub.add_task(
        "buildArch", ["x.src.rpm", tag["id"], ARCH, False, {}], arch=ARCH, host=HOST
    )
    broot = handlers.build_arch.buildroot_class(  # type: ignore[attr-defined]
        session, options, TAG, ARCH, task["id"], repo_id=repo["id"], workdir=str(tmp_path)
    )
    broot.set_initial_list([rpm_entry(bash), zlib])
    listed = {(r["name"], r["external_repo_name"]) for r in hub.buildroot_rpms(broot.id)}
    assert listed == {("bash", "INTERNAL"), ("zlib", "centos-base")}
    sent = next(c for c in hub.calls if c.method == "host.setBuildRootList").args[1]
    assert sent[1]["location"] == ext["id"] and "id" not in sent[1]
    # an RPM of unknown origin is an error, as in kojid
    with pytest.raises(koji.BuildError, match="No origin for nosuch"):
        broot.package_list([dict(zlib, name="nosuch")])
    # image RPMs (image mode) come marked with image_external_repo's name or id: the glue
    # resolves the repo on the hub and gives them its id as location, skipping the origins
    image_rpm = dict(zlib, name="imagepkg", external_repo={"external_repo_name": "centos-base"})
    [marked] = broot.package_list([image_rpm])
    assert marked["location"] == ext["id"]
    assert marked["external_repo"]["external_repo_id"] == ext["id"]
    by_id = dict(zlib, name="imagepkg", external_repo={"external_repo_name": str(ext["id"])})
    assert broot.package_list([by_id])[0]["location"] == ext["id"]
    unknown = dict(zlib, name="imagepkg", external_repo={"external_repo_name": "no-such"})
    with pytest.raises(koji.GenericError, match="No such repo: no-such"):
        broot.package_list([unknown])


# == buildArch through the glue, with a scripted adapter ======================================


@pytest.fixture
def script(world: World, hello: kt.BuiltPackage) -> BuildScript:
    script = BuildScript(
        initial=[rpm_entry(world.bash)],
        final=[rpm_entry(world.bash), rpm_entry(world.glibc)],
        rpms=list(hello.rpms),
        srpms=[hello.srpm],
    )
    FakeBuildArchAdapter.script = script
    return script


def test_build_arch_success_is_kojids_conversation(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    hello: kt.BuiltPackage,
) -> None:
    conf(network="repo")  # the repo over kojid's topurl, whose repomd.xml the glue fetches
    task_id = build_task(hub, world, arch="noarch", keep_srpm=True)
    hub.set_average_build_duration("adj-hello", 4800.0)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)

    task = hub.task(task_id)
    assert task.fault is None, task.fault
    assert koji.TASK_STATES[task.state] == "CLOSED"
    rel = upload_dir(task_id)
    (rpm,) = hello.rpms
    assert task.result == {
        "rpms": [f"{rel}/{rpm.name}"],
        "srpms": [f"{rel}/{hello.srpm.name}"],
        "logs": [f"{rel}/{n}" for n in ("build.log", "root.log", "state.log")]
        + [f"{rel}/noarch_rpmdiff.json"]
        + [
            f"{rel}/{n}"
            for n in ("buildroot_lock.json", "sbom.spdx.json", "provenance.intoto.json")
        ],
        "brootid": hub.buildroots[0].id,
    }
    expected = list(KOJID_BUILD_ARCH_CALLS)
    expected.insert(3, "host.setTaskWeight")  # the average build time raised the weight
    assert hub_methods(hub) == [*expected, "host.closeTask"]
    assert all(c.fault is None for c in hub.calls)
    assert hub.task(task_id).weight == pytest.approx(1.5 + 1.0)

    broot = hub.buildroots[0]
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
    assert (broot.task_id, broot.arch) == (task_id, ARCH)
    assert [(r["name"], r["is_update"]) for r in hub.buildroot_rpms(broot.id)] == [
        ("bash", False),
        ("glibc", True),
    ]
    # results arrive byte-exact; logs arrived while the adapter ran, in several requests
    assert hub.upload_bytes(f"{rel}/{rpm.name}") == rpm.read_bytes()
    assert hub.upload_bytes(f"{rel}/{hello.srpm.name}") == hello.srpm.read_bytes()
    for name, data in script.written.items():
        assert hub.upload_bytes(f"{rel}/{name}") == data
    chunks = hub.upload_chunks(f"{rel}/build.log")
    assert len(chunks) >= 3
    assert [c.offset for c in chunks] == sorted(c.offset for c in chunks)
    assert not any(c.leaves_gap for c in chunks)
    rpmdiff = koji.load_json(os.path.join(hub.workdir, rel, "noarch_rpmdiff.json"))
    assert list(rpmdiff) == [str(task_id)] and list(rpmdiff[str(task_id)]) == [rpm.name]

    # what the adapter was given
    ctor, check, run = script.calls
    # asked before the buildroot record: can this image build it?
    assert check == {"check": "noarch", "buildroot_arch": ARCH}
    assert ctor["keep_failed_root"] == 4 * 3600 and ctor["yum_proxy"] is None
    assert ctor["image"] == IMAGE and ctor["vendor"] == "Koji" and ctor["cache"] is False
    assert ctor["rpmbuild_timeout"] == options.rpmbuild_timeout
    assert run["run"][2] == "noarch" and run["buildroot_arch"] == ARCH
    assert run["repo_id"] == world.repo["id"] and run["tag_name"] == TAG
    assert run["build_config"]["extra"] == {"rpm.macro.dist": DIST}
    assert run["keep_srpm"] is True
    assert ctor["buildroot_mode"] == "tag"
    # network = repo: reached over topurl, keyed by the repomd.xml kojid's topurl serves
    assert run["repo"] == f"{hub.topurl}/repos/{TAG}/{world.repo['id']}/{ARCH}"
    assert run["topdir"] is None
    assert run["repomd_sha256"] == hashlib.sha256(b"<repomd/>\n").hexdigest()
    # the work dir, lease included, is gone with the task
    assert not os.path.exists(os.path.join(options.workdir, rel))


class _OwnBuildArch(compat.BuildArchTaskBase):
    """Stands for kojid's own BuildArchTask (kojid is not on PyPI): its handler records the
    call instead of running mock."""

    ran: ClassVar[list[tuple[Any, ...]]] = []

    def handler(self, pkg, root, arch, keep_srpm, opts=None):  # type: ignore[no-untyped-def]
        type(self).ran.append((pkg, root, arch, keep_srpm))
        return {"handled by": "kojid's own buildArch"}


class _OwnCreaterepo(compat.CreaterepoTaskBase):
    ran: ClassVar[list[tuple[Any, ...]]] = []

    def handler(self, repo_id, arch, oldrepo):  # type: ignore[no-untyped-def]
        type(self).ran.append((repo_id, arch))
        return ["own", []]


class _OwnRebuildSRPM(compat.RebuildSRPMBase):
    ran: ClassVar[list[tuple[Any, ...]]] = []

    def handler(self, srpm, build_tag, opts=None):  # type: ignore[no-untyped-def]
        type(self).ran.append((srpm, build_tag))
        return {"handled by": "kojid's own rebuildSRPM"}


class _OwnBuildSRPMFromSCM(compat.BuildSRPMFromSCMTaskBase):
    ran: ClassVar[list[tuple[Any, ...]]] = []

    def handler(self, url, build_tag, opts=None):  # type: ignore[no-untyped-def]
        type(self).ran.append((url, build_tag))
        return {"handled by": "kojid's own buildSRPMFromSCM"}


@pytest.fixture
def own_kojid() -> Handlers:
    for own in (_OwnBuildArch, _OwnCreaterepo, _OwnRebuildSRPM, _OwnBuildSRPMFromSCM):
        own.ran = []
    return make_handlers(
        {
            "BuildArchTask": _OwnBuildArch,
            "CreaterepoTask": _OwnCreaterepo,
            "RebuildSRPM": _OwnRebuildSRPM,
            "BuildSRPMFromSCMTask": _OwnBuildSRPMFromSCM,
            "BuildRoot": compat.BuildRootBase,
        }
    )


SCM_URL = "git://scm.example.org/rpms/adj-hello.git#0123abcd"


def _run_srpm_tasks(
    handlers: Handlers, hub: HubFake, world: World, session: koji.ClientSession, options: Any
) -> None:
    """A rebuildSRPM and a buildSRPMFromSCM task of ``world``'s tag, run as kojid runs them."""
    options.allowed_scms = "scm.example.org:/rpms/*:no"
    opts = {"repo_id": world.repo["id"]}
    for method, source, cls in (
        ("rebuildSRPM", world.srpm_name, handlers.rebuild_srpm),
        ("buildSRPMFromSCM", SCM_URL, handlers.build_srpm_from_scm),
    ):
        task = hub.add_task(method, [source, world.tag["id"], opts], host=HOST)
        kojidloader.run_task(cls, session, options, task["id"])
        assert hub.task(task["id"]).result == {"handled by": f"kojid's own {method}"}
    assert _OwnRebuildSRPM.ran == [(world.srpm_name, world.tag["id"])]
    assert _OwnBuildSRPMFromSCM.ran == [(SCM_URL, world.tag["id"])]


def test_a_builder_not_enabled_runs_kojids_own_handlers_without_touching_podman(
    own_kojid: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    tmp_path: Path,
) -> None:
    conf(enabled="no", state_dir=tmp_path / "state")
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(own_kojid.build_arch, session, options, task_id)
    assert hub.task(task_id).result == {"handled by": "kojid's own buildArch"}
    assert _OwnBuildArch.ran == [(world.srpm_name, world.tag["id"], ARCH, False)]
    assert hub_methods(hub) == ["getTaskInfo", "host.closeTask"]
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
    kojidloader.run_task(own_kojid.createrepo, session, options, task["id"])
    assert _OwnCreaterepo.ran == [(repo["id"], ARCH)]
    hub.clear_calls()
    _run_srpm_tasks(own_kojid, hub, world, session, options)
    assert set(hub_methods(hub)) == {"getTaskInfo", "host.closeTask"}
    # nothing of koji-adjutant ran: no Podman connection, no adapter, no record
    assert FakeManager.instances == [] and script.calls == []
    assert not (tmp_path / "state").exists()


def test_a_tag_not_enabled_runs_kojids_own_handlers(
    own_kojid: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    hub.hub.db.tags[world.tag["id"]].extra["adjutant.enabled"] = False
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(own_kojid.build_arch, session, options, task_id)
    assert hub.task(task_id).result == {"handled by": "kojid's own buildArch"}
    # the decision is made on the build config the task reads anyway: no buildroot of ours
    calls = hub_methods(hub)
    assert "getBuildConfig" in calls and "host.newBuildRoot" not in calls
    assert [c for c in script.calls if "run" in c or "check" in c] == []
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
    kojidloader.run_task(own_kojid.createrepo, session, options, task["id"])
    assert _OwnCreaterepo.ran == [(repo["id"], ARCH)]
    hub.clear_calls()
    _run_srpm_tasks(own_kojid, hub, world, session, options)
    calls = hub_methods(hub)
    assert "getBuildConfig" in calls and "host.newBuildRoot" not in calls
    assert [c for c in script.calls if "run" in c or "check" in c] == []
    # other spellings of "no"; absent or true: containers
    assert [
        handlers_mod.tag_enabled({"extra": {"adjutant.enabled": v}})
        for v in ("no", "0", "False", 0, True, "yes")
    ] == [False, False, False, False, True, True]
    assert handlers_mod.tag_enabled({"extra": {}}) and handlers_mod.tag_enabled({"extra": None})


def test_a_task_the_image_cannot_build_is_refused_before_any_buildroot_record(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    tmp_path: Path,
) -> None:
    conf(state_dir=tmp_path / "state")
    script.refuse = "the task image (x86_64) cannot build arch i686"
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    refuse = hub.calls[-1]
    assert refuse.method == "host.refuseTask"
    assert refuse.kwargs["msg"] == f"koji-adjutant: {script.refuse}"
    assert "host.newBuildRoot" not in hub_methods(hub)
    assert koji.TASK_STATES[hub.task(task_id).state] == "FREE"
    [record] = records.read_records(str(tmp_path / "state"), kind="finished")
    assert (record["task_id"], record["method"], record["outcome"]) == (
        task_id,
        "buildArch",
        "refused",
    )
    assert script.refuse in record["reason"]


def test_every_task_leaves_a_record_with_what_its_containers_used(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    conf(state_dir=state)
    ok = build_task(hub, world, arch=ARCH)
    with caplog.at_level(logging.INFO, logger="koji"):
        kojidloader.run_task(handlers.build_arch, session, options, ok)
    script.fail = "build"
    failed = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, failed)
    by_task = {r["task_id"]: r for r in records.read_records(str(state), kind="finished")}
    assert by_task[ok]["outcome"] == "ok" and by_task[failed]["outcome"] == "failed"
    for task_id in (ok, failed):
        record = by_task[task_id]
        # the build container's peak; CPU and writes of both containers
        assert (record["peak_memory_bytes"], record["cpu_seconds"], record["bytes_written"]) == (
            5 << 20,
            2.0,
            4096,
        )
        assert record["arch"] == ARCH and record["finished"] >= record["started"]
    assert "rpmbuild exited with status 1" in by_task[failed]["reason"]
    # the same numbers reach kojid's log
    assert f"build container of task {ok} used: peak memory {5 << 20} bytes" in caplog.text


def test_build_arch_keeps_kojids_weight_and_arch_without_noarch(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    assert task.result["srpms"] == []  # keep_srpm off: the SRPM is not uploaded
    assert not any(p.endswith(".src.rpm") for p in hub.uploads() if p.startswith("tasks/"))
    calls = [m for m in KOJID_BUILD_ARCH_CALLS if m != "getTaskInfo"]
    assert hub_methods(hub) == ["getTaskInfo", *calls, "host.closeTask"]
    assert script.calls[2]["buildroot_arch"] is None


def test_failed_build_updates_the_list_expires_and_uploads_the_logs(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    script.fail = "build"
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert koji.TASK_STATES[task.state] == "FAILED"
    assert task.fault == (
        koji.BuildError.faultCode,
        "error building package (arch x86_64), rpmbuild exited with status 1; see build.log"
        " for more information",
    )
    methods = hub_methods(hub)
    assert methods[-4:] == [
        "getExternalRepoList",
        "host.updateBuildRootList",
        "host.setBuildRootState",
        "host.failTask",
    ]
    assert hub.buildroots[0].state_history == ["INIT", "BUILDING", "EXPIRED"]
    rel = upload_dir(task_id)
    for name in ("build.log", "root.log", "state.log"):
        assert hub.upload_bytes(f"{rel}/{name}") == script.written[name]
    assert not any(p.endswith(".rpm") for p in hub.uploads() if p.startswith("tasks/"))


def test_failed_init_expires_the_buildroot_without_a_list(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    script.fail = "init"
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is not None and task.fault[0] == koji.BuildrootError.faultCode
    assert task.fault[1].startswith("could not init buildroot") and "root.log" in task.fault[1]
    assert hub.buildroots[0].state_history == ["INIT", "EXPIRED"]
    assert not any(c.method.endswith("BuildRootList") for c in hub.calls)
    assert hub.upload_bytes(f"{upload_dir(task_id)}/root.log") == script.written["root.log"]


def test_a_hub_fault_in_the_buildroot_callback_fails_the_task_like_kojid(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    script.initial = [dict(rpm_entry(world.bash), name="unknown-to-koji")]
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is not None and task.fault[0] == koji.GenericError.faultCode
    assert "No such rpm" in task.fault[1]
    # kojid leaves the buildroot to TaskManager.updateBuildroots after a failed init
    assert hub.buildroots[0].state_history == ["INIT"]
    assert "build.log" not in script.written  # the build never started


def test_keep_srpm_checks_the_srpm_as_kojid_does(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    tmp_path: Path,
) -> None:
    bare = kt.build_srpm(kt.spec_path("adj-hello"), tmp_path / "bare", defines={"dist": DIST})
    script.srpms = [bare]  # no vendor/packager/distribution
    task_id = build_task(hub, world, arch=ARCH, keep_srpm=True)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    fault = hub.task(task_id).fault
    assert fault is not None
    assert fault == (koji.BuildError.faultCode, "The build system failed to set the packager tag")


def test_config_error_refuses_the_task_before_any_hub_call(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    conf(pull_policy="sometimes")
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub_methods(hub) == ["getTaskInfo", "host.refuseTask"]
    refuse = hub.calls[-1]
    assert refuse.args[0] == task_id
    assert "invalid value for pull_policy: 'sometimes'" in refuse.kwargs["msg"]
    assert "always, if-not-present, never" in refuse.kwargs["msg"]
    assert koji.TASK_STATES[hub.task(task_id).state] == "FREE"


def test_podman_down_refuses_the_task(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    fakes.down = True
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    refuse = hub.calls[-1]
    assert refuse.method == "host.refuseTask"
    assert "podman service at" in refuse.kwargs["msg"] and "does not answer" in refuse.kwargs["msg"]


def test_tag_image_extra_chooses_the_image_and_bad_values_fail_the_task(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    hub.hub.db.tags[world.tag["id"]].extra.update(
        {"adjutant.image": "quay.io/koji/el9:1", "adjutant.image.x86_64": "quay.io/koji/x:2"}
    )
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub.task(task_id).fault is None
    assert script.calls[0]["image"] == "quay.io/koji/x:2"

    hub.hub.db.tags[world.tag["id"]].extra["adjutant.image.x86_64"] = "Not An Image"
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    fault = hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.ConfigurationError.faultCode
    assert "tag f40-build: extra adjutant.image.x86_64 = 'Not An Image'" in fault[1]
    assert "host.newBuildRoot" not in hub_methods(hub)  # resolved before any buildroot


def test_an_image_outside_the_allowlist_fails_the_task_before_any_buildroot(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    """A tag's extra (here mock.bootstrap_image) naming an image on a registry the admin did
    not allow fails the task, buildArch and createrepo alike; an allowed one runs."""
    conf(image_allowlist="quay.io/koji/ localhost/koji-adjutant-task:dev")
    extra = hub.hub.db.tags[world.tag["id"]].extra
    extra["mock.bootstrap_image"] = "registry.evil.example/koji/el9:1"
    task_id = build_task(hub, world, arch=ARCH)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    fault = hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.ConfigurationError.faultCode
    assert fault[1] == (
        "image registry.evil.example/koji/el9:1 (from tag extra mock.bootstrap_image of tag"
        " f40-build) is not in this builder's image_allowlist (quay.io/koji/"
        " localhost/koji-adjutant-task:dev); a fully qualified reference on an allowed"
        " registry is needed"
    )
    assert "host.newBuildRoot" not in hub_methods(hub)
    assert script.calls == []
    extra["mock.bootstrap_image"] = "quay.io/koji/el9:1"
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub.task(task_id).fault is None, hub.task(task_id).fault
    assert script.calls[0]["image"] == "quay.io/koji/el9:1"
    # createrepo's image is held to it too (the default task_image is allowed exactly)
    with pytest.raises(ImagePolicyError, match=r"image fedora:40 \(from tag extra"):
        select_image(
            {"adjutant.image.createrepo": "fedora:40"},
            tag_name=TAG,
            method="createrepo",
            arch=ARCH,
            default=IMAGE,
            allowlist=("quay.io",),
        )


def test_network_none_refuses_without_a_local_repo(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
) -> None:
    conf(network="none")
    # this builder does not see the repo's repodata on its topdir
    shutil.rmtree(Path(hub.repo_dir(world.repo["id"])) / ARCH / "repodata")
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub.calls[-1].method == "host.refuseTask"
    assert "network = none needs the repo on the local topdir" in hub.calls[-1].kwargs["msg"]
    assert hub.buildroots == []
    # with repodata on the topdir the same task runs without any network
    arch_dir = Path(hub.repo_dir(world.repo["id"])) / ARCH
    _write_origin_repodata(arch_dir, {})
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub.task(task_id).fault is None
    assert script.calls[-1]["repo"] == str(arch_dir)
    assert script.calls[-1]["topdir"] == hub.topdir


def test_task_start_reaps_containers_of_dead_tasks_only(
    handlers: Handlers,
    hub: HubFake,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live_task = 99
    live_dir = Path(options.workdir) / koji.pathinfo.taskrelpath(live_task)
    live_dir.mkdir(parents=True)
    reaper.write_lease(str(live_dir), live_task, WORKER_ID)

    def box(task: int, worker: str = WORKER_ID) -> dict[str, Any]:
        return {"id": f"c{task}{worker}", "labels": {LABEL_WORKER: worker, LABEL_TASK: str(task)}}

    seeded = [box(live_task), box(98), box(98, "other-worker")]
    real_init = FakeManager.__init__

    def seeded_init(self: FakeManager, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.containers = list(seeded)

    monkeypatch.setattr(FakeManager, "__init__", seeded_init)
    task_id = build_task(hub, world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert hub.task(task_id).fault is None
    manager = fakes.instances[-1]
    assert manager.reaped == [{LABEL_WORKER: WORKER_ID, LABEL_TASK: "98"}]
    assert [c["id"] for c in manager.containers] == [f"c{live_task}{WORKER_ID}", "c98other-worker"]


# == createrepo through the glue, with a scripted adapter ===================================


class FakeCreaterepoAdapter:
    calls: ClassVar[list[dict[str, Any]]] = []
    error: ClassVar[BaseException | None] = None

    def __init__(self, manager: Any, image: str, **kwargs: Any):
        FakeCreaterepoAdapter.calls.append({"image": image, **kwargs})

    def run(self, ctx: Any, **kw: Any) -> Any:
        FakeCreaterepoAdapter.calls.append(kw)
        work = Path(ctx.work_dir)
        for n in range(4):
            with open(work / "createrepo.log", "ab") as fo:
                fo.write(f"line {n}\n".encode())
            time.sleep(0.12)
        if FakeCreaterepoAdapter.error is not None:
            raise FakeCreaterepoAdapter.error
        repodata = work / "repo" / "repodata"
        repodata.mkdir(parents=True)
        for name in ("repomd.xml", "primary.xml.gz", "comps.xml"):
            (repodata / name).write_bytes(name.encode() * 100)
        return SimpleNamespace(
            repodata_dir=repodata,
            files=sorted(os.listdir(repodata)),
            empty=False,
            logs=[work / "createrepo.log"],
        )


@pytest.fixture
def repo_fakes(monkeypatch: pytest.MonkeyPatch, fakes: type[FakeManager]) -> type:
    FakeCreaterepoAdapter.calls = []
    FakeCreaterepoAdapter.error = None
    monkeypatch.setattr(koji_adjutant, "CreaterepoAdapter", FakeCreaterepoAdapter)
    return FakeCreaterepoAdapter


KOJID_CREATEREPO_CALLS = [
    "getTaskInfo",  # takeTask
    "repoInfo",
    "getBuildConfig",  # (adjutant) the image
    "getExternalRepoList",
    "getTag",
    "getTaskInfo",  # run_callbacks: the taskinfo property
]


def test_createrepo_uploads_repodata_flat_and_runs_callbacks(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    repo_fakes: type,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = hub.add_tag(TAG, arches=ARCH, extra={"adjutant.image.createrepo": "quay.io/k/tools:1"})
    hub.add_rpm("bash", "5.2", "1.fc40", ARCH, tags=(TAG,))
    old = hub.add_repo(TAG)
    old_repodata = Path(hub.repo_dir(old["id"])) / ARCH / "repodata"
    old_repodata.mkdir()
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    seen: list[dict[str, Any]] = []

    def callback(cbtype: str, *args: Any, **kws: Any) -> None:
        seen.append(dict(kws, cbtype=cbtype))
        (Path(kws["repodir"]) / "repodata" / "from-callback.txt").write_text("added")

    monkeypatch.setitem(koji.plugin.callbacks, "postCreateRepo", [callback])
    task = hub.add_task("createrepo", [repo["id"], ARCH, old], host=HOST)
    hub.clear_calls()
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])

    result = hub.task(task["id"])
    assert result.fault is None, result.fault
    rel = upload_dir(task["id"])
    assert result.result[0] == rel
    assert sorted(result.result[1]) == [
        "comps.xml",
        "from-callback.txt",
        "primary.xml.gz",
        "repomd.xml",
    ]
    assert hub.upload_bytes(f"{rel}/repomd.xml") == b"repomd.xml" * 100
    assert hub.upload_bytes(f"{rel}/from-callback.txt") == b"added"
    assert hub.upload_bytes(f"{rel}/createrepo.log") == b"".join(
        f"line {n}\n".encode() for n in range(4)
    )
    assert len(hub.upload_chunks(f"{rel}/createrepo.log")) >= 2
    methods = hub_methods(hub)
    expected = list(KOJID_CREATEREPO_CALLS)
    expected.insert(2, "repoInfo")  # the old repo, for --update
    assert methods == [*expected, "host.closeTask"]
    (cb,) = seen
    assert (cb["tag"], cb["repo_id"], cb["arch"]) == (TAG, repo["id"], ARCH)
    assert cb["taskinfo"]["id"] == task["id"] and cb["session"] is session
    ctor, run = FakeCreaterepoAdapter.calls
    assert ctor["image"] == "quay.io/k/tools:1"
    assert ctor["createrepo_update"] is True and ctor["createrepo_skip_stat"] is True
    repo_dir = hub.repo_dir(repo["id"])
    assert run["repo_dir"] == f"{repo_dir}/{ARCH}" and run["topdir"] == hub.topdir
    assert run["pkglist"] == f"{repo_dir}/{ARCH}/pkglist"
    assert run["old_repodata"] == str(old_repodata)
    assert run["groups"] == f"{repo_dir}/groups/comps.xml"
    assert run["external_repos"] == []
    assert tag["id"] == hub.repo(repo["id"])["tag_id"]


def test_createrepo_without_packages_or_old_repo(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    repo_fakes: type,
) -> None:
    hub.add_tag(TAG, arches=ARCH)
    old = hub.add_repo(TAG)
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)  # the tag has no RPMs: empty pkglist
    task = hub.add_task("createrepo", [repo["id"], ARCH, old], host=HOST)
    hub.clear_calls()
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])
    assert hub.task(task["id"]).fault is None
    assert hub_methods(hub) == [*KOJID_CREATEREPO_CALLS, "host.closeTask"]  # no old repoInfo
    run = FakeCreaterepoAdapter.calls[1]
    assert run["pkglist"] is None and run["old_repodata"] is None


def test_createrepo_failures_refuse_or_fail_like_kojid(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    repo_fakes: type,
) -> None:
    hub.add_tag(TAG, arches=ARCH)
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    error = koji_adjutant.RepoError("failed to create repo: /usr/bin/createrepo_c ... exited 1")
    FakeCreaterepoAdapter.error = error
    task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])
    assert hub.task(task["id"]).fault == (koji.GenericError.faultCode, str(error))

    refuse = koji_adjutant.TaskRefused("No access to repos dir /mnt/koji/repos")
    FakeCreaterepoAdapter.error = refuse
    task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])
    assert hub.calls[-1].method == "host.refuseTask"
    assert hub.calls[-1].kwargs["msg"] == str(refuse)

    ready = hub.add_repo(TAG)
    task = hub.add_task("createrepo", [ready["id"], ARCH, None], host=HOST)
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])
    fault = hub.task(task["id"]).fault
    assert fault is not None and fault[1] == f"Repo {ready['id']} not in INIT state (got 1)"


def test_createrepo_refuses_without_the_repos_dir(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    repo_fakes: type,
    tmp_path: Path,
) -> None:
    hub.add_tag(TAG, arches=ARCH)
    repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    options.topdir = str(tmp_path / "not-mounted")
    task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
    kojidloader.run_task(handlers.createrepo, session, options, task["id"])
    assert hub.calls[-1].method == "host.refuseTask"
    assert hub.calls[-1].kwargs["msg"].startswith("No access to repos dir")
    assert FakeCreaterepoAdapter.calls == []


# == the real adapters (Podman and the task image) ==========================================


def _register_rpms(hub: HubFake, paths: Sequence[Path], tag: str) -> set[str]:
    """Import RPMs into the fake hub, tagged, and store them where a Koji topdir keeps them;
    returns the binary packages' names."""
    names = set()
    for path in paths:
        head = kt.rpm_header(path)
        if head["arch"] == "src":
            continue
        build_name = str(head["sourcerpm"]).rsplit("-", 2)[0]
        hub.add_rpm(
            str(head["name"]),
            str(head["version"]),
            str(head["release"]),
            str(head["arch"]),
            epoch=head["epoch"],
            payloadhash=str(head["payloadhash"]),
            size=path.stat().st_size,
            buildtime=int(head["buildtime"]),  # type: ignore[arg-type]
            build_name=build_name,
            tags=(tag,),
        )
        # koji.pathinfo's layout (HubFake.rpm_path joins an absolute path: not usable)
        dest = (
            Path(hub.topdir)
            / "packages"
            / build_name
            / str(head["version"])
            / str(head["release"])
            / str(head["arch"])
            / path.name
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        kt.link_or_copy(path, dest)
        names.add(str(head["name"]))
    return names


def _make_repo_ready(
    hub: HubFake, repo: dict[str, Any], groups: Mapping[str, Sequence[str]]
) -> Path:
    """What the createrepo task and repoDone would add: groups and repodata."""
    repo_dir = Path(hub.repo_dir(repo["id"]))
    (repo_dir / "groups" / "comps.xml").write_text(kt.generate_comps(groups))
    arch_dir = repo_dir / ARCH
    kt.run_createrepo(arch_dir)
    for path in repo_dir.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return arch_dir


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """debian-buildtools (the build group of image mode) and adj-libgreet, built on the host."""
    kt.ensure_rpm_tools()
    out = tmp_path_factory.mktemp("tools")
    rpms: list[Path] = []
    for spec in (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet")):
        rpms += kt.build_package(spec, out, defines={"dist": ".el1"}).rpms
    return rpms


@pytest.fixture
def real_world(
    hub: HubFake, dev_distro: DevDistro, tools: list[Path], hello: kt.BuiltPackage
) -> World:
    """A tag whose repo holds the dev distribution (its build group) and adj-libgreet: what
    a tag-made buildroot installs from."""
    tag = hub.add_tag(TAG, arches=ARCH, extra={"rpm.macro.dist": DIST})
    libgreet = [p for p in tools if p.name.startswith("adj-libgreet")]
    _register_rpms(hub, [*dev_distro.rpms, *libgreet], TAG)
    repo = hub.add_repo(TAG)
    _make_repo_ready(hub, repo, dev_distro.groups)
    shutil.copy(hello.srpm, Path(hub.topdir) / "work" / hello.srpm.name)
    bash = glibc = {}
    return World(tag, repo, bash, glibc, hello.srpm.name)


def _add_srpm(hub: HubFake, spec: str, tmp_path: Path) -> str:
    srpm = kt.build_srpm(kt.spec_path(spec), tmp_path / "srpms", defines={"dist": DIST})
    shutil.copy(srpm, Path(hub.topdir) / "work" / srpm.name)
    return srpm.name


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("network", ["auto", "repo"])
def test_real_noarch_build_with_kept_srpm(
    handlers: Handlers,
    hub: HubFake,
    real_world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    network: str,
    request: pytest.FixtureRequest,
    dev_distro: DevDistro,
) -> None:
    values = {"podman_socket": podman_socket, "task_image": image, "network": network}
    if network == "repo":
        # the hub fake listens on loopback, which containers cannot reach: serve its topdir
        # where containers on podman's bridge reach it, as buildroot_topurl
        served, base = request.getfixturevalue("http_dir")
        shutil.copytree(hub.topdir, served / "kojifiles", symlinks=True)
        values["buildroot_topurl"] = f"{base}/kojifiles"
    conf(**values)
    task_id = build_task(hub, real_world, arch="noarch", keep_srpm=True)
    hub.clear_calls()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    rel = upload_dir(task_id)
    result = task.result
    assert result["rpms"] == [f"{rel}/adj-hello-1.0-1{DIST}.noarch.rpm"]
    assert result["srpms"] == [f"{rel}/adj-hello-1.0-1{DIST}.src.rpm"]
    assert {
        "build.log",
        "root.log",
        "state.log",
        "noarch_rpmdiff.json",
        "buildroot_config.log",
        "hw_info.log",
        "installed_pkgs.log",
    } <= {p.rsplit("/", 1)[1] for p in result["logs"]}
    assert hub_methods(hub) == [*KOJID_BUILD_ARCH_CALLS, "host.closeTask"]
    broot = hub.buildroot(result["brootid"])
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
    # the hub accepted (strictly) a list that is exactly the tag's build group
    listed = hub.buildroot_rpms(broot.id)
    assert sorted(r["name"] for r in listed) == sorted(dev_distro.groups["build"])
    assert {r["external_repo_name"] for r in listed} == {"INTERNAL"}
    for path in result["rpms"] + result["srpms"] + result["logs"]:
        assert os.path.getsize(os.path.join(hub.workdir, path)) > 0
    srpm = os.path.join(hub.workdir, result["srpms"][0])
    assert kt.rpm_header(srpm, "vendor", "distribution")["vendor"] == options.vendor
    # build.log streamed while the build ran
    assert len(hub.upload_chunks(f"{rel}/root.log")) > 1


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_real_failed_build(
    handlers: Handlers,
    hub: HubFake,
    real_world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    tmp_path: Path,
    manager: Any,
) -> None:
    conf(podman_socket=podman_socket, task_image=image, network="none")
    real_world.srpm_name = _add_srpm(hub, "adj-failbuild", tmp_path)
    task_id = build_task(hub, real_world, arch=ARCH)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is not None and task.fault[0] == koji.BuildError.faultCode
    assert task.fault[1].startswith("error building package (arch x86_64)")
    assert "see build.log" in task.fault[1]
    (broot,) = hub.buildroots
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
    assert any(c.method == "host.updateBuildRootList" for c in hub.calls)
    build_log = hub.upload_bytes(f"{upload_dir(task_id)}/build.log")
    assert b"adj-failbuild" in build_log or b"exit" in build_log
    # the failed root was kept (keep_failed_root, 4 h by default); `koji save-failed-tree`
    # gets its /builddir as koji's save_failed_tree plugin gets a mock root's
    kept = f"localhost/koji-adjutant-kept:{task_id}"
    try:
        save = hub.add_task("saveFailedTree", [broot.id], host=HOST)
        kojidloader.run_task(handlers.save_failed_tree, session, options, save["id"])
        assert hub.task(save["id"]).fault is None, hub.task(save["id"]).fault
        name = f"{upload_dir(save['id'])}/broot-{broot.id}.tar.gz"
        with tarfile.open(fileobj=io.BytesIO(hub.upload_bytes(name)), mode="r:gz") as tar:
            names = tar.getnames()
            spec = next(m for m in tar.getmembers() if m.name.endswith("adj-failbuild.spec"))
            assert spec.isreg() and b"adj-failbuild" in tar.extractfile(spec).read()  # type: ignore[union-attr]
        assert all(n == "builddir" or n.startswith("builddir/") for n in names), names[:5]
    finally:
        manager.remove_image(kept)
    # without a kept root the task fails, saying why
    again = hub.add_task("saveFailedTree", [broot.id], host=HOST)
    kojidloader.run_task(handlers.save_failed_tree, session, options, again["id"])
    fault = hub.task(again["id"]).fault
    assert fault is not None and "has no kept root on this builder" in fault[1]


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_real_build_next_to_planted_links_and_fifos_uploads_none_of_them(
    handlers: Handlers,
    hub: HubFake,
    real_world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    tmp_path: Path,
    dev_distro: DevDistro,
) -> None:
    """A buildroot package (adj-planter, installed as a BuildRequires) plants symlinks to a
    host file named like RPMs and logs, FIFOs named like them, and links where the capped
    log's temporary file goes; the build itself (adj-plantee) plants links, a FIFO, a hard
    link and a directory named like results in rpmbuild's staging dirs. Through kojid's upload
    path, none is listed, uploaded or written, and the task does not hang."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text(f"HOST SECRET {os.getpid()} {time.time()}\n")
    before = secret.read_bytes()
    planter = kt.build_package(
        kt.spec_path("adj-planter"), tmp_path / "planter", defines={"adj_host_file": str(secret)}
    )
    _register_rpms(hub, list(planter.rpms), TAG)
    real_world.repo = hub.add_repo(TAG)
    _make_repo_ready(hub, real_world.repo, dev_distro.groups)
    real_world.srpm_name = _add_srpm(hub, "adj-plantee", tmp_path)
    conf(podman_socket=podman_socket, task_image=image, network="none", log_cap_bytes="64K")
    task_id = build_task(hub, real_world, arch="noarch", keep_srpm=True)
    started = time.monotonic()
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    assert time.monotonic() - started < 300
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    rel = upload_dir(task_id)
    assert task.result["rpms"] == [f"{rel}/adj-plantee-1-1{DIST}.noarch.rpm"]
    assert task.result["srpms"] == [f"{rel}/adj-plantee-1-1{DIST}.src.rpm"]
    uploaded = {path: data for path, data in hub.uploads().items() if path.startswith(rel)}
    names = {path.rsplit("/", 1)[1] for path in uploaded}
    assert not {
        n
        for n in names
        if any(
            word in n for word in ("planted", "fifo", "koji-adjutant-tmp", "adj-hard", "adj-dir")
        )
    }
    assert {"root.log", "build.log", "state.log"} <= names
    for path, data in uploaded.items():
        assert before not in data, path
    assert b"ADJ-PLANTER: PLANTED" in uploaded[f"{rel}/root.log"]
    assert b"earlier bytes dropped" in uploaded[f"{rel}/build.log"]
    assert b"dnf.fifo.log: a FIFO, not a regular file" in uploaded[f"{rel}/state.log"]
    # what the build user planted in rpmbuild's staging dirs (adj-plantee's %build)
    for planted in (
        b"adj-planted-1-1.noarch.rpm: a symlink",
        b"adj-fifo-1-1.noarch.rpm: a FIFO",
        b"adj-hard-1-1.noarch.rpm: a hard link",
        b"adj-planted-1-1.src.rpm: a symlink",
    ):
        assert planted in uploaded[f"{rel}/state.log"], planted
    assert secret.read_bytes() == before


@pytest.fixture(scope="module")
def image_with_rpms(tmp_path_factory: pytest.TempPathFactory, image: str) -> Iterator[str]:
    """The dev image with one RPM in its rpmdb (adj-imagepkg, not in Koji): what an RPM-based
    image brings into an image mode buildroot."""
    out = tmp_path_factory.mktemp("imagepkg")
    [rpm] = kt.build_package(kt.spec_path("adj-imagepkg"), out).rpms
    name = f"adj-imagepkg-{os.getpid()}"
    ref = f"localhost/koji-adjutant-test:image-rpms-{os.getpid()}"
    made = podman_cli(
        "run",
        "--name",
        name,
        "--ulimit",
        "nofile=16384:16384",
        "--ulimit",
        "nproc=16384:16384",
        "-v",
        f"{rpm}:/tmp/imagepkg.rpm:ro",
        image,
        "rpm",
        "-i",
        "--nodeps",
        "/tmp/imagepkg.rpm",
    )
    assert made.returncode == 0, made.stderr
    committed = podman_cli("commit", "-q", name, ref)
    podman_cli("rm", "-f", name)
    assert committed.returncode == 0, committed.stderr
    yield ref
    podman_cli("rmi", "-f", ref)


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_real_image_mode_records_the_images_rpms_with_the_external_repo(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image_with_rpms: str,
    podman_socket: str,
    tools: list[Path],
    hello: kt.BuiltPackage,
) -> None:
    """Image mode with image_external_repo: the image's own RPMs reach the hub with the
    external repo's id as their location, which kojihub's strict setBuildRootList accepts."""
    erepo = hub.add_external_repo("image-repo", "http://images.example/$arch/")
    tag = hub.add_tag(TAG, arches=ARCH, extra={"rpm.macro.dist": DIST})
    _register_rpms(hub, tools, TAG)
    repo = hub.add_repo(TAG)
    _make_repo_ready(hub, repo, kt.DEFAULT_GROUPS)
    shutil.copy(hello.srpm, Path(hub.topdir) / "work" / hello.srpm.name)
    world = World(tag, repo, {}, {}, hello.srpm.name)
    conf(
        podman_socket=podman_socket,
        task_image=image_with_rpms,
        buildroot_mode="image",
        image_external_repo="image-repo",
        network="none",
    )
    task_id = build_task(hub, world, arch="noarch")
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    listed = {
        r["name"]: r["external_repo_name"] for r in hub.buildroot_rpms(task.result["brootid"])
    }
    assert listed["adj-imagepkg"] == erepo["name"]
    assert listed["debian-buildtools"] == "INTERNAL"

    # without image_external_repo the image's RPM is left out (Koji cannot know it)
    conf(
        podman_socket=podman_socket,
        task_image=image_with_rpms,
        buildroot_mode="image",
        network="none",
    )
    task_id = build_task(hub, world, arch="noarch")
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    listed = {r["name"] for r in hub.buildroot_rpms(task.result["brootid"])}
    assert "adj-imagepkg" not in listed and "debian-buildtools" in listed


def _createrepo_task(hub: HubFake, repo: dict[str, Any], old: Any) -> int:
    return int(hub.add_task("createrepo", [repo["id"], ARCH, old], host=HOST)["id"])


def _repo_done(
    session: koji.ClientSession, hub: HubFake, repo: dict[str, Any], task_id: int
) -> Path:
    session.host.repoDone(repo["id"], {ARCH: hub.task(task_id).result})
    return Path(hub.repo_dir(repo["id"])) / ARCH / "repodata"


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_real_createrepo_with_and_without_packages_and_old_repo(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    tools: list[Path],
) -> None:
    conf(podman_socket=podman_socket, task_image=image)
    hub.add_tag(TAG, arches=ARCH)
    # no packages: EMPTY_REPO, as kojid writes it
    empty = hub.add_repo(TAG, state=koji.REPO_INIT)
    task_id = _createrepo_task(hub, empty, None)
    kojidloader.run_task(handlers.createrepo, session, options, task_id)
    assert hub.task(task_id).fault is None, hub.task(task_id).fault
    assert "EMPTY_REPO" in hub.task(task_id).result[1]
    assert (_repo_done(session, hub, empty, task_id) / "repomd.xml").is_file()

    # packages: repodata listing them; then a newer repo recycling the old one (--update)
    _register_rpms(hub, tools, TAG)
    first = hub.add_repo(TAG, state=koji.REPO_INIT)
    task_id = _createrepo_task(hub, first, None)
    kojidloader.run_task(handlers.createrepo, session, options, task_id)
    assert hub.task(task_id).fault is None, hub.task(task_id).fault
    files = hub.task(task_id).result[1]
    assert "repomd.xml" in files and "EMPTY_REPO" not in files
    repodata = _repo_done(session, hub, first, task_id)
    primary = next(repodata.glob("*primary.xml.gz"))
    with gzip.open(primary, "rt") as fo:
        text = fo.read()
    assert "debian-buildtools" in text and "adj-libgreet" in text

    second = hub.add_repo(TAG, state=koji.REPO_INIT)
    task_id = _createrepo_task(hub, second, hub.repo(first["id"]))
    hub.clear_calls()
    kojidloader.run_task(handlers.createrepo, session, options, task_id)
    assert hub.task(task_id).fault is None, hub.task(task_id).fault
    log = hub.upload_bytes(f"{upload_dir(task_id)}/createrepo.log")
    assert b"--update" in log
    assert hub_methods(hub)[:3] == ["getTaskInfo", "repoInfo", "repoInfo"]


@pytest.mark.podman
@pytest.mark.usefixtures("no_leaks")
def test_real_createrepo_reports_what_its_container_used_ok_or_failed(
    handlers: Handlers,
    hub: HubFake,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    tools: list[Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 10's per-task accounting for createrepo: the usage of the task's container (its
    cgroup, read before removal) reaches the uploaded state.log, kojid's log and the records
    store, also when createrepo_c fails."""
    state = tmp_path / "state"
    conf(podman_socket=podman_socket, task_image=image, state_dir=state)
    hub.add_tag(TAG, arches=ARCH)
    _register_rpms(hub, tools, TAG)
    ok_repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    ok = _createrepo_task(hub, ok_repo, None)
    with caplog.at_level(logging.INFO, logger="koji"):
        kojidloader.run_task(handlers.createrepo, session, options, ok)
    assert hub.task(ok).fault is None, hub.task(ok).fault
    # a package createrepo_c cannot read: it exits 2
    bad_repo = hub.add_repo(TAG, state=koji.REPO_INIT)
    arch_dir = Path(hub.repo_dir(bad_repo["id"])) / ARCH
    rel = "packages/adj-bad/1/1/noarch/adj-bad-1-1.noarch.rpm"
    (Path(hub.topdir) / rel).parent.mkdir(parents=True)
    (Path(hub.topdir) / rel).write_bytes(b"not an rpm")
    with open(arch_dir / "pkglist", "a", encoding="utf-8") as pkglist:
        pkglist.write(f"toplink/{rel}\n")
    failed = _createrepo_task(hub, bad_repo, None)
    with caplog.at_level(logging.INFO, logger="koji"):
        kojidloader.run_task(handlers.createrepo, session, options, failed)
    fault = hub.task(failed).fault
    assert fault is not None and "exited with status 2" in fault[1], fault

    by_task = {r["task_id"]: r for r in records.read_records(str(state), kind="finished")}
    assert (by_task[ok]["outcome"], by_task[failed]["outcome"]) == ("ok", "failed")
    for task_id in (ok, failed):
        record = by_task[task_id]
        assert record["method"] == "createrepo"
        assert record["cpu_seconds"] > 0, record
        assert record["peak_memory_bytes"] > 1 << 20, record
        assert record["bytes_written"] >= 0, record
        log = hub.upload_bytes(f"{upload_dir(task_id)}/state.log").decode()
        [usage] = [line for line in log.splitlines() if "Usage of the createrepo container" in line]
        assert usage.endswith(
            f"peak memory {record['peak_memory_bytes'] / 1048576:.1f} MiB,"
            f" CPU {record['cpu_seconds']:.2f} s, written {record['bytes_written']} bytes"
        ), usage
        assert "createrepo_c (createrepo.log) exited with status" in log
        assert f"createrepo container of task {task_id} used: peak memory" in caplog.text
    assert (
        "Finished: createrepo succeeded" in hub.upload_bytes(f"{upload_dir(ok)}/state.log").decode()
    )
    assert (
        "Failed: failed to create repo"
        in hub.upload_bytes(f"{upload_dir(failed)}/state.log").decode()
    )


def _run_killable_build(
    hub: HubFake, options: Any, handlers_source: Any, task_id: int, ready: Path
) -> subprocess.Popen[bytes]:
    """A child process that runs a buildArch task as a forked kojid task (kojid's SIGTERM
    handler included) and signals ``ready`` once its container exists."""
    code = f"""
import os, signal, sys, time, threading
sys.path.insert(0, {str(Path(__file__).parent)!r})
import koji, kojidloader
from koji_adjutant.kojid import make_handlers
import koji_adjutant
def shutdown(*args):
    raise SystemExit
signal.signal(signal.SIGTERM, shutdown)   # kojid's main() handler, inherited by tasks
source = {str(handlers_source) if handlers_source else None!r}
kojid = kojidloader.load_kojid(source) if source else None
handlers = make_handlers(kojid)
master = koji.ClientSession({hub.url!r}, {{"user": {HOST!r}, "password": "x", "max_retries": 0,
                            "use_fast_upload": True}})
master.login(); master.exclusiveSession(force=True)
session = master.subsession()
options = kojidloader.kojid_options(topdir={options.topdir!r}, topurl={options.topurl!r},
                                    workdir={options.workdir!r})
manager = koji_adjutant.PodmanManager(os.environ["KOJI_ADJUTANT_PODMAN_SOCKET"],
                                      worker_id={WORKER_ID!r})
def watch():
    # this worker's: other test runs on the host use the same small task ids
    while not manager.list_containers({{"io.koji.adjutant.task_id": "{task_id}",
                                       "io.koji.adjutant.worker_id": {WORKER_ID!r}}}):
        time.sleep(0.2)
    open({str(ready)!r}, "w").close()
threading.Thread(target=watch, daemon=True).start()
kojidloader.run_task(handlers.build_arch, session, options, {task_id})
"""
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_task_leaves_no_container(
    hub: HubFake,
    real_world: World,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    manager: koji_adjutant.PodmanManager,
    sig: signal.Signals,
    tmp_path: Path,
    kojid: Any,
    handlers: Handlers,
    request: pytest.FixtureRequest,
) -> None:
    """kojid's cleanupTask: SIGINT and SIGTERM are caught and the adapter removes its
    container; after SIGKILL the next task on this worker reaps it."""
    conf(podman_socket=podman_socket, task_image=image, network="none")
    task_id = build_task(hub, real_world, arch="noarch")
    ready = tmp_path / "container-exists"
    child = _run_killable_build(
        hub, options, kojidloader.kojid_source() if kojid else None, task_id, ready
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the task ended before its container existed"
            assert time.monotonic() < deadline, "no container within 120 s"
            time.sleep(0.2)
        child.send_signal(sig)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    labels = {LABEL_WORKER: WORKER_ID, LABEL_TASK: str(task_id)}
    left = manager.list_containers(labels)
    if sig != signal.SIGKILL:
        assert left == [], f"{sig.name}: the adapter left {left}"
        return
    # SIGKILL cannot be caught: the task's containers (build, and bootstrap while it
    # installs) stay until reaped
    assert left, "SIGKILL cannot be caught: the containers stay until reaped"
    assert {c["labels"]["io.koji.adjutant.role"] for c in left} <= {"build", "bootstrap"}
    # the next task on this worker reaps it (the dead task's lease names a dead process);
    # its host session is made now: the child's exclusive login ended earlier ones
    session = request.getfixturevalue("session")
    next_task = build_task(hub, real_world, arch="noarch")
    kojidloader.run_task(handlers.build_arch, session, options, next_task)
    assert hub.task(next_task).fault is None, hub.task(next_task).fault
    assert manager.list_containers(labels) == []


@pytest.mark.podman
@pytest.mark.usefixtures("no_leaks")
def test_reaper_cli_and_plugin_start_remove_leftovers(
    manager: koji_adjutant.PodmanManager,
    image: str,
    podman_socket: str,
    conf: Callable[..., Path],
    tmp_path: Path,
) -> None:
    conf(podman_socket=podman_socket, task_image=image)
    spec = koji_adjutant.ContainerSpec(image, ["sleep", "300"], task_id=4242)
    handle = manager.create(spec)
    manager.start(handle)
    labels = {LABEL_WORKER: WORKER_ID, LABEL_TASK: "4242"}
    assert len(manager.list_containers(labels)) == 1
    from koji_adjutant.kojid.__main__ import main

    # a live lease keeps it
    task_dir = tmp_path / koji.pathinfo.taskrelpath(4242)
    task_dir.mkdir(parents=True)
    reaper.write_lease(str(task_dir), 4242, WORKER_ID)
    assert main(["reap", "--workdir", str(tmp_path)]) == 0
    assert len(manager.list_containers(labels)) == 1
    # without it the container is an orphan
    os.unlink(task_dir / reaper.LEASE_NAME)
    assert main(["reap", "--workdir", str(tmp_path)]) == 0
    assert manager.list_containers(labels) == []
    # kojid start removes everything of the worker
    manager.start(manager.create(spec))
    kojidloader.load_plugin(None)
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []


def test_the_result_dict_is_kojids_and_checks_the_kept_srpm() -> None:
    """The glue's buildArch result comes from the core (one implementation of kojid's dict):
    upload-relative paths, and kojid's BuildError when a kept SRPM is missing or not alone."""
    up = "tasks/7/7"
    kw: dict[str, Any] = {"logs": ["build.log", "root.log"], "brootid": 3}
    ret = koji_adjutant.kojid_build_result(
        up, 7, rpms=["/w/result/a-1-1.noarch.rpm"], srpms=["/w/a-1-1.src.rpm"], keep_srpm=True, **kw
    )
    assert ret == {
        "rpms": [f"{up}/a-1-1.noarch.rpm"],
        "srpms": [f"{up}/a-1-1.src.rpm"],
        "logs": [f"{up}/build.log", f"{up}/root.log"],
        "brootid": 3,
    }
    dropped = koji_adjutant.kojid_build_result(
        up, 7, rpms=[], srpms=["/w/a-1-1.src.rpm"], keep_srpm=False, **kw
    )
    assert dropped["srpms"] == []
    with pytest.raises(koji_adjutant.BuildError, match=r"^no srpm files found for task 7$"):
        koji_adjutant.kojid_build_result(up, 7, rpms=[], srpms=[], keep_srpm=True, **kw)
    two = ["/w/a-1-1.src.rpm", "/w/b-1-1.src.rpm"]
    with pytest.raises(
        koji_adjutant.BuildError,
        match=re.escape("multiple srpm files found for task 7: ['a-1-1.src.rpm', 'b-1-1.src.rpm']"),
    ):
        koji_adjutant.kojid_build_result(up, 7, rpms=[], srpms=two, keep_srpm=True, **kw)
