"""BuildArchAdapter: real builds of sample SRPMs in the task image, from a Koji-layout repo of
RPMs these tests build, checked the way the hub and an admin would look at them (ST3, AC3)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import kojitopdir as kt
import pytest
from conftest import LABEL_WORKER, WORKER_ID
from koji_adjutant import (
    BuildArchAdapter,
    BuildArchResult,
    BuildError,
    InvalidSpec,
    PodmanManager,
    TaskContext,
)

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("no_leaks")]

ARCH = "x86_64"
TAG = "adj-build"
REPO_ID = 10
DIST = ".adj7"


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


@pytest.fixture(scope="module")
def koji(tmp_path_factory: pytest.TempPathFactory) -> Koji:
    try:
        kt.ensure_rpm_tools()
    except kt.MissingToolError as exc:
        pytest.fail(str(exc)) if os.environ.get("CI") else pytest.skip(str(exc))
    rpms = tmp_path_factory.mktemp("rpms")
    top = kt.KojiTopdir(tmp_path_factory.mktemp("koji"))
    for spec in (kt.BUILDTOOLS_SPEC, kt.spec_path("adj-libgreet")):
        top.add_build(kt.build_package(spec, rpms, defines={"dist": ".el1"}).all)
    repo = top.make_repo(TAG, REPO_ID, ARCH)
    srpm_dir = tmp_path_factory.mktemp("srpms")
    names = (
        "adj-hello",
        "adj-greeter",
        "adj-failbuild",
        "adj-missingdep",
        "adj-netprobe",
        "adj-repowriter",
        "adj-whoami",
    )
    srpms = {n: kt.build_srpm(kt.spec_path(n), srpm_dir) for n in names}
    return Koji(topdir=top, repo=repo, srpms=srpms)


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
def adapter(manager: PodmanManager, image: str, tmp_path: Path) -> BuildArchAdapter:
    return BuildArchAdapter(
        manager,
        image,
        vendor="Adjutant Vendor",
        packager="Koji",
        distribution="Adjutant",
        cache=False,
    )


def run(
    adapter: BuildArchAdapter,
    koji: Koji,
    ctx: TaskContext,
    srpm: Path,
    arch: str = ARCH,
    **kw: object,
) -> BuildArchResult:
    kw.setdefault("build_config", build_config())
    return adapter.run(
        ctx, srpm, arch, repo=str(koji.repo.arch_dir), repo_id=REPO_ID, tag_name=TAG, **kw
    )  # type: ignore[arg-type]


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


def test_noarch_build_gives_kojids_result_and_package_list(adapter, koji, task):
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
    assert (
        result.kojid_result(1, extra_logs=["noarch_rpmdiff.json"])["logs"][-1]
        == f"{upload}/noarch_rpmdiff.json"
    )
    # The buildroot holds only what came from the tag repo, with the fields kojid sends.
    in_repo = {
        (r["name"], r["version"], r["release"], r["arch"], r["payloadhash"]) for r in koji.repo.rpms
    }
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
        assert (
            entry["name"],
            entry["version"],
            entry["release"],
            entry["arch"],
            entry["payloadhash"],
        ) in in_repo
    assert "debian-buildtools" in {e["name"] for e in result.buildroot}
    assert result.unknown_rpms == []
    # Results are readable by the hub's user.
    for path in [*result.rpms, *result.srpms, *result.logs]:
        assert path.stat().st_mode & 0o044 == 0o044, path


def test_c_package_with_a_buildrequires_from_the_repo_and_subpackages(adapter, koji, task):
    ctx, srpm = task("adj-greeter")
    result = run(adapter, koji, ctx, srpm)
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
    installed = {e["name"] for e in result.buildroot}
    assert {"adj-libgreet", "adj-libgreet-devel"} <= installed
    binary = next(p for p in result.rpms if p.name.startswith("adj-greeter-2.0"))
    assert header(binary, "%{ARCH} %{SOURCERPM}") == f"x86_64 adj-greeter-2.0-1{DIST}.src.rpm"


def test_tag_macros_and_options_reach_the_rpm_header_and_rpmbuild_runs_unprivileged(
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


def test_a_failing_build_raises_build_error_naming_build_log(adapter, koji, task):
    ctx, srpm = task("adj-failbuild")
    with pytest.raises(BuildError, match=r"build\.log") as info:
        run(adapter, koji, ctx, srpm, "noarch")
    assert info.value.log == str(ctx.work_dir / "result" / "build.log")
    assert info.value.exit_code not in (None, 0)
    assert "ADJ-FAILBUILD" in Path(info.value.log).read_text()
    assert (ctx.work_dir / "result" / "root.log").stat().st_size > 0


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


def test_a_topurl_repo_uses_the_network_for_init_but_never_for_the_build(
    adapter, koji, task, http_dir
):
    served, base = http_dir
    shutil.copytree(koji.topdir.root, served / "kojifiles", symlinks=True, dirs_exist_ok=True)
    ctx, srpm = task("adj-netprobe")
    url = f"{base}/kojifiles/repos/{TAG}/{REPO_ID}/{ARCH}"
    result = adapter.run(
        ctx, srpm, "noarch", repo=url, repo_id=REPO_ID, tag_name=TAG, build_config=build_config()
    )
    assert "ADJ-NETPROBE: NETWORK ABSENT" in (result.result_dir / "build.log").read_text()
    assert "debian-buildtools" in {e["name"] for e in result.buildroot}


def test_a_build_cannot_write_into_the_koji_repo(adapter, koji, task):
    before = repo_digest(koji.topdir.root)
    ctx, srpm = task("adj-repowriter")
    with pytest.raises(BuildError, match=r"build\.log") as info:
        run(adapter, koji, ctx, srpm, "noarch")
    log = Path(info.value.log).read_text()
    assert "ADJ-REPOWRITER: ALL WRITES REFUSED" in log
    assert "Read-only file system" in log
    assert repo_digest(koji.topdir.root) == before


def test_only_the_repo_and_its_packages_are_visible(manager, image, koji, task, tmp_path):
    # A file elsewhere in the topdir (another tag's data) must not be mounted.
    secret = koji.topdir.root / "work" / "other-task" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("not for this build")
    adapter = BuildArchAdapter(manager, image, cache=False)
    ctx, srpm = task("adj-hello")
    seen: list[str] = []

    def look(_packages: object) -> None:
        [container] = manager.list_containers({LABEL_WORKER: WORKER_ID})
        out = subprocess.run(
            [
                "podman",
                "--runtime",
                "runc",
                "exec",
                container["id"],
                "sh",
                "-c",
                "ls /mnt/koji; ls /mnt/koji/work 2>&1; touch /builddir/result-probe 2>&1 || true",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seen.append(out.stdout + out.stderr)

    run(adapter, koji, ctx, srpm, "noarch", on_buildroot_ready=look)
    assert "packages" in seen[0] and "repos" in seen[0]
    assert "secret.txt" not in seen[0] and "No such file or directory" in seen[0]


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
    with pytest.raises(BuildError, match="cannot build arch aarch64"):
        run(adapter, koji, ctx, srpm, "aarch64")
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
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []
    assert not (ctx.work_dir / "result").exists()


def test_a_raising_buildroot_callback_aborts_and_removes_the_container(
    adapter, koji, task, manager
):
    ctx, srpm = task("adj-hello")

    def refuse(_packages: object) -> None:
        raise RuntimeError("hub refused the buildroot list")

    with pytest.raises(RuntimeError, match="hub refused"):
        run(adapter, koji, ctx, srpm, "noarch", on_buildroot_ready=refuse)
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []


def test_the_buildroot_cache_skips_init_and_reports_the_same_buildroot(
    manager, image, koji, task, tmp_path
):
    cache_dir = tmp_path / "cache"
    adapter = BuildArchAdapter(manager, image, cache=True, cache_dir=cache_dir, cache_max_images=2)
    first_ctx, first_srpm = task("adj-greeter")
    config = build_config(**{"rpm.macro.adj_cache_test": first_ctx.work_dir.name})
    cold = run(adapter, koji, first_ctx, first_srpm, build_config=config)
    second_ctx, second_srpm = task("adj-greeter")
    warm = run(adapter, koji, second_ctx, second_srpm, build_config=config)
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert warm.buildroot == cold.buildroot
    assert [p.name for p in warm.rpms] == [p.name for p in cold.rpms]
    for a, b in zip(cold.rpms, warm.rpms):
        fmt = "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{REQUIRENEVRS} %{PROVIDENEVRS}"
        assert header(a, fmt) == header(b, fmt)
    warm_root = (warm.result_dir / "root.log").read_text()
    assert "install @build" not in warm_root
    assert "Using cached buildroot" in (warm.result_dir / "state.log").read_text()
    # A different install-relevant input (macros) is a different buildroot.
    third_ctx, third_srpm = task("adj-greeter")
    other = run(adapter, koji, third_ctx, third_srpm, build_config=build_config())
    assert other.cache_hit is False
    cached = subprocess.run(
        [
            "podman",
            "--runtime",
            "runc",
            "images",
            "-q",
            "--filter",
            "label=io.koji.adjutant.buildroot=1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert 1 <= len(cached) <= 2
    for image_id in cached:
        subprocess.run(
            ["podman", "--runtime", "runc", "rmi", "-f", image_id], capture_output=True, check=False
        )


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
