"""CreaterepoAdapter against real Podman, real RPMs and a real Koji repo layout.

Each test lays out a Koji repo the way the hub's repo_init does (tests/kojitopdir.py), runs the
adapter as kojid's createrepo task would, and reads back what the hub would receive: the
repodata files, their XML, pkgorigins, the logs. External repos are served over HTTP from this
machine, on the podman bridge's gateway address, to the adapter's container.

Run: KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock .venv/bin/python -m pytest \
     tests/test_createrepo.py -q
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kojitopdir as kt
import pytest
from conftest import RecordingSink, podman_cli
from koji_adjutant import (
    ContainerSpec,
    CreaterepoAdapter,
    CreaterepoResult,
    InvalidSpec,
    PodmanManager,
    RepoError,
    ResourceLimits,
    TaskContext,
    TaskRefused,
    VolumeMount,
)

pytestmark = pytest.mark.podman

ARCH = "x86_64"
TAG = "adjcr-build"
NS = {
    "repo": "http://linux.duke.edu/metadata/repo",
    "common": "http://linux.duke.edu/metadata/common",
}
EMPTY_TEXT = "This repo is empty because its tag has no content for this arch\n"
NOBODY = 65534

# --- test packages ------------------------------------------------------------------------

_SPEC = """\
%global debug_package %{{nil}}
Name: {name}
Version: {version}
Release: {release}
Summary: koji-adjutant createrepo test package
License: MIT
{buildarch}
%description
Test data for koji-adjutant's createrepo adapter.
{subpackages}
%prep
%build
%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo %{{_target_cpu}} > %{{buildroot}}/usr/share/{name}/arch.txt
{install}
%files
/usr/share/{name}/arch.txt
{files}
"""

_DOC_SUBPACKAGE = """
%package doc
Summary: documentation
BuildArch: noarch
%description doc
Documentation.
"""


def _write_spec(
    directory: Path, name: str, version: str, release: str, *, noarch: bool, doc: bool
) -> Path:
    spec = directory / f"{name}-{version}-{release}.spec"
    spec.write_text(
        _SPEC.format(
            name=name,
            version=version,
            release=release,
            buildarch="BuildArch: noarch" if noarch else "",
            subpackages=_DOC_SUBPACKAGE if doc else "",
            install=(
                f"mkdir -p %{{buildroot}}/usr/share/doc/{name}\n"
                f"echo doc > %{{buildroot}}/usr/share/doc/{name}/README"
                if doc
                else ""
            ),
            files=f"%files doc\n/usr/share/doc/{name}/" if doc else "",
        ),
        encoding="utf-8",
    )
    return spec


def _build(
    directory: Path,
    name: str,
    version: str = "1.0",
    release: str = "1",
    *,
    arches: Sequence[str] = (),
    doc: bool = False,
) -> list[Path]:
    """The binary RPMs of one build: noarch when no arches, else one rpmbuild --target each
    (the noarch doc subpackage, made by every arch, is kept once)."""
    spec = _write_spec(directory, name, version, release, noarch=not arches, doc=doc)
    out = directory / f"{name}-{version}-{release}"
    rpms: dict[str, Path] = {}
    for target in arches or (None,):
        for rpm in kt.build_rpms(spec, out, target_arch=target):
            rpms.setdefault(rpm.name, rpm)
    return sorted(rpms.values())


@dataclass(frozen=True)
class Koji:
    top: kt.KojiTopdir
    data_v1: kt.KojiBuild
    data_v2: kt.KojiBuild
    external_dir: Path  # a plain yum repo per arch under <external_dir>/<arch>/


@pytest.fixture(scope="module")
def koji(tmp_path_factory: pytest.TempPathFactory) -> Koji:
    try:
        kt.ensure_rpm_tools()
    except kt.MissingToolError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    specs = tmp_path_factory.mktemp("specs")
    top = kt.KojiTopdir(tmp_path_factory.mktemp("koji"))
    # Several arches of one build (and its noarch subpackage), other builds, and two builds
    # of one package: the second is the "changed package" of the --update test.
    top.add_build(_build(specs, "adjcr-multi", arches=("x86_64", "i686", "aarch64"), doc=True))
    data_v1 = top.add_build(_build(specs, "adjcr-data", release="1"))
    top.add_build(_build(specs, "adjcr-extra", arches=("x86_64",)))
    data_v2 = top.add_build(_build(specs, "adjcr-data", release="2"))
    # The external repo: a unique package, one that shares a name with a Koji package, and
    # one the tag blocks.
    external_dir = tmp_path_factory.mktemp("external")
    for arch in (ARCH,):
        repo = external_dir / arch
        repo.mkdir()
        for rpm in [
            *_build(specs, "adjcr-ext"),
            *_build(specs, "adjcr-data", version="9.0"),
            *_build(specs, "adjcr-blocked"),
        ]:
            shutil.copy2(rpm, repo / rpm.name)
        subprocess.run(["createrepo_c", "-q", str(repo)], check=True)
    return Koji(top=top, data_v1=data_v1, data_v2=data_v2, external_dir=external_dir)


_repo_ids = iter(range(100, 10_000))


def _new_repo(koji: Koji, arch: str = ARCH, **kwargs: object) -> kt.KojiRepo:
    """A repo in the state a createrepo task finds it (INIT: no repodata yet)."""
    kwargs.setdefault("with_repodata", False)
    return koji.top.make_repo(TAG, next(_repo_ids), arch, **kwargs)  # type: ignore[arg-type]


# --- running the adapter ------------------------------------------------------------------

_task_ids = iter(range(11_000, 20_000))


def _ctx(tmp_path: Path, name: str = "work") -> TaskContext:
    work = tmp_path / name
    work.mkdir()
    return TaskContext(next(_task_ids), work)


@pytest.fixture
def adapter(manager: PodmanManager, image: str) -> CreaterepoAdapter:
    return CreaterepoAdapter(manager, image, pull_policy="never")


def _run(
    adapter: CreaterepoAdapter, ctx: TaskContext, repo: kt.KojiRepo, **kwargs: object
) -> CreaterepoResult:
    return adapter.run(ctx, repo_dir=repo.arch_dir, **kwargs)  # type: ignore[arg-type]


# --- reading repodata -----------------------------------------------------------------------


def _repomd(repodata: Path) -> dict[str, Path]:
    """repomd.xml's data entries: type -> file."""
    root = ET.parse(repodata / "repomd.xml").getroot()
    entries = {}
    for data in root.findall("repo:data", NS):
        location = data.find("repo:location", NS)
        assert location is not None
        entries[data.attrib["type"]] = repodata.parent / location.attrib["href"]
    return entries


