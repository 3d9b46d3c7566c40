"""Many tasks on one builder: kojid runs several tasks at once (``maxjobs``), each in a
process of its own, all through one podman service.

A builder process does what kojid's ``TaskManager`` does with the tasks it takes: makes each
handler from the task's request on the host's exclusive session, then ``forkTask`` (PyPI
koji's own code: a subsession, ``fork``, ``runTask``, ``closeTask``/``failTask``). Eight tasks
of both methods run at once against the hub fake:

* five buildArch tasks, each of its own package, from the same repo of the same tag, with the
  buildroot cache on and nothing cached for that repo yet: five cold builds of one cache key;
* three createrepo tasks, each for a repo of its own tag holding other packages.

Each task's result, hub calls, uploads, logs, buildroot record and records line must be its
own: no upload into another task's directory and no call about another task's buildroot from
its session, no other task's package or work dir in its logs, nothing left in the temp dir all
of them share. The five cold builds must leave one cache image of their key and hand the hub
identical buildroot lists.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import koji
import kojidloader
import kojitopdir as kt
import pytest
import test_kojid_glue as glue
from conftest import LABEL_WORKER, WORKER_ID
from hubfake import HubFake
from koji_adjutant import PodmanManager, records
from koji_adjutant.devdistro import DevDistro

# koji's ClientSession.fastUpload leaves its file open (koji 1.35/1.36)
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")

HOST = "builder1"
ARCH = "x86_64"
BUILD_TAG = "conc-build"
DIST = ".fc40"
N_BUILDS = 5
REPO_TAGS = ("conc-repo-a", "conc-repo-b", "conc-repo-c")
#: The whole run: five cold builds and three createrepos at once take about a minute here.
DEADLINE = 300
KEY_LABEL = "io.koji.adjutant.buildroot.key"
_FRESH_KEY = re.compile(r"Creating build container from \S+ \(fresh buildroot, cache key (\w+)\)")
_CACHED_KEY = re.compile(r"Creating build container from \S+ \(cached buildroot (\w+)\)")

#: The builder: kojid's TaskManager taking every task and forking one child per task.
BUILDER = r"""
import json, os, sys
args = json.loads(sys.argv[1])
sys.path.insert(0, args["tests"])
import koji, kojidloader
from koji_adjutant.kojid import make_handlers

kojid = kojidloader.load_kojid(args["kojid"]) if args["kojid"] else None
handlers = make_handlers(kojid)
classes = {"buildArch": handlers.build_arch, "createrepo": handlers.createrepo}
master = koji.ClientSession(args["hub"], args["session_opts"])
master.login()
master.exclusiveSession(force=True)
options = kojidloader.kojid_options(**args["options"])
manager = kojidloader.task_manager(master)
children = {}
for task_id, method in args["tasks"]:
    # TaskManager.takeTask: the handler from the task's request, then forkTask
    handler = kojidloader.make_handler(classes[method], master, options, task_id)
    pid, session_id = manager.forkTask(handler)
    children[pid] = (task_id, session_id)
sessions, statuses = {}, {}
while children:
    pid, status = os.waitpid(-1, 0)
    task_id, session_id = children.pop(pid)
    sessions[task_id], statuses[task_id] = session_id, status
master.logout()
print(json.dumps({"sessions": sessions, "statuses": statuses}))
"""


def _package_spec(index: int, token: str) -> str:
    """A noarch package of its own per build task; its build prints a line naming it."""
    name = f"adj-conc{index}"
    return textwrap.dedent(
        f"""\
        Name: {name}
        Version: 1.0
        Release: 1%{{?dist}}
        Summary: concurrency test package {index}
        License: MIT
        BuildArch: noarch

        %description
        Built by one of several buildArch tasks running at once.

        %prep
        %setup -q -c -T
        echo '{name} {token}' > marker.txt

        %build
        echo 'ADJ-CONC-BUILD {name} {token}'

        %install
        install -D -m 0644 marker.txt %{{buildroot}}%{{_datadir}}/{name}/marker.txt

        %files
        %{{_datadir}}/{name}/
        """
    )


@dataclass
class Planned:
    task_id: int
    method: str
    #: buildArch: the package name; createrepo: the tag
    name: str
    #: createrepo: the repo and the package names its repodata must list
    repo: dict[str, Any] | None = None
    expected: frozenset[str] = frozenset()


def _primary_names(repodata: Path) -> frozenset[str]:
    """The package names repodata's primary.xml lists."""
    (primary,) = repodata.glob("*primary.xml.gz")
    with gzip.open(primary, "rt", encoding="utf-8") as handle:
        return frozenset(re.findall(r"<name>([^<]+)</name>", handle.read()))


