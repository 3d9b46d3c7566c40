"""BuildArchAdapter: real builds of sample SRPMs in buildroots installed from a Koji-layout
repo alone (the dev distribution plus RPMs these tests build), checked the way the hub, an
admin and an attacker would look at them (ST3, AC3; the buildroot issue's tests)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kojitopdir as kt
import pytest
from conftest import LABEL_WORKER, WORKER_ID, podman_cli
from koji_adjutant import (
    BuildArchAdapter,
    BuildArchResult,
    BuildError,
    InvalidSpec,
    PodmanManager,
    TaskContext,
    TaskRefused,
)
from koji_adjutant.devdistro import DevDistro

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("no_leaks")]

ARCH = "x86_64"
TAG = "adj-build"
REPO_ID = 10
DIST = ".adj7"
CACHE_LABEL = "io.koji.adjutant.buildroot"


def build_config(**extra: object) -> dict[str, object]:
    return {
        "id": 1,
        "name": TAG,
        "arches": ARCH,
        "extra": {"rpm.macro.dist": DIST, **extra},
        "locked": False,
        "perm": None,
    }


@dataclass(frozen=True)
class Koji:
    topdir: kt.KojiTopdir
    repo: kt.KojiRepo
    srpms: Mapping[str, Path]
    distro: DevDistro
    #: A file on the host that hostile packages point links at.
    secret: Path


def _evilreq_srpm(form: str, work: Path, payload: Path) -> Path:
    """adj-evilreq with evil.rpm (adj-evilpayload) and the requirement form in its SRPM."""
    sources = work / f"evilreq-{form}"
    sources.mkdir()
    shutil.copy(kt.spec_path("adj-evilreq"), sources)
    shutil.copy(payload, sources / "evil.rpm")
    (sources / "evilreq-form").write_text(f"{form}\n")
    srpm = kt.build_srpm(sources / "adj-evilreq.spec", work / f"srpm-{form}")
    return srpm


def _leadforger_srpm(form: str, work: Path) -> Path:
    """adj-leadforger with its form (``garbage`` or ``early``) in its SRPM."""
    sources = work / f"leadforger-{form}"
    sources.mkdir()
    shutil.copy(kt.spec_path("adj-leadforger"), sources)
    (sources / "leadforger-form").write_text(f"{form}\n")
    return kt.build_srpm(sources / "adj-leadforger.spec", work / f"srpm-{form}")


@pytest.fixture(scope="module")
def koji(tmp_path_factory: pytest.TempPathFactory, dev_distro: DevDistro) -> Koji:
    try:
        kt.ensure_rpm_tools()
    except kt.MissingToolError as exc:
        pytest.fail(str(exc)) if os.environ.get("CI") else pytest.skip(str(exc))
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text(f"HOST SECRET {uuid.uuid4()}\n")
    rpms = tmp_path_factory.mktemp("rpms")
    top = kt.KojiTopdir(tmp_path_factory.mktemp("koji"))
    top.add_build([dev_distro.srpm, *dev_distro.rpms])
    top.add_build(
        kt.build_package(kt.spec_path("adj-libgreet"), rpms, defines={"dist": ".el1"}).all
    )
    top.add_build(
        kt.build_package(
            kt.spec_path("adj-planter"), rpms, defines={"adj_host_file": str(secret)}
        ).all
    )
    top.add_build(kt.build_package(kt.spec_path("adj-rpmdbopener"), rpms).all)
    repo = top.make_repo(TAG, REPO_ID, ARCH, groups=dev_distro.groups)
    srpm_dir = tmp_path_factory.mktemp("srpms")
    names = (
        "adj-hello",
        "adj-greeter",
        "adj-failbuild",
        "adj-missingdep",
        "adj-netprobe",
        "adj-repowriter",
        "adj-whoami",
        "adj-lingerer",
        "adj-plantee",
        "adj-failwithdeps",
        "adj-dbforger",
        "adj-bashenv",
    )
    srpms = {n: kt.build_srpm(kt.spec_path(n), srpm_dir) for n in names}
    payload = kt.build_package(kt.spec_path("adj-evilpayload"), rpms).rpms[0]
    evil = tmp_path_factory.mktemp("evil")
    for form in ("abs", "rel", "url"):
        srpms[f"adj-evilreq-{form}"] = _evilreq_srpm(form, evil, payload)
    for form in ("garbage", "early"):
        srpms[f"adj-leadforger-{form}"] = _leadforger_srpm(form, evil)
    return Koji(topdir=top, repo=repo, srpms=srpms, distro=dev_distro, secret=secret)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where this module's adapters record their cache entries (one file per key); the cache
    images of those keys, and only those, are removed when the module ends."""
    path = tmp_path_factory.mktemp("buildroot-cache")
    yield path
    keys = {p.name for p in path.iterdir()}
    out = podman_cli(
        "images",
        "--no-trunc",
        "--filter",
        f"label={CACHE_LABEL}=1",
        "--format",
        '{{.ID}} {{index .Labels "io.koji.adjutant.buildroot.key"}}',
    )
    for line in out.stdout.splitlines():
        image_id, _, key = line.partition(" ")
        if key in keys:
            podman_cli("rmi", "-f", image_id)


@pytest.fixture
def task(tmp_path: Path, koji: Koji):
    """A fresh task work dir holding a copy of an SRPM, as kojid downloads it."""
    counter = iter(range(1000, 100000))

    def make(name: str) -> tuple[TaskContext, Path]:
        task_id = next(counter)
        work = tmp_path / f"task-{task_id}-{name}"
        work.mkdir()
        work.chmod(0o755)
        srpm = work / koji.srpms[name].name
        shutil.copy(koji.srpms[name], srpm)
        return TaskContext(task_id, work), srpm

    return make


@pytest.fixture
def adapter(manager: PodmanManager, image: str, cache_dir: Path) -> BuildArchAdapter:
    """Tag mode with the cache: the first test installs the root, the others reuse it."""
    return BuildArchAdapter(
        manager,
        image,
        vendor="Adjutant Vendor",
        packager="Koji",
        distribution="Adjutant",
        cache=True,
        cache_dir=cache_dir,
    )


def run(
    adapter: BuildArchAdapter,
    koji: Koji,
    ctx: TaskContext,
    srpm: Path,
    arch: str = ARCH,
    *,
    repo: kt.KojiRepo | None = None,
    **kw: object,
) -> BuildArchResult:
    """A buildArch of the module's tag, from its repo (or ``repo``: the same tag and id)."""
    kw.setdefault("build_config", build_config())
    arch_dir = (repo or koji.repo).arch_dir
    return adapter.run(ctx, srpm, arch, repo=str(arch_dir), repo_id=REPO_ID, tag_name=TAG, **kw)  # type: ignore[arg-type]