@dataclass(frozen=True)
class Package:
    nvra: str
    href: str
    checksum: str


def _primary(repodata: Path) -> dict[str, Package]:
    with gzip.open(_repomd(repodata)["primary"]) as handle:
        root = ET.parse(handle).getroot()
    packages = {}
    for pkg in root.findall("common:package", NS):
        name = pkg.findtext("common:name", namespaces=NS)
        arch = pkg.findtext("common:arch", namespaces=NS)
        version = pkg.find("common:version", NS)
        location = pkg.find("common:location", NS)
        assert version is not None and location is not None
        nvra = f"{name}-{version.attrib['ver']}-{version.attrib['rel']}.{arch}"
        checksum = pkg.findtext("common:checksum", namespaces=NS) or ""
        packages[nvra] = Package(nvra, location.attrib["href"], checksum)
    assert int(root.attrib["packages"]) == len(packages)
    return packages


def _pkgorigins(repodata: Path) -> dict[str, str]:
    """mergerepo_c's pkgorigins.gz: NVRA -> the URL of the repo it came from."""
    (path,) = repodata.glob("*pkgorigins.gz")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return dict(line.rstrip("\n").split("\t") for line in handle if line.strip())


def _nvras(repo: kt.KojiRepo) -> set[str]:
    return set(repo.nvras)


# --- a full repo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullRepo:
    repo: kt.KojiRepo
    ctx: TaskContext
    result: CreaterepoResult
    sink: RecordingSink


@pytest.fixture(scope="module")
def full(koji: Koji, manager: PodmanManager, image: str) -> Iterator[FullRepo]:
    """One repo of a subset of the tag's packages, with comps groups, made once. Its work dir
    lies outside pytest's private (0700) temp tree, so another user can reach it."""
    repo = _new_repo(
        koji,
        packages=["adjcr-multi", koji.data_v1],
        groups={"build": ("adjcr-multi",), "srpm-build": ("adjcr-data",)},
    )
    base = Path(tempfile.mkdtemp(prefix="adj-createrepo-test-"))
    try:
        base.chmod(0o755)
        work = base / "work"
        work.mkdir()
        ctx = TaskContext(next(_task_ids), work)
        sink = RecordingSink()
        adapter = CreaterepoAdapter(manager, image, pull_policy="never")
        result = adapter.run(ctx, repo_dir=repo.arch_dir, sink=sink)
        yield FullRepo(repo=repo, ctx=ctx, result=result, sink=sink)
    finally:
        shutil.rmtree(base)


def test_only_the_pkglist_packages_are_in_the_repo(full: FullRepo, koji: Koji) -> None:
    primary = _primary(Path(full.result.repodata_dir))
    assert (
        set(primary)
        == _nvras(full.repo)
        == {
            "adjcr-multi-1.0-1.x86_64",
            "adjcr-multi-doc-1.0-1.noarch",
            "adjcr-data-1.0-1.noarch",
        }
    )
    # Packages of the tag not in the pkglist, and other arches of a listed build, stay out.
    assert not any(
        n.startswith("adjcr-extra") or n.endswith((".i686", ".aarch64")) for n in primary
    )
    # Locations are the pkglist entries, relative to the arch dir (through toplink).
    entries = full.repo.pkglist.read_text().split()
    assert sorted(p.href for p in primary.values()) == sorted(entries)