def _cache_images(manager: PodmanManager, key: str) -> list[str]:
    return [str(i["id"]) for i in manager.list_images({KEY_LABEL: key})]


@dataclass
class Run:
    """What the eight tasks left behind, looked at by the tests below."""

    hub: HubFake
    planned: list[Planned]
    #: task id -> the hub session its process used, and its exit status
    sessions: dict[int, int]
    statuses: dict[int, int]
    token: str
    workdir: Path
    shared_tmp: Path
    log_dir: Path
    state_dir: Path
    seconds: float
    #: cache key -> the cache images of that key right after the run
    cache: dict[str, list[str]]
    #: containers of this worker right after the run
    left: list[dict[str, Any]]


@pytest.fixture(scope="module")
def repo_packages(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Packages for the createrepo tags, one set each: debian-buildtools, adj-libgreet,
    adj-hello."""
    kt.ensure_rpm_tools()
    out = tmp_path_factory.mktemp("conc-repo-rpms")
    specs = (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet"), kt.spec_path("adj-hello"))
    return [list(kt.build_package(spec, out, defines={"dist": ".el1"}).rpms) for spec in specs]


@pytest.fixture(scope="module")
def run(
    dev_distro: DevDistro,
    repo_packages: list[list[Path]],
    manager: PodmanManager,
    image: str,
    podman_socket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    """The eight tasks, run once for the module's tests; their cache images removed after."""
    base = tmp_path_factory.mktemp("concurrency")
    top = base / "koji"
    top.mkdir()
    top.chmod(0o755)
    with HubFake(topdir=str(top)) as hub:
        hub.add_host(HOST, arches="x86_64 noarch", capacity=16.0)
        cache: dict[str, list[str]] = {}
        try:
            yield _run_tasks(
                hub, base, dev_distro, repo_packages, manager, image, podman_socket, cache
            )
        finally:
            for ids in cache.values():
                for image_id in ids:
                    manager.remove_image(image_id)


def _run_tasks(
    hub: HubFake,
    base: Path,
    dev_distro: DevDistro,
    repo_packages: list[list[Path]],
    manager: PodmanManager,
    image: str,
    podman_socket: str,
    cache: dict[str, list[str]],
) -> Run:
    token = f"{os.getpid()}-{time.time_ns()}"
    # the build tag: the dev distribution, its build group, one READY repo
    hub.add_tag(BUILD_TAG, arches=ARCH, extra={"rpm.macro.dist": DIST})
    glue._register_rpms(hub, dev_distro.rpms, BUILD_TAG)
    build_repo = hub.add_repo(BUILD_TAG)
    repo_dir = Path(hub.repo_dir(build_repo["id"]))
    (repo_dir / "groups" / "comps.xml").write_text(kt.generate_comps(dev_distro.groups))
    kt.run_createrepo(repo_dir / ARCH)
    for path in repo_dir.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    planned: list[Planned] = []
    for index in range(N_BUILDS):
        spec = base / "specs" / f"adj-conc{index}.spec"
        spec.parent.mkdir(exist_ok=True)
        spec.write_text(_package_spec(index, token))
        srpm = kt.build_srpm(spec, base / "srpms", defines={"dist": DIST})
        shutil.copy(srpm, Path(hub.topdir) / "work" / srpm.name)
        request = [srpm.name, BUILD_TAG, ARCH, False, {"repo_id": build_repo["id"]}]
        task = hub.add_task("buildArch", request, arch=ARCH, host=HOST)
        planned.append(Planned(int(task["id"]), "buildArch", f"adj-conc{index}"))
    # three tags of other packages, each with a repo in INIT for its createrepo task
    for tag, rpms in zip(REPO_TAGS, repo_packages):
        hub.add_tag(tag, arches=ARCH)
        names = glue._register_rpms(hub, rpms, tag)
        repo = hub.add_repo(tag, state=koji.REPO_INIT)
        task = hub.add_task("createrepo", [repo["id"], ARCH, None], host=HOST)
        planned.append(Planned(int(task["id"]), "createrepo", tag, repo, frozenset(names)))
    # interleave the methods, as tasks arrive at a builder
    order = [p for pair in zip(planned[:N_BUILDS], planned[N_BUILDS:]) for p in pair]
    order += planned[len(REPO_TAGS) : N_BUILDS]
    assert sorted(p.task_id for p in order) == sorted(p.task_id for p in planned)

    workdir = base / "kojid-work"
    workdir.mkdir()
    shared_tmp = base / "tmp"
    shared_tmp.mkdir()
    log_dir, state_dir, cache_dir = (base / d for d in ("logs", "state", "cache"))
    config = base / "adjutant.conf"
    config.write_text(
        "[adjutant]\n"
        f"worker_id = {WORKER_ID}\n"
        f"podman_socket = {podman_socket}\n"
        f"task_image = {image}\n"
        "network = none\n"
        "buildroot_cache = yes\n"
        f"buildroot_cache_dir = {cache_dir}\n"
        # far above what exists: eviction is global over the host's cache images
        "buildroot_cache_max_entries = 1000000\n"
        "buildroot_cache_max_bytes = 1024T\n"
        f"log_dir = {log_dir}\n"
        f"state_dir = {state_dir}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJI_ADJUTANT_")}
    env.update(
        KOJI_ADJUTANT_CONFIG=str(config),
        KOJI_ADJUTANT_PODMAN_SOCKET=podman_socket,
        TMPDIR=str(shared_tmp),
    )
    source = kojidloader.kojid_source()
    args = {
        "tests": str(Path(__file__).parent),
        "kojid": str(source) if source else None,
        "hub": hub.url,
        "session_opts": hub.client_opts(HOST, use_fast_upload=True),
        "options": {"topdir": hub.topdir, "topurl": hub.topurl, "workdir": str(workdir)},
        "tasks": [(p.task_id, p.method) for p in order],
    }
    started = time.monotonic()
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = builder.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(builder.pid, signal.SIGKILL)
        out, err = builder.communicate()
        pytest.fail(f"the tasks did not end within {DEADLINE} s: {err[-3000:]}")
    finally:
        # whatever happened, the cache images the builds stored are removed after the tests
        for key in _state_log_keys(hub, planned):
            cache[key] = _cache_images(manager, key)
    seconds = time.monotonic() - started
    assert builder.returncode == 0, err[-3000:]
    ran = json.loads(out.strip().splitlines()[-1])
    return Run(
        hub=hub,
        planned=planned,
        sessions={int(k): v for k, v in ran["sessions"].items()},
        statuses={int(k): v for k, v in ran["statuses"].items()},
        token=token,
        workdir=workdir,
        shared_tmp=shared_tmp,
        log_dir=log_dir,
        state_dir=state_dir,
        seconds=seconds,
        cache=dict(cache),
        left=manager.list_containers({LABEL_WORKER: WORKER_ID}),
    )