def header(path: Path, fmt: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", "--qf", fmt, str(path)], capture_output=True, text=True, check=True
    ).stdout


def repo_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def entry_key(entry: Mapping[str, object]) -> tuple[object, ...]:
    return (entry["name"], entry["version"], entry["release"], entry["arch"], entry["payloadhash"])


def state_log(result_dir: Path) -> str:
    return (result_dir / "state.log").read_text()


# == a buildroot made from the tag alone ======================================================


def test_noarch_build_gives_kojids_result_and_a_root_made_from_the_repo_alone(
    adapter, koji, task, manager
):
    ctx, srpm = task("adj-hello")
    seen: list[list[dict[str, object]]] = []
    result = run(adapter, koji, ctx, srpm, "noarch", keep_srpm=True, on_buildroot_ready=seen.append)
    assert [p.name for p in result.rpms] == [f"adj-hello-1.0-1{DIST}.noarch.rpm"]
    assert [p.name for p in result.srpms] == [f"adj-hello-1.0-1{DIST}.src.rpm"]
    upload = f"tasks/{ctx.task_id % 10000}/{ctx.task_id}"
    expected_logs = [f"{upload}/{p.name}" for p in result.logs]
    assert result.kojid_result(4711) == {
        "rpms": [f"{upload}/adj-hello-1.0-1{DIST}.noarch.rpm"],
        "srpms": [f"{upload}/adj-hello-1.0-1{DIST}.src.rpm"],
        "logs": expected_logs,
        "brootid": 4711,
    }
    assert {"root.log", "build.log", "state.log"} <= {p.name for p in result.logs}
    # the package manager's logs of the root come along, as kojid uploads them
    assert any(p.name.startswith("dnf") for p in result.logs)
    assert (
        result.kojid_result(1, extra_logs=["noarch_rpmdiff.json"])["logs"][-1]
        == f"{upload}/noarch_rpmdiff.json"
    )
    # The buildroot is the build group installed from the repo, and nothing else: every
    # entry is an RPM of the repo (same payload hash), and the names are exactly the group.
    in_repo = {entry_key(r) for r in koji.repo.rpms}
    assert seen and seen[0] == result.buildroot
    for entry in result.buildroot:
        assert set(entry) >= {
            "name",
            "version",
            "release",
            "epoch",
            "arch",
            "payloadhash",
            "size",
            "buildtime",
        }
        assert entry_key(entry) in in_repo, entry
    assert sorted(e["name"] for e in result.buildroot) == sorted(koji.distro.groups["build"])
    assert result.unknown_rpms == []
    # the same packages as mock's buildroot_lock records them (without their repo url)
    by_name = {e["name"]: e for e in result.buildroot}
    assert sorted(r["name"] for r in result.lock_rpms) == sorted(by_name)
    for locked in result.lock_rpms:
        entry = by_name[locked["name"]]
        assert set(locked) == {
            "name",
            "epoch",
            "version",
            "release",
            "arch",
            "sigmd5",
            "license",
            "signature",
        }
        assert locked["sigmd5"] == entry["payloadhash"]
        assert locked["epoch"] == (None if entry["epoch"] is None else str(entry["epoch"]))
        assert locked["license"]  # the dev distribution's packages carry their license
    inspected = manager.inspect_image(result.image_id)
    assert inspected["Id"] == result.image_id and inspected["Digest"] == result.image_digest
    # the bootstrap image and its digest are in the log the hub receives
    state = state_log(result.result_dir)
    assert f"bootstrap image {adapter.image} (id {result.image_id}, digest" in state
    assert result.image_digest.startswith("sha256:") and result.image_digest in state
    # Results are readable by the hub's user.
    for path in [*result.rpms, *result.srpms, *result.logs]:
        assert path.stat().st_mode & 0o044 == 0o044, path


def test_c_package_with_a_buildrequires_from_the_repo_and_subpackages(adapter, koji, task):
    ctx, srpm = task("adj-greeter")
    finals: list[list[dict[str, object]]] = []
    usages: list[dict[str, object]] = []
    result = run(adapter, koji, ctx, srpm, on_buildroot_final=finals.append, on_usage=usages.append)
    names = sorted(p.name for p in result.rpms)
    assert names == sorted(
        [
            f"adj-greeter-2.0-1{DIST}.x86_64.rpm",
            f"adj-greeter-tools-2.0-1{DIST}.x86_64.rpm",
            f"adj-greeter-doc-2.0-1{DIST}.noarch.rpm",
        ]
    ), names
    assert result.srpms == []
    assert result.kojid_result(5)["srpms"] == []
    installed = sorted(e["name"] for e in result.buildroot)
    assert installed == sorted([*koji.distro.groups["build"], "adj-libgreet", "adj-libgreet-devel"])
    binary = next(p for p in result.rpms if p.name.startswith("adj-greeter-2.0"))
    assert header(binary, "%{ARCH} %{SOURCERPM}") == f"x86_64 adj-greeter-2.0-1{DIST}.src.rpm"
    # kojid's updateBuildRootList after the build: the list with the BuildRequires
    assert finals == [result.buildroot]
    _check_kojids_logs_and_usage(result, usages)


def test_the_list_after_the_build_is_read_again_when_the_build_user_can_write_the_rpmdb(
    adapter, koji, task
):
    """A buildroot package left the rpm database writable by the build user, and the build
    moved rpm's database with its ~/.rpmmacros: the list after the build is read again (the
    build could have changed it), from the real database (the query runs with root's HOME, so
    it never reads the build user's macro file)."""
    ctx, srpm = task("adj-dbforger")
    finals: list[list[dict[str, object]]] = []
    result = run(adapter, koji, ctx, srpm, "noarch", on_buildroot_final=finals.append)
    assert "ADJ-DBFORGER: done" in (result.result_dir / "build.log").read_text()
    root_log = (result.result_dir / "root.log").read_text()
    assert "koji-adjutant: the build user can write /var/lib/rpm" in root_log
    state = state_log(result.result_dir)
    after_build = state.split("Finish: rebuild SRPM and build")[-1]
    assert "Start: list buildroot packages" in after_build, state
    assert "as last listed" not in state
    names = {e["name"] for e in result.buildroot}
    assert names == {*koji.distro.groups["build"], "adj-rpmdbopener"}
    assert finals == [result.buildroot]