def test_the_result_is_what_kojid_uploads(full: FullRepo) -> None:
    result, ctx = full.result, full.ctx
    work = Path(ctx.work_dir)
    assert Path(result.repodata_dir) == work / "repo" / "repodata"
    assert result.files == sorted(os.listdir(result.repodata_dir))
    assert "repomd.xml" in result.files and "EMPTY_REPO" not in result.files
    assert result.empty is False
    assert [Path(p) for p in result.logs] == [work / "createrepo.log"]
    task = ctx.task_id
    assert result.upload_path == f"tasks/{task % 10000}/{task}"
    assert result.kojid_result() == [result.upload_path, result.files]
    assert result.kojid_result("tasks/x/1") == ["tasks/x/1", result.files]
    with pytest.raises(InvalidSpec):
        result.kojid_result("../escape")


def test_the_log_is_kojids_and_the_sink_gets_the_same_bytes(full: FullRepo) -> None:
    work = Path(full.ctx.work_dir)
    log = (work / "createrepo.log").read_bytes()
    repo = full.repo
    command = (
        f"/usr/bin/createrepo_c --error-exit-val -vd -o {work}/repo -i {repo.pkglist} "
        f"-g {repo.comps} {repo.arch_dir}"
    )
    assert log.startswith(f"$ {command}\n".encode())
    assert b"Adding pkg: " in log and b"All done" in log
    # The sink saw exactly the log's bytes, each stream kept apart.
    sink = full.sink
    assert len(sink.stdout) + len(sink.stderr) == len(log)
    assert b"All done" in sink.stderr


def test_comps_groups_are_in_the_repodata(full: FullRepo) -> None:
    entries = _repomd(Path(full.result.repodata_dir))
    assert {"primary", "filelists", "other", "group", "group_gz"} <= set(entries)
    comps = ET.parse(entries["group"]).getroot()
    groups = {g.findtext("id"): [p.text for p in g.iter("packagereq")] for g in comps.iter("group")}
    assert groups == {"build": ["adjcr-multi"], "srpm-build": ["adjcr-data"]}


def test_outputs_are_readable_by_another_user(full: FullRepo) -> None:
    work = Path(full.ctx.work_dir)
    out = work / "repo"
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {oct(mode)}"
    assert stat.S_IMODE((work / "createrepo.log").stat().st_mode) == 0o644
    readable = [*(Path(full.result.repodata_dir) / f for f in full.result.files), *full.result.logs]
    for path in readable:
        cat = subprocess.run(["cat", str(path)], user=NOBODY, capture_output=True, check=False)
        assert cat.returncode == 0, cat.stderr
        assert cat.stdout == Path(path).read_bytes()


def test_dnf_installs_from_the_generated_repo(
    full: FullRepo, koji: Koji, manager: PodmanManager, image: str, no_leaks: None
) -> None:
    # The hub's repoDone moves the uploaded files into the arch dir; dnf then reads the repo
    # through the topdir, as a buildroot does.
    repo = full.repo
    target = repo.arch_dir / "repodata"
    target.mkdir()
    for name in full.result.files:
        shutil.copy2(Path(full.result.repodata_dir) / name, target / name)
    baseurl = repo.baseurl_at("/mnt/koji")
    conf = (
        "[main]\nreposdir=/dev/null\ngpgcheck=0\nassumeyes=1\ninstall_weak_deps=0\n"
        f"[koji]\nname=koji\nbaseurl={baseurl}\n"
    )
    script = (
        "set -e\n"
        f"printf '%s' '{conf}' > /etc/dnf/dnf.conf\n"
        "dnf -q --releasever=1 install adjcr-multi adjcr-data >&2\n"
        "rpm -q adjcr-multi adjcr-data\n"
        "cat /usr/share/adjcr-multi/arch.txt\n"
    )
    spec = ContainerSpec(
        image,
        ["bash", "-c", script],
        mounts=[VolumeMount(koji.top.root, "/mnt/koji")],
        task_id=full.ctx.task_id,
    )
    sink = RecordingSink()
    result = manager.run(spec, sink)
    output = (sink.stdout + sink.stderr).decode()
    assert result.exit_code == 0, output
    assert sink.stdout.decode().split() == [
        "adjcr-multi-1.0-1.x86_64",
        "adjcr-data-1.0-1.noarch",
        "x86_64",
    ]