def _state_log_keys(hub: HubFake, planned: Sequence[Planned]) -> set[str]:
    """The cache keys the buildArch tasks' uploaded state.logs name."""
    keys: set[str] = set()
    for p in planned:
        if p.method != "buildArch":
            continue
        path = Path(hub.workdir) / koji.pathinfo.taskrelpath(p.task_id) / "state.log"
        if path.is_file():
            text = path.read_text(errors="replace")
            keys.update(_FRESH_KEY.findall(text) + _CACHED_KEY.findall(text))
    return keys


@pytest.mark.podman
@pytest.mark.slow
def test_eight_concurrent_tasks_each_keep_their_own_logs_records_and_results(
    run: Run, dev_distro: DevDistro
) -> None:
    hub, planned = run.hub, run.planned
    assert run.left == [], "containers left behind"
    assert run.statuses == {p.task_id: 0 for p in planned}
    assert len(set(run.sessions.values())) == len(planned), "tasks shared a hub session"
    for p in planned:
        task = hub.task(p.task_id)
        assert task.fault is None, (p.task_id, task.fault)
    _check_hub_calls(run)
    _check_builds(run, dev_distro)
    _check_createrepos(run)
    # one line per task in the builder's records, each with its own outcome
    finished = records.read_records(str(run.state_dir), kind="finished")
    assert sorted((r["task_id"], r["method"], r["outcome"]) for r in finished) == sorted(
        (p.task_id, p.method, "ok") for p in planned
    )
    # nothing left in the temp dir all the tasks share, nor in kojid's work dir
    assert list(run.shared_tmp.iterdir()) == []
    assert [p for p in run.workdir.rglob("*") if not p.is_dir()] == []


@pytest.mark.podman
@pytest.mark.slow
def test_concurrent_cold_builds_of_one_key_leave_one_cache_entry(run: Run) -> None:
    assert len(run.cache) == 1, f"builds of one repo used several cache keys: {run.cache}"
    ((key, images),) = run.cache.items()
    assert len(images) == 1, f"cache key {key}: {len(images)} cache images {images}"
    # one build installed the root (holding the key's lock); the others waited and used it
    fresh = cached = 0
    for p in run.planned:
        if p.method == "buildArch":
            rel = koji.pathinfo.taskrelpath(p.task_id)
            text = (Path(run.hub.workdir) / rel / "state.log").read_text(errors="replace")
            fresh += len(_FRESH_KEY.findall(text))
            cached += len(_CACHED_KEY.findall(text))
    assert (fresh, cached) == (1, N_BUILDS - 1)