def _check_kojids_logs_and_usage(result: BuildArchResult, usages: list[dict[str, object]]):
    """The logs kojid uploads from mock besides root.log and build.log, in mock's formats, and
    what the containers used."""
    logs = {p.name: p for p in result.logs}
    assert {"buildroot_config.log", "hw_info.log", "installed_pkgs.log"} <= set(logs)
    assert all(p.parent == result.result_dir for p in result.logs)
    # mock's package_state format, the packages as the hub lists them before the build
    lines = logs["installed_pkgs.log"].read_text().splitlines()
    line = "{name}-{epoch}{version}-{release}.{arch} {buildtime} {size} {payloadhash} installed"
    expected = {
        line.format(**{**e, "epoch": "" if e["epoch"] is None else f"{e['epoch']}:"})
        for e in result.buildroot
    }
    assert sorted(lines) == sorted(expected)
    hw_info = logs["hw_info.log"].read_text()
    for section in ("CPU info:\n", "\n\nMemory:\n", "\n\nStorage:\n", "Container limits:\n"):
        assert section in hw_info
    assert "pids: 4096" in hw_info
    config = logs["buildroot_config.log"].read_text()
    assert f"repo {REPO_ID} of tag {TAG}" in config and result.image_id in config
    assert "## Files written into the bootstrap container" in config
    assert "### /etc/koji-adjutant/dnf.conf" in config and "\nHOME=/builddir\n" in config
    # dnf's own logs of the installs (taken out after each root step)
    assert any(name.startswith("dnf") for name in logs)
    # what the containers used, from their cgroups: in the result, the callback and state.log
    assert usages == [result.usage]
    build = result.usage["build"]
    assert isinstance(build, dict)
    assert build["peak_memory_bytes"] > 1024 * 1024 and build["cpu_seconds"] > 0.0
    assert isinstance(build["bytes_written"], int)
    state = state_log(result.result_dir)
    assert "Usage of the build container: peak memory " in state


def test_tag_macros_reach_the_header_and_rpmbuild_runs_unprivileged_without_capabilities(
    adapter, koji, task
):
    ctx, srpm = task("adj-whoami")
    config = build_config(**{"rpm.macro.packager": "Tag Packager <p@example.org>"})
    result = run(adapter, koji, ctx, srpm, build_config=config)
    [rpm] = result.rpms
    assert (
        header(rpm, "%{RELEASE}|%{VENDOR}|%{PACKAGER}|%{DISTRIBUTION}")
        == f"1{DIST}|Adjutant Vendor|Tag Packager <p@example.org>|Adjutant"
    )
    build_log = (result.result_dir / "build.log").read_text()
    whoami = dict(
        line.removeprefix("ADJ-WHOAMI: ").split("=", 1)
        for line in build_log.splitlines()
        if line.startswith("ADJ-WHOAMI: ")
    )
    assert whoami["uid"] == "1000" and whoami["user"] == "mockbuild"
    assert whoami["dist"] == DIST and whoami["topdir"] == "/builddir/build"
    # no capabilities at all, not even in the bounding set; no-new-privileges; no Koji mount
    assert whoami["cap_eff"] == whoami["cap_prm"] == whoami["cap_bnd"] == "0000000000000000"
    assert whoami["no_new_privs"] == "1"
    assert whoami["koji_mount"] == "no"
    assert whoami["uid_map"] == "0 0 4294967295"  # no user namespace unless asked for


def test_a_failing_build_raises_build_error_naming_build_log(adapter, koji, task):
    run(adapter, koji, *task("adj-hello"))  # the cached root: the failing build is warm
    ctx, srpm = task("adj-failbuild")
    ready: list[list[dict[str, object]]] = []
    finals: list[list[dict[str, object]]] = []
    with pytest.raises(BuildError, match=r"build\.log") as info:
        run(
            adapter,
            koji,
            ctx,
            srpm,
            "noarch",
            on_buildroot_ready=ready.append,
            on_buildroot_final=finals.append,
        )
    assert info.value.log == str(ctx.work_dir / "result" / "build.log")
    assert info.value.exit_code not in (None, 0)
    assert "ADJ-FAILBUILD" in Path(info.value.log).read_text()
    assert (ctx.work_dir / "result" / "root.log").stat().st_size > 0
    assert ", the build as its main process" in state_log(ctx.work_dir / "result")
    # kojid's list after a failed build too (the root's, unchanged)
    assert len(ready) == 1 and finals == ready


def test_a_missing_buildrequires_raises_build_error_naming_root_log(adapter, koji, task):
    ctx, srpm = task("adj-missingdep")
    with pytest.raises(BuildError, match=r"root\.log") as info:
        run(adapter, koji, ctx, srpm, "noarch")
    root_log = Path(info.value.log).read_text()
    assert info.value.log.endswith("root.log")
    assert "adj-no-such-package" in root_log or "No match for argument" in root_log


def test_the_build_has_no_network(adapter, koji, task):
    ctx, srpm = task("adj-netprobe")
    result = run(adapter, koji, ctx, srpm, "noarch")
    assert "ADJ-NETPROBE: NETWORK ABSENT" in (result.result_dir / "build.log").read_text()


def _served_repo(koji: Koji, http_dir: tuple[Path, str]) -> tuple[str, str]:
    """The topdir served over HTTP to podman's bridge: the arch repo's URL and the SHA-256 of
    its repomd.xml (what kojid's glue fetches for the cache key)."""
    served, base = http_dir
    shutil.copytree(koji.topdir.root, served / "kojifiles", symlinks=True, dirs_exist_ok=True)
    url = f"{base}/kojifiles/repos/{TAG}/{REPO_ID}/{ARCH}"
    repomd = (koji.repo.arch_dir / "repodata" / "repomd.xml").read_bytes()
    return url, hashlib.sha256(repomd).hexdigest()


def test_a_topurl_repo_uses_the_network_for_installs_but_never_for_the_build(
    manager, image, koji, task, http_dir
):
    url, repomd = _served_repo(koji, http_dir)
    ctx, srpm = task("adj-netprobe")
    adapter = BuildArchAdapter(manager, image, cache=False)
    with pytest.raises(InvalidSpec, match="repomd_sha256"):
        adapter.run(
            ctx,
            srpm,
            "noarch",
            repo=url,
            repo_id=REPO_ID,
            tag_name=TAG,
            build_config=build_config(),
        )
    result = adapter.run(
        ctx,
        srpm,
        "noarch",
        repo=url,
        repo_id=REPO_ID,
        tag_name=TAG,
        build_config=build_config(),
        repomd_sha256=repomd,
    )
    assert "ADJ-NETPROBE: NETWORK ABSENT" in (result.result_dir / "build.log").read_text()
    assert sorted(e["name"] for e in result.buildroot) == sorted(koji.distro.groups["build"])
    assert "Creating bootstrap container from" in state_log(result.result_dir)
    assert "(network bridge)" in state_log(result.result_dir)