class _InspectingSink(RecordingSink):
    """Inspects the task's container (with the podman CLI) at the first output of a command
    (after the "$ argv" header the adapter writes before the command's container starts),
    while the container runs."""

    def __init__(self, task_id: int) -> None:
        super().__init__()
        self.task_id = task_id
        self.inspected: list[dict[str, object]] | None = None
        self.processes: list[list[str]] = []
        self.execs: list[dict[str, Any]] = []

    def _inspect(self) -> None:
        if self.inspected is not None:
            return
        label = f"label=io.koji.adjutant.task_id={self.task_id}"
        ids = podman_cli("ps", "-a", "-q", "--no-trunc", "--filter", label).stdout.split()
        self.inspected = json.loads(podman_cli("inspect", *ids).stdout) if ids else []
        if len(ids) == 1:
            # each process's user and command, as the container names them
            top = podman_cli("top", ids[0], "user", "args").stdout.splitlines()[1:]
            self.processes = [line.split(None, 1) for line in top]
            for exec_id in self.inspected[0].get("ExecIDs") or []:
                self.execs.append(_api_get(f"/exec/{exec_id}/json")["ProcessConfig"])

    def write_stdout(self, data: bytes) -> None:
        if not data.startswith(b"$ "):
            self._inspect()
        super().write_stdout(data)

    def write_stderr(self, data: bytes) -> None:
        self._inspect()
        super().write_stderr(data)


def _api_get(path: str) -> Any:
    """GET ``path`` of podman's libpod API on the tests' service (what the CLI does not show,
    such as an exec session's user)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            path = os.environ["KOJI_ADJUTANT_PODMAN_SOCKET"].removeprefix("unix://")
            self.sock.connect(path)

    conn = UnixConnection("d")
    try:
        conn.request("GET", f"/v4.0.0/libpod{path}")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)
    finally:
        conn.close()


def test_the_container_sees_only_its_inputs_without_network_or_capabilities(
    koji: Koji, manager: PodmanManager, image: str, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi", koji.data_v1])
    limits = ResourceLimits(memory_bytes=512 << 20, cpus=1.5, pids=256)
    limited = CreaterepoAdapter(manager, image, pull_policy="never", limits=limits)
    ctx = _ctx(tmp_path)
    sink = _InspectingSink(ctx.task_id)
    _run(limited, ctx, repo, sink=sink)
    assert sink.inspected is not None
    (container,) = sink.inspected
    host = container["HostConfig"]
    config = container["Config"]
    assert isinstance(host, dict) and isinstance(config, dict)
    assert host["NetworkMode"] == "none"
    assert host["CapAdd"] == []
    assert {"CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"} <= set(host["CapDrop"])
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (512 << 20, 1_500_000_000, 256)
    work = Path(ctx.work_dir)
    owner = work.stat()
    # catatonit pauses as nobody; createrepo_c is an exec as the work dir's owner
    assert config["User"] == "65534:65534"
    assert config["Cmd"] == ["/run/podman-init", "-P"]
    assert {user for user, _ in sink.processes} == {"nobody"}, sink.processes
    [process] = sink.execs
    assert process["entrypoint"] == "/usr/bin/createrepo_c"
    assert process["user"] == f"{owner.st_uid}:{owner.st_gid}"
    assert config["Labels"]["io.koji.adjutant.task_id"] == str(ctx.task_id)
    assert config["Labels"]["io.koji.adjutant.method"] == "createrepo"
    assert config["Labels"]["io.koji.adjutant.worker_id"] == manager.worker_id
    # The arch dir, comps and the listed packages' directories read-only, at their own paths
    # (the topdir as configured); the work dir writable; nothing else.
    packages = {Path(p).parent for p in repo.packages}
    expected = {(str(d), False) for d in (repo.arch_dir, repo.comps, *packages)}
    expected.add((str(work), True))
    mounts = container["Mounts"]
    assert isinstance(mounts, list)
    assert {(m["Destination"], m["RW"]) for m in mounts} == expected
    assert all(m["Source"] == str(Path(m["Destination"]).resolve()) for m in mounts)


# --- other arches, empty repos, --update --------------------------------------------------------


def test_an_aarch64_repo_holds_its_arch_and_noarch(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, "aarch64")
    result = _run(adapter, _ctx(tmp_path), repo)
    primary = _primary(Path(result.repodata_dir))
    assert set(primary) == _nvras(repo)
    assert "adjcr-multi-1.0-1.aarch64" in primary
    assert not any(n.endswith((".x86_64", ".i686")) for n in primary)


def test_an_empty_pkglist_makes_an_empty_repo_with_the_marker(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=[])
    assert repo.pkglist.stat().st_size == 0
    ctx = _ctx(tmp_path)
    result = _run(adapter, ctx, repo)
    repodata = Path(result.repodata_dir)
    assert result.empty is True
    assert "EMPTY_REPO" in result.files
    assert (repodata / "EMPTY_REPO").read_text() == EMPTY_TEXT
    assert _primary(repodata) == {}
    out = Path(ctx.work_dir) / "repo"
    header = (Path(ctx.work_dir) / "createrepo.log").read_text().splitlines()[0]
    assert header == f"$ /usr/bin/createrepo_c --error-exit-val -vd -o {out} -g {repo.comps} {out}"


def _cache_hits(log: str) -> set[str]:
    """The packages createrepo_c took from the old metadata instead of reading them: its `-v`
    output logs `CACHE HIT <file name>` for each."""
    return {line.split("CACHE HIT ", 1)[1] for line in log.splitlines() if "CACHE HIT " in line}


@pytest.mark.parametrize("skip_stat", [False, True])
def test_update_rereads_only_the_changed_package(
    koji: Koji,
    manager: PodmanManager,
    image: str,
    tmp_path: Path,
    no_leaks: None,
    skip_stat: bool,
) -> None:
    old = _new_repo(koji, packages=["adjcr-multi", koji.data_v1], with_repodata=True)
    new = _new_repo(koji, packages=["adjcr-multi", koji.data_v2])
    assert old.repodata is not None
    updating = CreaterepoAdapter(
        manager, image, pull_policy="never", createrepo_skip_stat=skip_stat
    )
    ctx = _ctx(tmp_path)
    result = _run(updating, ctx, new, old_repodata=old.repodata)
    log = (Path(ctx.work_dir) / "createrepo.log").read_text()
    flags = " --update --skip-stat " if skip_stat else " --update "
    assert f"{flags}{new.arch_dir}\n" in log.splitlines(keepends=True)[0]
    unchanged = {"adjcr-multi-1.0-1.x86_64.rpm", "adjcr-multi-doc-1.0-1.noarch.rpm"}
    assert _cache_hits(log) == unchanged  # adjcr-data-1.0-2 was read, the rest reused
    primary = _primary(Path(result.repodata_dir))
    assert set(primary) == _nvras(new)

    # A fresh run (createrepo_update off, as kojid without the option) reads everything and
    # gives the same packages with the same checksums and locations.
    fresh = CreaterepoAdapter(manager, image, pull_policy="never", createrepo_update=False)
    fresh_ctx = _ctx(tmp_path, "fresh")
    fresh_result = _run(fresh, fresh_ctx, new, old_repodata=old.repodata)
    fresh_log = (Path(fresh_ctx.work_dir) / "createrepo.log").read_text()
    assert "--update" not in fresh_log.splitlines()[0]
    assert _cache_hits(fresh_log) == set()
    assert _primary(Path(fresh_result.repodata_dir)) == primary


def test_a_stale_empty_marker_is_not_carried_into_a_non_empty_repo(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    old = _new_repo(koji, packages=[], with_repodata=True)
    assert old.repodata is not None and (old.repodata / "EMPTY_REPO").is_file()
    new = _new_repo(koji, packages=["adjcr-multi"])
    ctx = _ctx(tmp_path)
    result = _run(adapter, ctx, new, old_repodata=old.repodata)
    log = (Path(ctx.work_dir) / "createrepo.log").read_text()
    assert " --update " in log.splitlines()[0], "the old repodata was used"
    assert result.empty is False
    assert "EMPTY_REPO" not in result.files
    assert not (Path(result.repodata_dir) / "EMPTY_REPO").exists()
    assert set(_primary(Path(result.repodata_dir))) == _nvras(new)


# --- external repos over HTTP -------------------------------------------------------------------


class _FreeBindServer(http.server.ThreadingHTTPServer):
    """Binds to the bridge's gateway address even while the bridge is down: podman creates
    the interface only when a container joins the network (IP_FREEBIND)."""

    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_IP, getattr(socket, "IP_FREEBIND", 15), 1)
        super().server_bind()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Answers nothing for a long time: a command fetching from it hangs."""

    def do_GET(self) -> None:
        self.server.stalled.wait(30)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Served:
    url: str
    requests: list[str]