def _check_hub_calls(run: Run) -> None:
    """Every call a task's session made is about that task: uploads into its own dir, its
    own buildroot, its own close."""
    hub = run.hub
    task_of_session = {sid: task_id for task_id, sid in run.sessions.items()}
    broot_task = {b.id: b.task_id for b in hub.buildroots}
    seen = set()
    for call in hub.calls:
        owner = task_of_session.get(call.session_id)  # type: ignore[arg-type]
        if owner is None:
            continue
        seen.add(owner)
        if call.method in ("rawUpload", "uploadFile", "checkUpload"):
            assert call.args[0] == koji.pathinfo.taskrelpath(owner), (owner, call)
        elif call.method == "host.newBuildRoot":
            assert call.kwargs.get("task_id") == owner, (owner, call)
        elif call.method.startswith("host.") and "BuildRoot" in call.method:
            assert broot_task[call.args[0]] == owner, (owner, call)
        elif call.method in ("host.closeTask", "host.failTask", "host.setTaskWeight"):
            assert call.args[0] == owner, (owner, call)
    assert seen == {p.task_id for p in run.planned}


def _check_builds(run: Run, dev_distro: DevDistro) -> None:
    """Each build's result, buildroot record and logs name its own package only, and the
    five buildroot lists are identical."""
    hub = run.hub
    uploads = hub.uploads()
    builds = [p for p in run.planned if p.method == "buildArch"]
    task_dirs = {
        p.task_id: str(run.workdir / koji.pathinfo.taskrelpath(p.task_id)) for p in run.planned
    }
    lists = {}
    for p in builds:
        rel = koji.pathinfo.taskrelpath(p.task_id)
        result = hub.task(p.task_id).result
        assert result["rpms"] == [f"{rel}/{p.name}-1.0-1{DIST}.noarch.rpm"]
        broot = hub.buildroot(result["brootid"])
        assert broot.task_id == p.task_id
        assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
        lists[p.task_id] = sorted(
            (r["name"], r["version"], r["release"], r["arch"]) for r in hub.buildroot_rpms(broot.id)
        )
        mine = {path: data for path, data in uploads.items() if path.startswith(rel + "/")}
        assert {f"{rel}/{n}" for n in ("build.log", "root.log", "state.log")} <= set(mine)
        assert set(result["logs"]) <= set(mine)
        marker = f"ADJ-CONC-BUILD {p.name} {run.token}".encode()
        assert marker in mine[f"{rel}/build.log"]
        text = b"".join(data for path, data in mine.items() if path.endswith(".log"))
        text += (run.log_dir / str(p.task_id) / "container.log").read_bytes()
        assert marker in text
        for other in builds:
            if other is not p:
                assert other.name.encode() not in text, (p.task_id, other.name)
        for task_id, path in task_dirs.items():
            if task_id != p.task_id:
                assert path.encode() not in text, (p.task_id, path)
    assert len(lists) == N_BUILDS
    first = next(iter(lists.values()))
    assert {name for name, *_ in first} == set(dev_distro.groups["build"])
    assert all(listed == first for listed in lists.values()), "buildroot lists differ"


def _check_createrepos(run: Run) -> None:
    """Each createrepo uploaded into its own dir, ran on its own repo, and its repodata
    (once repoDone) lists its own tag's packages."""
    hub = run.hub
    uploads = hub.uploads()
    repos = [p for p in run.planned if p.method == "createrepo"]
    session = hub.host_session(HOST)
    try:
        for p in repos:
            assert p.repo is not None
            rel = koji.pathinfo.taskrelpath(p.task_id)
            uploadpath, files = hub.task(p.task_id).result
            assert uploadpath == rel
            assert "repomd.xml" in files
            log = uploads[f"{rel}/createrepo.log"]
            assert hub.repo_dir(p.repo["id"]).encode() in log
            for other in repos:
                if other is not p:
                    assert other.repo is not None
                    assert hub.repo_dir(other.repo["id"]).encode() not in log
            session.host.repoDone(p.repo["id"], {ARCH: [uploadpath, files]})
            repodata = Path(hub.repo_dir(p.repo["id"])) / ARCH / "repodata"
            assert _primary_names(repodata) == p.expected, p.name
    finally:
        session.logout()