def test_the_koji_repo_is_not_even_visible_to_the_build(adapter, koji, task):
    before = repo_digest(koji.topdir.root)
    ctx, srpm = task("adj-repowriter")
    with pytest.raises(BuildError, match=r"build\.log") as info:
        run(adapter, koji, ctx, srpm, "noarch")
    log = Path(info.value.log).read_text()
    assert "ADJ-REPOWRITER: NO TARGETS FOUND" in log or "ALL WRITES REFUSED" in log
    assert "WRITE SUCCEEDED" not in log
    assert repo_digest(koji.topdir.root) == before


def test_only_the_repo_and_its_packages_are_visible_to_the_bootstrap(manager, image, koji, task):
    # A file elsewhere in the topdir (another tag's data) must not be mounted anywhere.
    secret = koji.topdir.root / "work" / "other-task" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("not for this build")
    adapter = BuildArchAdapter(manager, image, cache=False)
    ctx, srpm = task("adj-hello")
    seen: dict[str, str] = {}

    def look(_packages: object) -> None:
        for container in manager.list_containers({LABEL_WORKER: WORKER_ID}):
            role = container["labels"]["io.koji.adjutant.role"]
            out = podman_cli(
                "exec",
                container["id"],
                "/bin/bash",
                "-c",
                "ls /mnt/koji 2>&1; ls /mnt/koji/work 2>&1; grep Cap /proc/self/status",
            )
            seen[role] = out.stdout + out.stderr

    run(adapter, koji, ctx, srpm, "noarch", on_buildroot_ready=look)
    assert set(seen) == {"build", "bootstrap"}
    assert "packages" in seen["bootstrap"] and "repos" in seen["bootstrap"]
    assert "secret.txt" not in seen["bootstrap"]
    assert "No such file or directory" in seen["build"]
    assert re.search(r"CapBnd:\s+0000000000000000", seen["build"]), seen["build"]


def test_keep_srpm_off_gives_no_srpm(adapter, koji, task):
    ctx, srpm = task("adj-hello")
    result = run(adapter, koji, ctx, srpm, "noarch", keep_srpm=False)
    assert result.srpms == [] and result.kojid_result(1)["srpms"] == []


def test_bad_inputs_are_typed_errors_before_any_container(adapter, koji, task, manager, tmp_path):
    ctx, srpm = task("adj-hello")
    not_rpm = ctx.work_dir / "notes.src.rpm"
    not_rpm.write_text("hello")
    with pytest.raises(InvalidSpec, match="not an RPM"):
        run(adapter, koji, ctx, not_rpm, "noarch")
    binary = ctx.work_dir / koji.repo.packages[0].name
    shutil.copy(koji.repo.packages[0], binary)
    with pytest.raises(InvalidSpec, match="binary RPM"):
        run(adapter, koji, ctx, binary, "noarch")
    outside = tmp_path / "outside.src.rpm"
    shutil.copy(srpm, outside)
    with pytest.raises(InvalidSpec, match="outside the task's work dir"):
        run(adapter, koji, ctx, outside, "noarch")
    # what this builder cannot build is refused (another builder may), before anything runs;
    # check() says so before kojid makes the buildroot record
    with pytest.raises(TaskRefused, match="cannot build arch aarch64"):
        run(adapter, koji, ctx, srpm, "aarch64")
    with pytest.raises(TaskRefused, match="cannot build arch i686"):
        adapter.check("i686", build_config=build_config())
    for extra, why in [
        ({"mock.package_manager": "dnf5"}, "dnf4"),
        ({"mock.forcearch": "aarch64"}, "emulated builds"),
        ({"mock.plugin_conf.sign_enable": True}, "sign plugin"),
    ]:
        with pytest.raises(TaskRefused, match=why):
            adapter.check(ARCH, build_config=build_config(**extra))
        with pytest.raises(TaskRefused, match=why):
            run(adapter, koji, ctx, srpm, "noarch", build_config=build_config(**extra))
    assert adapter.check(ARCH, build_config=build_config()) == ARCH
    assert adapter.check("noarch", build_config=build_config()) == ARCH
    with pytest.raises(InvalidSpec, match="build_config"):
        run(adapter, koji, ctx, srpm, "noarch", build_config={"name": TAG})
    with pytest.raises(InvalidSpec, match="line break"):
        run(
            adapter,
            koji,
            ctx,
            srpm,
            "noarch",
            build_config=build_config(**{"rpm.macro.vendor": "a\nb"}),
        )
    with pytest.raises(InvalidSpec, match="repomd_sha256 must be 64 hex digits"):
        run(adapter, koji, ctx, srpm, "noarch", repomd_sha256="nothex")
    with pytest.raises(InvalidSpec, match="buildroot_mode"):
        BuildArchAdapter(manager, adapter.image, buildroot_mode="mock")
    with pytest.raises(InvalidSpec, match="image_external_repo applies to image mode only"):
        run(
            BuildArchAdapter(manager, adapter.image, image_external_repo="x"),
            koji,
            ctx,
            srpm,
            "noarch",
        )
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []
    assert not (ctx.work_dir / "result").exists()


def test_a_raising_buildroot_callback_aborts_and_removes_the_containers(
    adapter, koji, task, manager
):
    ctx, srpm = task("adj-hello")

    def refuse(_packages: object) -> None:
        raise RuntimeError("hub refused the buildroot list")

    with pytest.raises(RuntimeError, match="hub refused"):
        run(adapter, koji, ctx, srpm, "noarch", on_buildroot_ready=refuse)
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []


def test_logs_exist_after_a_failure_and_container_log_goes_to_the_log_dir(
    adapter, koji, task, tmp_path
):
    ctx, srpm = task("adj-missingdep")
    logged = TaskContext(ctx.task_id, ctx.work_dir, log_dir=tmp_path / "logs")
    with pytest.raises(BuildError):
        run(adapter, koji, logged, srpm, "noarch")
    result = ctx.work_dir / "result"
    for name in ("root.log", "build.log", "state.log"):
        assert (result / name).exists(), name
    assert "Failed:" in (result / "state.log").read_text()
    container_log = tmp_path / "logs" / str(ctx.task_id) / "container.log"
    text = container_log.read_text()
    assert " stdout | " in text or " stderr | " in text
    assert container_log.stat().st_mode & 0o044 == 0o044