def _gateway() -> str:
    inspect = podman_cli("network", "inspect", "podman")
    assert inspect.returncode == 0, inspect.stderr
    (network,) = json.loads(inspect.stdout)
    return str(network["subnets"][0]["gateway"])


@pytest.fixture(scope="module")
def gateway() -> str:
    return _gateway()


@pytest.fixture(scope="module")
def served(koji: Koji, gateway: str) -> Iterator[Served]:
    """The external repo over HTTP on the bridge gateway; `$arch` in the URL picks its dir."""
    handler = functools.partial(_QuietHandler, directory=str(koji.external_dir))
    server = _FreeBindServer((gateway, 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield Served(url=f"http://{gateway}:{port}/$arch/", requests=server.requests)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def stalling(gateway: str) -> Iterator[str]:
    """A URL on the bridge gateway that never answers (until the test ends)."""
    server = _FreeBindServer((gateway, 0), _StallingHandler)
    server.stalled = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway}:{server.server_address[1]}/stall/"
    finally:
        server.stalled.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join()


def _external(url: str, mode: str) -> dict[str, object]:
    """An entry as the hub's getExternalRepoList returns it (extra keys included)."""
    return {
        "external_repo_id": 7,
        "external_repo_name": "adjcr-external",
        "tag_id": 1,
        "tag_name": TAG,
        "priority": 5,
        "url": url,
        "merge_mode": mode,
        "arches": None,
    }


@pytest.mark.parametrize("mode", ["koji", "bare"])
def test_external_repos_are_merged_over_the_network(
    koji: Koji,
    adapter: CreaterepoAdapter,
    served: Served,
    tmp_path: Path,
    no_leaks: None,
    mode: str,
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi", koji.data_v1], blocked=["adjcr-blocked"])
    ctx = _ctx(tmp_path)
    work = Path(ctx.work_dir)
    served.requests.clear()
    result = _run(adapter, ctx, repo, external_repos=[_external(served.url, mode)])
    url = served.url.replace("$arch", ARCH)
    assert "/x86_64/repodata/repomd.xml" in served.requests, served.requests

    assert [Path(p) for p in result.logs] == [work / "createrepo.log", work / "mergerepos.log"]
    premerge = f"file://{work}/repo_{repo.repo_id}_premerge/"
    flags = f"--koji -b {repo.blocklist}" if mode == "koji" else "--pkgorigins --all"
    assert (work / "mergerepos.log").read_text().splitlines()[0] == (
        f"$ /usr/bin/mergerepo_c {flags} -a {ARCH} -o {work}/repo --arch-expand "
        f"-g {repo.comps} -r {premerge} -r {url}"
    )
    assert result.empty is False and "EMPTY_REPO" not in result.files
    assert any(f.endswith("pkgorigins.gz") for f in result.files)

    repodata = Path(result.repodata_dir)
    primary = set(_primary(repodata))
    origins = _pkgorigins(repodata)
    local = _nvras(repo)
    external = {"adjcr-ext-1.0-1.noarch", "adjcr-data-9.0-1.noarch", "adjcr-blocked-1.0-1.noarch"}
    if mode == "koji":
        # Koji mode: a package name the tag has hides the external one; blocked names go.
        expected = local | {"adjcr-ext-1.0-1.noarch"}
    else:
        expected = local | external
    assert primary == expected
    assert set(origins) == expected
    # kojid's markExternalRPMs tells the tag's own packages by this origin.
    assert {n for n, origin in origins.items() if origin == premerge} == local
    assert {n for n, origin in origins.items() if origin == url} == expected - local
    # Groups survive the merge.
    assert "group" in _repomd(repodata)


def test_a_local_external_repo_is_merged_without_network(
    koji: Koji, manager: PodmanManager, image: str, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi", koji.data_v1], blocked=["adjcr-blocked"])
    url = f"file://{koji.external_dir}/$arch/"
    adapter = CreaterepoAdapter(manager, image, pull_policy="never")
    ctx = _ctx(tmp_path)
    sink = _InspectingSink(ctx.task_id)
    result = _run(adapter, ctx, repo, external_repos=[_external(url, "simple")], sink=sink)
    assert sink.inspected is not None
    (container,) = sink.inspected
    assert container["HostConfig"]["NetworkMode"] == "none"  # type: ignore[index]
    # Only the external repo's metadata is mounted, read-only.
    mounts = container["Mounts"]
    assert isinstance(mounts, list)
    external = [m for m in mounts if m["Destination"].startswith(str(koji.external_dir))]
    assert [(m["Destination"], m["RW"]) for m in external] == [
        (f"{koji.external_dir}/{ARCH}/repodata", False)
    ]
    log = (Path(ctx.work_dir) / "mergerepos.log").read_text().splitlines()[0]
    assert log.startswith(f"$ /usr/bin/mergerepo_c --koji --simple -b {repo.blocklist} ")
    # Simple mode keeps an external package whose name the tag has (other version), but
    # still drops the blocked name.
    premerge = f"file://{ctx.work_dir}/repo_{repo.repo_id}_premerge/"
    external_url = url.replace("$arch", ARCH)
    expected = {nvra: premerge for nvra in _nvras(repo)}
    expected.update(
        dict.fromkeys(["adjcr-ext-1.0-1.noarch", "adjcr-data-9.0-1.noarch"], external_url)
    )
    assert _pkgorigins(Path(result.repodata_dir)) == expected
    assert set(_primary(Path(result.repodata_dir))) == set(expected)


def test_an_external_repo_for_other_arches_is_not_merged(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    entry = _external("http://192.0.2.1/unreachable/$arch/", "koji")
    entry["arches"] = "aarch64 ppc64le"
    ctx = _ctx(tmp_path)
    result = _run(adapter, ctx, repo, external_repos=[entry])
    # kojid still merges (the tag has external repos), from the local repo alone, offline.
    log = (Path(ctx.work_dir) / "mergerepos.log").read_text()
    assert "192.0.2.1" not in log.splitlines()[0]
    assert set(_primary(Path(result.repodata_dir))) == _nvras(repo)


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture
def unreachable(manager: PodmanManager) -> CreaterepoAdapter:
    """An adapter whose image does not exist and may not be pulled: any error other than
    ImageError proves the request was refused before podman was asked for anything."""
    return CreaterepoAdapter(manager, "localhost/adj-no-such-image:never", pull_policy="never")


def _untouched(ctx: TaskContext) -> None:
    assert list(Path(ctx.work_dir).iterdir()) == []


def test_no_repos_dir_refuses_the_task(
    unreachable: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    topdir = tmp_path / "mnt-koji"  # a topdir that is not mounted on this builder
    topdir.mkdir()
    ctx = _ctx(tmp_path)
    with pytest.raises(TaskRefused) as info:
        unreachable.run(ctx, repo_dir=topdir / "repos" / TAG / "5" / ARCH)
    assert str(info.value) == f"No access to repos dir {topdir}/repos"
    assert not isinstance(info.value, RepoError)
    _untouched(ctx)


def test_a_missing_arch_dir_is_an_error_not_a_refusal(
    koji: Koji, unreachable: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji)
    ctx = _ctx(tmp_path)
    with pytest.raises(RepoError) as info:
        unreachable.run(ctx, repo_dir=repo.repo_dir / "ppc64le")
    message = str(info.value)
    assert message.startswith(f"Repo directory missing: {repo.repo_dir}/ppc64le")
    assert "arches present: x86_64" in message
    assert not isinstance(info.value, TaskRefused)
    _untouched(ctx)


@pytest.mark.parametrize(
    "entry", ["toplink/../../../../../etc/passwd", "/etc/passwd", "toplink/packages/../repos/x"]
)
def test_a_pkglist_entry_escaping_the_topdir_is_refused(
    koji: Koji, unreachable: CreaterepoAdapter, tmp_path: Path, no_leaks: None, entry: str
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    repo.pkglist.write_text(repo.pkglist.read_text() + entry + "\n")
    ctx = _ctx(tmp_path)
    with pytest.raises(RepoError, match="pkglist entry") as info:
        unreachable.run(ctx, repo_dir=repo.arch_dir)
    assert repr(entry).strip("'") in str(info.value)
    _untouched(ctx)


def test_bad_arguments_are_invalid_spec(
    koji: Koji,
    manager: PodmanManager,
    unreachable: CreaterepoAdapter,
    tmp_path: Path,
    no_leaks: None,
) -> None:
    repo = _new_repo(koji)
    ctx = _ctx(tmp_path)
    with pytest.raises(InvalidSpec, match="invalid repo arch"):
        unreachable.run(ctx, repo_dir=repo.repo_dir / "x86-64;rm")
    for not_an_arch_dir in ("x86_64", f"{repo.arch_dir}/..", "/"):
        with pytest.raises(InvalidSpec):
            unreachable.run(ctx, repo_dir=not_an_arch_dir)
    with pytest.raises(InvalidSpec, match=r"external_repos\[0\]"):
        unreachable.run(ctx, repo_dir=repo.arch_dir, external_repos=[{"merge_mode": "koji"}])
    with pytest.raises(InvalidSpec, match="multiple merge modes"):
        unreachable.run(
            ctx,
            repo_dir=repo.arch_dir,
            external_repos=[_external("http://x/", "koji"), _external("http://y/", "bare")],
        )
    with pytest.raises(InvalidSpec, match="pull_policy"):
        CreaterepoAdapter(manager, "img", pull_policy="sometimes")
    with pytest.raises(InvalidSpec, match="log_cap_bytes"):
        CreaterepoAdapter(manager, "img", log_cap_bytes=10).run(ctx, repo_dir=repo.arch_dir)
    _untouched(ctx)


def _add_corrupt_package(repo: kt.KojiRepo, name: str) -> None:
    """A corrupt file where a Koji package ``name`` would be, listed in the repo's pkglist:
    createrepo_c cannot read it (exit status 2)."""
    rel = f"packages/{name}/1/1/noarch/{name}-1-1.noarch.rpm"
    bad = repo.toplink.resolve() / rel
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an rpm")
    repo.pkglist.write_text(f"{repo.pkglist.read_text()}toplink/{rel}\n")


def test_a_failing_createrepo_raises_kojids_message_with_its_log(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    _add_corrupt_package(repo, "adjcr-bad")
    ctx = _ctx(tmp_path)
    work = Path(ctx.work_dir)
    with pytest.raises(RepoError) as info:
        _run(adapter, ctx, repo)
    message = str(info.value)
    assert message.startswith("failed to create repo: /usr/bin/createrepo_c --error-exit-val -vd")
    assert message.endswith(f"{repo.arch_dir} exited with status 2"), message
    assert info.value.exit_code == 2
    assert info.value.log == str(work / "createrepo.log")
    assert "adjcr-bad-1-1.noarch.rpm" in (work / "createrepo.log").read_text()


def _plausible(usage: dict[str, Any]) -> dict[str, Any]:
    """The one container's figures, checked to be what a createrepo_c run uses."""
    assert set(usage) == {"createrepo"}, usage
    used = usage["createrepo"]
    assert used["cpu_seconds"] > 0, used
    # createrepo_c alone maps several MiB; far below the host's memory
    assert 1 << 20 < used["peak_memory_bytes"] < 4 << 30, used
    assert used["bytes_written"] >= 0, used
    return used


def test_usage_reaches_the_callback_the_result_and_state_log(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi", koji.data_v1])
    ctx = _ctx(tmp_path)
    reported: list[dict[str, Any]] = []
    result = _run(adapter, ctx, repo, on_usage=reported.append)
    [usage] = reported
    used = _plausible(usage)
    assert result.usage == usage
    work = Path(ctx.work_dir)
    assert Path(result.state_log) == work / "state.log"
    lines = (work / "state.log").read_text().splitlines()
    assert "createrepo_c (createrepo.log) exited with status 0 after" in lines[0]
    assert lines[1].endswith(
        f"Usage of the createrepo container: peak memory {used['peak_memory_bytes'] / 1048576:.1f}"
        f" MiB, CPU {used['cpu_seconds']:.2f} s, written {used['bytes_written']} bytes"
    ), lines
    assert lines[2].endswith("Finished: createrepo succeeded"), lines
    assert len(lines) == 3
    # state.log is not a command's log, and kojid's result is unchanged
    assert [Path(p) for p in result.logs] == [work / "createrepo.log"]
    assert result.kojid_result() == [result.upload_path, result.files]


def test_a_failing_createrepo_still_reports_its_usage(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    _add_corrupt_package(repo, "adjcr-bad2")
    ctx = _ctx(tmp_path)
    reported: list[dict[str, Any]] = []
    with pytest.raises(RepoError, match="exited with status 2"):
        _run(adapter, ctx, repo, on_usage=reported.append)
    [usage] = reported
    _plausible(usage)
    text = (Path(ctx.work_dir) / "state.log").read_text()
    assert "createrepo_c (createrepo.log) exited with status 2" in text
    assert "Usage of the createrepo container: peak memory" in text
    assert text.index("Usage of the") < text.index(" Failed: failed to create repo: ")


def test_a_raising_usage_callback_does_not_fail_the_task(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=[])

    def raising(usage: dict[str, Any]) -> None:
        raise ZeroDivisionError("callback failed")

    result = _run(adapter, ctx := _ctx(tmp_path), repo, on_usage=raising)
    assert result.empty
    _plausible(result.usage)
    assert "Usage of the createrepo container" in (Path(ctx.work_dir) / "state.log").read_text()


class _ExplodingSink(RecordingSink):
    def write_stderr(self, data: bytes) -> None:
        raise ZeroDivisionError("sink failed")


def test_a_sink_exception_reaches_the_caller_and_removes_the_container(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    ctx = _ctx(tmp_path)
    with pytest.raises(ZeroDivisionError, match="sink failed"):
        _run(adapter, ctx, repo, sink=_ExplodingSink())
    # The log kept what the sink refused.
    assert (Path(ctx.work_dir) / "createrepo.log").read_text().startswith("$ /usr/bin/createrepo_c")


class _Alarm(Exception):
    pass


def _raise_alarm(signum: int, frame: object) -> None:
    raise _Alarm("kojid's signal handler")


def test_a_signal_stops_the_run_and_removes_the_container(
    koji: Koji, adapter: CreaterepoAdapter, stalling: str, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    ctx = _ctx(tmp_path)
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        with pytest.raises(_Alarm):
            _run(adapter, ctx, repo, external_repos=[_external(stalling, "bare")])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10


def test_the_timeout_ends_a_hanging_merge(
    koji: Koji,
    manager: PodmanManager,
    image: str,
    stalling: str,
    tmp_path: Path,
    no_leaks: None,
) -> None:
    repo = _new_repo(koji, packages=["adjcr-multi"])
    limited = CreaterepoAdapter(manager, image, pull_policy="never", timeout=3)
    ctx = _ctx(tmp_path)
    started = time.monotonic()
    with pytest.raises(RepoError, match="within its timeout of 3s"):
        _run(limited, ctx, repo, external_repos=[_external(stalling, "bare")])
    assert time.monotonic() - started < 10


def test_container_output_is_persisted_in_the_log_dir(
    koji: Koji, adapter: CreaterepoAdapter, tmp_path: Path, no_leaks: None
) -> None:
    repo = _new_repo(koji, packages=[])
    work = tmp_path / "work"
    work.mkdir()
    ctx = TaskContext(next(_task_ids), work, log_dir=tmp_path / "logs")
    _run(adapter, ctx, repo)
    container_log = tmp_path / "logs" / str(ctx.task_id) / "container.log"
    text = container_log.read_text()
    assert "stdout | $ /usr/bin/createrepo_c --error-exit-val -vd" in text
    assert container_log.stat().st_mode & 0o044 == 0o044