def test_a_failed_build_reports_its_root_keeps_it_and_its_logs_are_whole_lines(
    manager, image, koji, task, cache_dir, tmp_path
):
    adapter = BuildArchAdapter(
        manager, image, cache=True, cache_dir=cache_dir, keep_failed_root=3600
    )
    ctx, srpm = task("adj-failwithdeps")
    ready: list[list[dict[str, object]]] = []
    finals: list[list[dict[str, object]]] = []
    usages: list[dict[str, object]] = []
    kept = f"localhost/koji-adjutant-kept:{ctx.task_id}"
    try:
        with pytest.raises(BuildError, match=r"build\.log"):
            run(
                adapter,
                koji,
                ctx,
                srpm,
                "noarch",
                on_buildroot_ready=ready.append,
                on_buildroot_final=finals.append,
                on_usage=usages.append,
            )
        result_dir = ctx.work_dir / "result"
        # kojid's updateBuildRootList after the failed build: the root as it is then, with
        # the BuildRequires the initial list did not have
        [initial], [final] = ready, finals
        assert "adj-libgreet-devel" not in {e["name"] for e in initial}
        assert {"adj-libgreet", "adj-libgreet-devel"} <= {e["name"] for e in final}
        # dnf's logs of the install reached the result dir although the build failed
        assert any(p.name.startswith("dnf") for p in result_dir.iterdir())
        for name in ("buildroot_config.log", "hw_info.log", "installed_pkgs.log"):
            assert (result_dir / name).stat().st_size > 0, name
        # build.log merges the streams by lines (container.log keeps the exact bytes)
        build_log = (result_dir / "build.log").read_text()
        assert re.search(r"^ADJ-MIX: out-a out-b$", build_log, re.M), build_log
        assert re.search(r"^ADJ-MIX: err-line$", build_log, re.M), build_log
        assert usages and usages[0]["build"]
        # the failed root is kept as an image, with the build's work in it
        state = state_log(result_dir)
        assert f"{kept} for 60 min" in state and f"koji-adjutant shell {ctx.task_id}" in state
        [image_info] = manager.list_images({"io.koji.adjutant.kept.task_id": str(ctx.task_id)})
        labels = image_info["labels"]
        assert labels["io.koji.adjutant.kept.worker_id"] == WORKER_ID
        assert int(labels["io.koji.adjutant.kept.until"]) > time.time() + 3000
        # nothing made from it counts as a task's container (the reaper goes by those)
        assert labels.get("io.koji.adjutant.worker_id", "") == ""
        # koji-adjutant shell runs a command in it as the build user, without a network
        shell = _cli_shell(
            manager,
            ctx.task_id,
            tmp_path,
            "sh",
            "-c",
            "cat $(find /builddir -name marker); id -u; ls /sys/class/net",
        )
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout.split() == ["kept-marker", "1000", "lo"], shell.stdout
        # not expired yet: kept
        assert manager.remove_expired_kept_roots() == 0
        assert manager.list_images({"io.koji.adjutant.kept.task_id": str(ctx.task_id)})
    finally:
        manager.remove_image(kept)
    missing = _cli_shell(manager, ctx.task_id, tmp_path, "true")
    assert missing.returncode == 2 and "no kept buildroot for task" in missing.stderr


def test_a_kept_root_in_a_user_namespace_expires(manager, image, koji, task, cache_dir, tmp_path):
    adapter = BuildArchAdapter(
        manager,
        image,
        cache=True,
        cache_dir=cache_dir,
        userns_base=USERNS_BASE,
        keep_failed_root=1,
    )
    first, first_srpm = task("adj-failbuild")  # installs the mapped root if no test did
    ctx, srpm = task("adj-failbuild")
    kept = f"localhost/koji-adjutant-kept:{ctx.task_id}"
    try:
        with pytest.raises(BuildError):
            run(adapter, koji, first, first_srpm, "noarch")
        with pytest.raises(BuildError) as err:
            run(adapter, koji, ctx, srpm, "noarch")
        # warm: the build was the build container's main process, ended when the root was kept
        state = state_log(Path(str(err.value.log)).parent)
        assert ", the build as its main process" in state, state
        assert "Finish: keep the failed buildroot" in state, state
        [image_info] = manager.list_images({"io.koji.adjutant.kept.task_id": str(ctx.task_id)})
        assert image_info["labels"]["io.koji.adjutant.kept.userns_base"] == str(USERNS_BASE)
        # the shell gets the build's mapping: files keep their owners
        shell = _cli_shell(manager, ctx.task_id, tmp_path, "stat", "-c", "%u", "/builddir")
        assert (shell.returncode, shell.stdout.strip()) == (0, "1000"), shell.stderr
        time.sleep(1.5)
        assert manager.remove_expired_kept_roots() >= 1
        assert manager.list_images({"io.koji.adjutant.kept.task_id": str(ctx.task_id)}) == []
    finally:
        manager.remove_image(kept)
        manager.remove_image(f"localhost/koji-adjutant-kept:{first.task_id}")


def _cli_shell(
    manager: PodmanManager, task_id: int, tmp_path: Path, *command: str
) -> subprocess.CompletedProcess[str]:
    """``koji-adjutant shell TASK_ID -- COMMAND`` with this test's service and worker."""
    env = {
        **os.environ,
        "KOJI_ADJUTANT_CONFIG": str(tmp_path / "none.conf"),
        "KOJI_ADJUTANT_PODMAN_SOCKET": manager.socket,
        "KOJI_ADJUTANT_WORKER_ID": WORKER_ID,
    }
    return subprocess.run(
        [sys.executable, "-m", "koji_adjutant.cli", "shell", str(task_id), "--", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# == the cache ================================================================================


def _own_repo(koji: Koji, tmp_path: Path) -> kt.KojiRepo:
    """The module's tag and repo id with content of its own (a fresh repomd.xml): a root no
    other test has cached."""
    top = kt.KojiTopdir(tmp_path / "koji")
    top.add_build([koji.distro.srpm, *koji.distro.rpms])
    top.add_build(
        kt.build_package(
            kt.spec_path("adj-libgreet"), tmp_path / "rpms", defines={"dist": ".el1"}
        ).all
    )
    return top.make_repo(TAG, REPO_ID, ARCH, groups=koji.distro.groups)


def test_the_cache_reuses_a_root_only_for_the_same_repo_content(
    manager, image, koji, task, tmp_path, cache_dir
):
    adapter = BuildArchAdapter(manager, image, cache=True, cache_dir=cache_dir)
    # a repo of its own (same tag and id as the module's, another topdir), so that rebuilding
    # it under the same id does not disturb the other tests
    repo = _own_repo(koji, tmp_path)

    def build(name: str) -> BuildArchResult:
        ctx, srpm = task(name)
        return run(adapter, koji, ctx, srpm, repo=repo)

    cold = build("adj-greeter")
    warm = build("adj-greeter")
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert warm.buildroot == cold.buildroot
    assert [p.name for p in warm.rpms] == [p.name for p in cold.rpms]
    for a, b in zip(cold.rpms, warm.rpms):
        fmt = "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{REQUIRENEVRS} %{PROVIDENEVRS}"
        assert header(a, fmt) == header(b, fmt)
    warm_root_log = (warm.result_dir / "root.log").read_text()
    assert "install @build" not in warm_root_log
    # root.log still says where the root came from (kojid uploads it: it must not be empty)
    assert "Using the cached buildroot" in warm_root_log and "kernel version: " in warm_root_log
    assert "(cached buildroot" in state_log(warm.result_dir)
    # the cache image does not carry the committing task's labels (a container made from it
    # must not count as that task's or worker's)
    key = re.search(r"cached buildroot ([0-9a-f]{64})", state_log(warm.result_dir)).group(1)
    labels = podman_cli(
        "images",
        "--filter",
        f"label=io.koji.adjutant.buildroot.key={key}",
        "--format",
        "{{json .Labels}}",
    ).stdout
    assert labels and all(
        json.loads(line).get(name, "") == ""
        for line in labels.splitlines()
        for name in (LABEL_WORKER, "io.koji.adjutant.task_id", "io.koji.adjutant.role")
    ), labels
    # The warm build's lists: the first is the cache record's (read when the cold build made
    # the root, before anything of a task ran in it), the last is the list after installing
    # adj-libgreet (the build user cannot write the rpm database, so the build cannot have
    # changed it).
    warm_state = state_log(warm.result_dir)
    assert "as listed when the cached root was made (its record)" in warm_state
    assert "as last listed (nothing was installed since" in warm_state
    record = json.loads((cache_dir / f"{key}.json").read_text())
    base = re.search(r"Creating build container from (\S+)", warm_state).group(1)
    assert record["image_id"] == base and record["rpmdb_writable"] is False
    assert {p["rpm"]["name"] for p in record["packages"]} == set(koji.distro.groups["build"])
    # A record of another image (a cache image replaced under the same key) is not used: the
    # list is read from the root again and the record rewritten.
    (cache_dir / f"{key}.json").write_text(
        json.dumps({**record, "image_id": "0" * 64, "packages": []})
    )
    relisted = build("adj-greeter")
    assert relisted.cache_hit and relisted.buildroot == cold.buildroot
    assert "(its record)" not in state_log(relisted.result_dir)
    assert json.loads((cache_dir / f"{key}.json").read_text()) == record
    # The same repo id with other content (a hub re-initialised, a package rebuilt with another
    # payload): the root is installed anew, never reused.
    rebuilt = tmp_path / "rebuilt"
    libgreet = kt.build_package(
        kt.spec_path("adj-libgreet"), rebuilt, defines={"dist": ".el1", "adj_rebuilt": "1"}
    )
    shutil.rmtree(repo.repo_dir)
    top2 = kt.KojiTopdir(tmp_path / "koji")
    top2.add_build([koji.distro.srpm, *koji.distro.rpms])
    top2.add_build(libgreet.all)
    changed = top2.make_repo(TAG, REPO_ID, ARCH, groups=koji.distro.groups)
    assert changed.arch_dir == repo.arch_dir
    assert {entry_key(r) for r in changed.rpms} != {entry_key(r) for r in repo.rpms}
    again = build("adj-greeter")
    assert again.cache_hit is False
    greet = [e for e in again.buildroot if e["name"] == "adj-libgreet"]
    assert [entry_key(e) for e in greet] == [
        entry_key(r) for r in changed.rpms if r["name"] == "adj-libgreet"
    ]


USERNS_BASE = 1_000_000_000


def _host_uids(container_id: str) -> set[int]:
    """Host uids of every process of a container (its main process and their descendants, as
    the host's /proc sees them)."""
    out = podman_cli("top", container_id, "hpid")
    uids = set()
    for pid in out.stdout.split()[1:]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        uids.add(int(line.split()[1]))
    return uids


def test_a_user_namespace_maps_every_container_away_from_host_root(
    manager, image, koji, task, cache_dir, tmp_path
):
    repo = _own_repo(koji, tmp_path)
    adapter = BuildArchAdapter(
        manager, image, cache=True, cache_dir=cache_dir, userns_base=USERNS_BASE
    )
    host_uids: dict[str, set[int]] = {}

    def look(_packages: object) -> None:
        for container in manager.list_containers({LABEL_WORKER: WORKER_ID}):
            host_uids[container["labels"]["io.koji.adjutant.role"]] = _host_uids(container["id"])

    def build() -> tuple[BuildArchResult, dict[str, str]]:
        ctx, srpm = task("adj-whoami")
        result = run(adapter, koji, ctx, srpm, repo=repo, on_buildroot_ready=look)
        lines = (result.result_dir / "build.log").read_text().splitlines()
        whoami = dict(
            line.removeprefix("ADJ-WHOAMI: ").split("=", 1)
            for line in lines
            if line.startswith("ADJ-WHOAMI: ")
        )
        return result, whoami

    cold, whoami = build()
    assert whoami["uid_map"] == f"0 {USERNS_BASE} 65536"
    assert whoami["uid"] == "1000" and whoami["user"] == "mockbuild"
    # the bootstrap's root (which runs the packages' scriptlets) and the build's processes
    # are ids of the mapping on the host, never host root
    assert set(host_uids) == {"build", "bootstrap"}
    for role, uids in host_uids.items():
        assert uids and all(USERNS_BASE <= uid < USERNS_BASE + 65536 for uid in uids), (role, uids)
    # the cached root (stored as a tar read through the mapping) keeps its owners: a warm build
    # runs as mockbuild in the same root, with the same package list
    host_uids.clear()
    warm, whoami = build()
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert warm.buildroot == cold.buildroot
    assert whoami["user"] == "mockbuild" and whoami["uid_map"] == f"0 {USERNS_BASE} 65536"
    assert set(host_uids) == {"build"}  # nothing to install: no bootstrap container
    assert "export the root for the cache" in state_log(cold.result_dir)


# == a host that trusts nothing a build writes ================================================


@pytest.mark.parametrize("form", ["abs", "rel", "url"])
def test_a_buildrequires_naming_a_shipped_rpm_fails_before_anything_is_installed(
    adapter, koji, task, form
):
    ctx, srpm = task(f"adj-evilreq-{form}")
    with pytest.raises(BuildError) as info:
        run(adapter, koji, ctx, srpm, "noarch")
    requirement = {
        "abs": "/builddir/build/SOURCES/evil.rpm",
        "rel": "builddir/build/SOURCES/evil.rpm",
        "url": "file:///builddir/build/SOURCES/evil.rpm",
    }[form]
    message = str(info.value)
    assert f"BuildRequires: {requirement}" in message, message
    assert info.value.log == str(ctx.work_dir / "result" / "root.log")
    root_log = Path(info.value.log).read_text()
    assert f"BuildRequires: {requirement}" in root_log
    # nothing of it ran: no install step, no scriptlet, no build
    assert "ADJ-EVIL-POST-RAN" not in root_log
    assert "Start: install build requirements" not in state_log(ctx.work_dir / "result")
    assert "ADJ-EVILREQ: BUILT" not in (ctx.work_dir / "result" / "build.log").read_text()


def test_planted_links_and_fifos_are_never_taken_and_nothing_blocks(manager, image, koji, task):
    before = koji.secret.read_bytes()
    adapter = BuildArchAdapter(manager, image, cache=False, log_cap_bytes=64 * 1024)
    ctx, srpm = task("adj-plantee")
    started = time.monotonic()
    result = run(adapter, koji, ctx, srpm, "noarch", keep_srpm=True)
    assert time.monotonic() - started < 300
    assert "ADJ-PLANTER: PLANTED" in (result.result_dir / "root.log").read_text()
    assert [p.name for p in result.rpms] == [f"adj-plantee-1-1{DIST}.noarch.rpm"]
    assert [p.name for p in result.srpms] == [f"adj-plantee-1-1{DIST}.src.rpm"]
    names = {p.name for p in result.result_dir.iterdir()}
    assert not {n for n in names if "planted" in n or "fifo" in n}, names
    assert not any("planted" in p.name or "fifo" in p.name for p in result.logs)
    # every file the host took is a regular file of its own, not the secret
    for path in result.result_dir.iterdir():
        assert path.is_file() and not path.is_symlink(), path
        assert koji.secret.read_bytes() not in path.read_bytes(), path
    # the capped build.log was rewritten (its temporary file created beside it) without
    # touching the host file the planted .koji-adjutant-tmp links point at
    assert "earlier bytes dropped" in (result.result_dir / "build.log").read_text()
    assert koji.secret.read_bytes() == before
    state = state_log(result.result_dir)
    for planted in (
        "adj-planted-1-1.noarch.rpm: a symlink",
        "adj-fifo-1-1.noarch.rpm: a FIFO",
        "adj-hard-1-1.noarch.rpm: a hard link",
        "adj-dir-1-1.noarch.rpm: a directory",
        "adj-planted-1-1.src.rpm: a symlink",
        "dnf.planted.log: a symlink",
        "dnf.fifo.log: a FIFO",
    ):
        assert planted in state, planted


class ProcessWatch:
    """Sightings of processes whose command line contains a marker, from the host's /proc,
    each stamped with the time the scan that saw it started."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.sightings: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            scan_started = time.time()
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        cmdline = handle.read()
                except OSError:
                    continue
                if self.marker in cmdline:
                    name = cmdline.split(b"\0", 1)[0].decode(errors="replace")
                    self.sightings.append((scan_started, name))
            time.sleep(0.02)


def _step_windows(state: str, step: str) -> list[tuple[float, float]]:
    """(start, finish) epoch times of each run of a step in state.log."""

    def stamp(line: str) -> float:
        text = line.split(" ", 1)[0].rstrip("Z")
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
        return moment.replace(tzinfo=timezone.utc).timestamp()

    windows = []
    start = None
    for line in state.splitlines():
        if line.endswith(f" Start: {step}"):
            start = stamp(line)
        elif f" Finish: {step} (" in line and start is not None:
            windows.append((start, stamp(line)))
            start = None
    return windows


@pytest.mark.parametrize("where", ["local", "url"])
def test_processes_left_behind_are_gone_before_the_next_step_and_never_see_a_network(
    manager, image, koji, task, http_dir, where
):
    adapter = BuildArchAdapter(manager, image, cache=False)
    ctx, srpm = task("adj-lingerer")
    kw: dict[str, object] = {}
    if where == "url":
        url, kw["repomd_sha256"] = _served_repo(koji, http_dir)
    else:
        url = str(koji.repo.arch_dir)
    with ProcessWatch(b"adj-linger-") as watch:
        result = adapter.run(
            ctx,
            srpm,
            "noarch",
            repo=url,
            repo_id=REPO_ID,
            tag_name=TAG,
            build_config=build_config(),
            **kw,  # type: ignore[arg-type]
        )
    state = state_log(result.result_dir)
    build_log = (result.result_dir / "build.log").read_text()
    assert "ADJ-LINGERER: build step done" in build_log
    # a root step (installing adj-libgreet) ran between the rebuild and the build
    assert "Start: install build requirements" in state
    # The rebuild-and-build step ran twice: its first rpmbuild -bb found adj-libgreet missing,
    # root installed it, the second built. rpmbuild parses the spec in each, so the "parse"
    # process starts in both; the "build" one in the second only.
    steps = _step_windows(state, "rebuild SRPM and build")
    installs = _step_windows(state, "install build requirements")
    assert len(steps) == 2 and len(installs) == 1, state
    assert steps[0][1] <= installs[0][0] and installs[0][1] <= steps[1][0], state
    parse_seen = [t for t, name in watch.sightings if name == "adj-linger-parse"]
    build_seen = [t for t, name in watch.sightings if name == "adj-linger-build"]
    assert parse_seen and build_seen, watch.sightings  # they did start
    for seen in parse_seen:
        assert any(start - 0.5 <= seen <= finish for start, finish in steps), (seen, steps)
    for seen in build_seen:
        assert steps[1][0] - 0.5 <= seen <= steps[1][1], (seen, steps)
    # in particular nothing of the build ran while root installed packages
    for seen, _ in watch.sightings:
        assert not any(start <= seen <= finish for start, finish in installs), (seen, installs)
    interfaces = re.findall(r"^ADJ-LINGER (parse|build): interfaces (.*)$", build_log, re.M)
    assert {when for when, _ in interfaces} == {"parse", "build"}, interfaces
    assert all(names.split() == ["lo"] for _, names in interfaces), interfaces
    if where == "url":
        assert "(network bridge)" in state


def test_a_tags_bash_env_reaches_the_build_but_never_the_wrapper_of_a_step(
    manager, image, koji, task
):
    """The tag's environment is the command's, not the step wrapper's: a BASH_ENV file the
    build wrote is read by the build's own bash, never by the bash that wraps (and reaps) a
    later step."""
    adapter = BuildArchAdapter(manager, image, cache=False)
    ctx, srpm = task("adj-bashenv")
    result = run(
        adapter,
        koji,
        ctx,
        srpm,
        "noarch",
        build_config=build_config(**{"rpm.env.BASH_ENV": "/builddir/adj-bashenv"}),
    )
    state = state_log(result.result_dir)
    assert len(_step_windows(state, "rebuild SRPM and build")) == 2, state
    logs = "".join(
        (result.result_dir / name).read_text()
        for name in ("build.log", "root.log", "container.log")
    )
    assert "ADJ-BASHENV: build done" in logs
    assert "ADJ-BASHENV: read by bash" in logs  # the build's own bash reads it
    assert "ADJ-BASHENV: read by koji-adjutant" not in logs


def test_a_warm_build_is_the_build_containers_main_process(adapter, koji, task):
    """A warm build whose cached root has every BuildRequires runs no step exec: rpmbuild is
    the build container's main process; its usage is read before the container ends."""
    run(adapter, koji, *task("adj-hello"))  # the cached root (made here if no test made it)
    ctx, srpm = task("adj-hello")
    usages: list[dict[str, object]] = []
    result = run(adapter, koji, ctx, srpm, on_usage=usages.append)
    assert result.cache_hit
    state = state_log(result.result_dir)
    assert ", the build as its main process" in state, state
    assert "Buildroot packages after the build: as last listed" in state
    assert len(_step_windows(state, "rebuild SRPM and build")) == 1, state
    build_log = (result.result_dir / "build.log").read_text()
    assert "(user 1000:135, network off, the build container's main process)" in build_log
    assert "Wrote: /builddir/build/RPMS/" in build_log
    assert "koji-adjutant-lead-end" not in build_log
    assert usages == [result.usage]
    build = result.usage["build"]
    assert isinstance(build, dict) and build["cpu_seconds"] > 0.0, result.usage
    assert build["peak_memory_bytes"] > 1024 * 1024, result.usage
    assert "CPU info:" in (result.result_dir / "hw_info.log").read_text()
    assert [p.name for p in result.rpms] == [f"adj-hello-1.0-1{DIST}.noarch.rpm"]


def test_a_warm_builds_leftovers_end_with_its_container_before_root_installs(adapter, koji, task):
    """A warm build that needs a package the cached root lacks: the lead container, whose
    main process the build was, ends with every process the spec left behind before root
    installs anything; the build goes on in a new container from the same root."""
    run(adapter, koji, *task("adj-hello"))
    ctx, srpm = task("adj-lingerer")
    with ProcessWatch(b"adj-linger-") as watch:
        result = run(adapter, koji, ctx, srpm, "noarch")
    assert result.cache_hit
    state = state_log(result.result_dir)
    assert ", the build as its main process" in state, state
    assert "again: the build needs packages the cached root lacks" in state, state
    steps = _step_windows(state, "rebuild SRPM and build")
    installs = _step_windows(state, "install build requirements")
    assert len(steps) == 2 and len(installs) == 1, state
    assert steps[0][1] <= installs[0][0] and installs[0][1] <= steps[1][0], state
    parse_seen = [t for t, name in watch.sightings if name == "adj-linger-parse"]
    build_seen = [t for t, name in watch.sightings if name == "adj-linger-build"]
    assert parse_seen and build_seen, watch.sightings
    for seen in parse_seen:
        assert any(start - 0.5 <= seen <= finish for start, finish in steps), (seen, steps)
    for seen in build_seen:
        assert steps[1][0] - 0.5 <= seen <= steps[1][1], (seen, steps)
    for seen, _ in watch.sightings:
        assert not any(start <= seen <= finish for start, finish in installs), (seen, installs)
    names = {e["name"] for e in result.buildroot}
    assert names == {*koji.distro.groups["build"], "adj-libgreet"}


def test_a_build_writing_on_the_end_line_fails_or_ends_only_itself(adapter, koji, task):
    """The end line of a warm build's container can be written by the build (it runs as the
    wrapper's user): garbage fails the task naming that channel; a forged early end makes the
    host wait for the container to end, so the results are whole."""
    run(adapter, koji, *task("adj-hello"))
    ctx, srpm = task("adj-leadforger-garbage")
    with pytest.raises(BuildError, match="wrote on the channel that says when it ended") as err:
        run(adapter, koji, ctx, srpm, "noarch")
    assert "ADJ-LEADFORGER: wrote garbage" in Path(str(err.value.log)).read_text()
    ctx, srpm = task("adj-leadforger-early")
    result = run(adapter, koji, ctx, srpm, "noarch")
    build_log = (result.result_dir / "build.log").read_text()
    assert "ADJ-LEADFORGER: wrote early" in build_log
    (rpm,) = result.rpms
    files = subprocess.run(
        ["rpm", "-qlp", str(rpm)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "/usr/share/adj-leadforger/late" in files, files


# == image mode ===============================================================================


@pytest.fixture(scope="module")
def image_mode_repo(tmp_path_factory: pytest.TempPathFactory) -> kt.KojiRepo:
    """A tag for image mode with the Debian dev image: debian-buildtools (the RPM face of the
    image's toolchain) in its groups, as before tag-made buildroots."""
    rpms = tmp_path_factory.mktemp("image-rpms")
    top = kt.KojiTopdir(tmp_path_factory.mktemp("image-koji"))
    for spec in (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet")):
        top.add_build(kt.build_package(spec, rpms, defines={"dist": ".el1"}).all)
    return top.make_repo(TAG, REPO_ID, ARCH)


def test_image_mode_installs_over_the_image_and_says_it_is_not_a_mock_root(
    manager, image, koji, image_mode_repo, task
):
    adapter = BuildArchAdapter(
        manager, image, buildroot_mode="image", cache=False, rpmdb_path="/var/lib/rpm"
    )
    assert adapter.buildroot_mode == "image"
    ctx, srpm = task("adj-greeter")
    result = run(adapter, koji, ctx, srpm, repo=image_mode_repo)
    assert len(result.rpms) == 3
    assert {e["name"] for e in result.buildroot} == {
        "debian-buildtools",
        "adj-libgreet",
        "adj-libgreet-devel",
    }
    assert "image mode: not a mock buildroot" in state_log(result.result_dir)
