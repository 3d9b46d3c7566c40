"""The test-data toolkit must give the adapter tests what Koji would: real RPMs, the hub's repo
layout, createrepo_c repodata, and a repo that dnf in the task image can populate a buildroot
from, in which an unprivileged rpmbuild then sees its BuildRequires as installed.

Run: PYTHONPATH=tests python -m pytest tests/test_kojitopdir.py -q
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import kojitopdir as kt
import pytest

DIST = ".adj1"
DEFINES = {"dist": DIST}
ARCH = "x86_64"
IMAGE = os.environ.get("KOJI_ADJUTANT_TEST_IMAGE", "localhost/koji-adjutant-task:dev")
PODMAN = ["podman", "--runtime", "runc"]
# Where the buildroot containers see the topdir, as kojid's default topdir.
TOPDIR_MOUNT = "/mnt/koji"
SRPM_MOUNT = "/srpms"
MOCKBUILD = "1000:135"
# Specs whose binary RPMs the host can build (adj-greeter needs adj-libgreet-devel installed,
# the others are meant to fail or to probe a buildroot).
HOST_BUILDABLE = (
    "debian-buildtools",
    "adj-hello",
    "adj-libgreet",
    "koji-adjutant-hello",
    "adj-whoami",
)
# adj-evilreq and adj-leadforger ship sources a test generates (an RPM, a form word): built there;
# adj-scmhello's source is fetched by its source_cmd (tests/test_srpm.py).
NEEDS_GENERATED_SOURCES = ("adj-evilreq", "adj-leadforger", "adj-scmhello")
ALL_SPECS = sorted(
    [p.stem for p in kt.SPECS_DIR.glob("*.spec") if p.stem not in NEEDS_GENERATED_SOURCES]
    + [kt.BUILDTOOLS_SPEC.stem, kt.SAMPLE_SPEC.stem]
)


def _unavailable(reason: str) -> None:
    """Skip on a developer machine without the tool; in CI a missing tool is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rpm_tools() -> None:
    try:
        kt.ensure_rpm_tools()
    except kt.MissingToolError as exc:
        _unavailable(str(exc))


@dataclass(frozen=True)
class Built:
    srpms: Mapping[str, Path]
    packages: Mapping[str, kt.BuiltPackage]
    srpm_dir: Path


@pytest.fixture(scope="module")
def built(rpm_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Built:
    srpm_dir = tmp_path_factory.mktemp("srpms")
    srpm_dir.chmod(0o755)  # mounted into buildroots where mockbuild reads the SRPMs
    srpms = {
        name: kt.build_srpm(kt.spec_path(name), srpm_dir, defines=DEFINES) for name in ALL_SPECS
    }
    rpm_dir = tmp_path_factory.mktemp("rpms")
    packages = {
        name: kt.BuiltPackage(
            srpm=srpms[name], rpms=tuple(kt.build_rpms(srpms[name], rpm_dir, defines=DEFINES))
        )
        for name in HOST_BUILDABLE
    }
    return Built(srpms=srpms, packages=packages, srpm_dir=srpm_dir)


@dataclass(frozen=True)
class Topdir:
    topdir: kt.KojiTopdir
    build_repo: kt.KojiRepo  # every build, the usual build tag repo
    tools_repo: kt.KojiRepo  # only debian-buildtools: the README demo's starting point


@pytest.fixture(scope="module")
def topdir(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Topdir:
    top = kt.KojiTopdir(tmp_path_factory.mktemp("koji"))
    for name in HOST_BUILDABLE:
        top.add_build(built.packages[name].all)
    build_repo = top.make_repo("adj-build", 10, ARCH)
    tools_repo = top.make_repo("adj-tools-build", 20, ARCH, packages=["debian-buildtools"])
    return Topdir(topdir=top, build_repo=build_repo, tools_repo=tools_repo)


# --- RPM building and headers -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SPECS)
def test_every_spec_builds_an_srpm_with_the_dist_macro(built: Built, name: str) -> None:
    header = kt.rpm_header(built.srpms[name], "name", "release", "arch", "sourcerpm")
    assert header["name"] == name
    assert header["arch"] == "src"
    assert str(header["release"]).endswith(DIST)
    assert header["sourcerpm"] is None
    assert built.srpms[name].name.startswith(f"{name}-") and built.srpms[name].name.endswith(
        f"{DIST}.src.rpm"
    )


def test_rpm_header_reads_the_fields_koji_records(built: Built) -> None:
    libgreet = built.packages["adj-libgreet"]
    by_name = {kt.rpm_header(p, "name")["name"]: p for p in libgreet.rpms}
    assert set(by_name) == {"adj-libgreet", "adj-libgreet-devel"}
    header = kt.rpm_header(by_name["adj-libgreet-devel"])
    assert header["version"] == "1.2"
    assert header["release"] == f"3{DIST}"
    assert header["epoch"] is None
    assert header["arch"] == ARCH
    assert header["sourcerpm"] == libgreet.srpm.name
    assert isinstance(header["payloadhash"], str) and len(header["payloadhash"]) == 32
    int(str(header["payloadhash"]), 16)
    assert isinstance(header["size"], int) and header["size"] > 0
    assert isinstance(header["buildtime"], int) and header["buildtime"] > 0
    # Each RPM has its own payload digest, which is what buildroot lists are matched by.
    assert (
        kt.rpm_header(by_name["adj-libgreet"], "payloadhash")["payloadhash"]
        != header["payloadhash"]
    )


def test_rpm_header_of_an_srpm_reports_arch_src_even_for_noarch(built: Built) -> None:
    assert kt.rpm_header(built.srpms["adj-hello"], "arch") == {"arch": "src"}
    (hello,) = built.packages["adj-hello"].rpms
    assert kt.rpm_header(hello, "arch") == {"arch": "noarch"}


def test_build_package_makes_subpackages_of_both_arches(built: Built) -> None:
    sample = built.packages["koji-adjutant-hello"]
    arches = {
        kt.rpm_header(p, "name")["name"]: kt.rpm_header(p, "arch")["arch"] for p in sample.rpms
    }
    assert arches == {"koji-adjutant-hello": ARCH, "koji-adjutant-hello-doc": "noarch"}


def test_rpmbuild_failure_raises_with_the_build_output(built: Built, tmp_path: Path) -> None:
    with pytest.raises(kt.RpmToolError) as info:
        kt.build_rpms(built.srpms["adj-failbuild"], tmp_path)
    assert "ADJ-FAILBUILD: deliberate failure in %build" in info.value.output
    assert "ADJ-FAILBUILD: deliberate failure" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_buildtools_provides_the_image_toolchain_and_nothing_it_lacks(built: Built) -> None:
    (tools,) = built.packages["debian-buildtools"].rpms
    provides = set(
        subprocess.run(
            ["rpm", "-qp", "--provides", str(tools)], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )
    for needed in (
        "gcc",
        "gcc-c++",
        "make",
        "rpm-build",
        "tar",
        "/bin/sh",
        "/usr/bin/bash",
        "libc.so.6()(64bit)",
        "libc.so.6(GLIBC_2.34)(64bit)",
        "rtld(GNU_HASH)",
    ):
        assert needed in provides
    assert "info" not in provides and "redhat-rpm-config" not in provides


def test_spec_path_finds_test_and_sample_specs() -> None:
    assert kt.spec_path("adj-hello") == kt.SPECS_DIR / "adj-hello.spec"
    assert kt.spec_path("debian-buildtools.spec") == kt.BUILDTOOLS_SPEC
    assert kt.BUILDTOOLS_SPEC.parent == kt.SAMPLE_DIR
    assert not (kt.SPECS_DIR / "debian-buildtools.spec").exists()
    with pytest.raises(FileNotFoundError):
        kt.spec_path("no-such-package")


def test_ensure_rpm_tools_names_what_is_missing() -> None:
    with pytest.raises(kt.MissingToolError, match="definitely-not-a-tool-xyz"):
        kt.ensure_rpm_tools("rpm", "definitely-not-a-tool-xyz")


# --- the topdir and repo layout ---------------------------------------------------------


def test_builds_are_stored_at_koji_pathinfo_paths(built: Built, topdir: Topdir) -> None:
    root = topdir.topdir.root
    base = root / "packages" / "adj-libgreet" / "1.2" / f"3{DIST}"
    assert (base / "src" / f"adj-libgreet-1.2-3{DIST}.src.rpm").is_file()
    # A subpackage lives under its build's (SRPM's) name, not its own.
    assert (base / ARCH / f"adj-libgreet-devel-1.2-3{DIST}.{ARCH}.rpm").is_file()
    doc = root / "packages" / "koji-adjutant-hello" / "1.0" / f"1{DIST}" / "noarch"
    assert (doc / f"koji-adjutant-hello-doc-1.0-1{DIST}.noarch.rpm").is_file()


def test_add_build_rejects_rpms_of_different_srpms(built: Built, tmp_path: Path) -> None:
    top = kt.KojiTopdir(tmp_path)
    mixed = [*built.packages["adj-hello"].rpms, *built.packages["adj-libgreet"].rpms]
    with pytest.raises(ValueError, match="share one SRPM"):
        top.add_build(mixed)
    top.add_build(built.packages["adj-hello"].all)
    with pytest.raises(ValueError, match="already exists"):
        top.add_build(built.packages["adj-hello"].rpms)


def test_repo_has_the_hub_layout(topdir: Topdir) -> None:
    repo = topdir.build_repo
    root = topdir.topdir.root
    assert repo.repo_dir == root / "repos" / "adj-build" / "10"
    assert repo.arch_dir == repo.repo_dir / ARCH
    assert os.readlink(repo.toplink) == "../../../.."
    assert repo.toplink.resolve() == root
    assert repo.comps == repo.repo_dir / "groups" / "comps.xml"
    assert sorted(p.name for p in repo.arch_dir.iterdir()) == [
        "blocklist",
        "pkglist",
        "repodata",
        "rpmlist.jsonl",
        "toplink",
    ]
    assert repo.blocklist.read_text() == ""
    assert os.readlink(repo.repo_dir.parent / "latest") == "10"
    info = json.loads(repo.repo_json.read_text())
    assert info == {
        "id": 10,
        "tag": "adj-build",
        "tag_id": topdir.topdir.tag_id("adj-build"),
        "task_id": None,
        "event_id": info["event_id"],
        "opts": {"src": False, "debuginfo": False, "separate_src": False, "maven": False},
        "custom_opts": {},
        "with_src": False,
        "with_separate_src": False,
        "with_debuginfo": False,
    }


def test_pkglist_paths_resolve_through_toplink(topdir: Topdir) -> None:
    repo = topdir.build_repo
    lines = repo.pkglist.read_text().splitlines()
    assert lines and all(line.startswith("toplink/packages/") for line in lines)
    resolved = [(repo.arch_dir / line).resolve() for line in lines]
    assert all(path.is_file() for path in resolved)
    assert tuple(resolved) == repo.packages
    # No SRPMs by default (repo option src is off); noarch and x86_64 binaries are in.
    names = [str(kt.rpm_header(path, "name")["name"]) for path in resolved]
    assert sorted(names) == [
        "adj-hello",
        "adj-libgreet",
        "adj-libgreet-devel",
        "adj-whoami",
        "debian-buildtools",
        "koji-adjutant-hello",
        "koji-adjutant-hello-doc",
    ]


def test_rpmlist_jsonl_has_the_hub_rpminfo_fields(topdir: Topdir) -> None:
    repo = topdir.build_repo
    entries = [json.loads(line) for line in repo.rpmlist.read_text().splitlines()]
    assert entries == [dict(info) for info in repo.rpms]
    for entry, path in zip(entries, repo.packages):
        assert list(entry) == [
            "name",
            "version",
            "release",
            "arch",
            "id",
            "epoch",
            "draft",
            "payloadhash",
            "size",
            "buildtime",
            "buildroot_id",
            "build_id",
            "metadata_only",
            "extra",
        ]
        header = kt.rpm_header(
            path, "name", "version", "release", "arch", "epoch", "payloadhash", "buildtime"
        )
        assert {key: entry[key] for key in header} == header
        assert entry["size"] == path.stat().st_size
    assert len({entry["id"] for entry in entries}) == len(entries)


def _repodata_packages(repodata: Path) -> list[dict[str, str]]:
    """Packages listed in a repo's primary.xml.gz (location href, name, arch)."""
    ns = {
        "repo": "http://linux.duke.edu/metadata/repo",
        "common": "http://linux.duke.edu/metadata/common",
    }
    repomd = ET.parse(repodata / "repomd.xml").getroot()
    (href,) = [
        loc.get("href")
        for data in repomd.findall("repo:data", ns)
        if data.get("type") == "primary"
        for loc in data.findall("repo:location", ns)
    ]
    primary = ET.fromstring(gzip.decompress((repodata.parent / str(href)).read_bytes()))
    return [
        {
            "href": str(pkg.find("common:location", ns).get("href")),  # type: ignore[union-attr]
            "name": str(pkg.findtext("common:name", namespaces=ns)),
            "arch": str(pkg.findtext("common:arch", namespaces=ns)),
        }
        for pkg in primary.findall("common:package", ns)
    ]


def _repodata_types(repodata: Path) -> list[str]:
    ns = {"repo": "http://linux.duke.edu/metadata/repo"}
    return [
        str(d.get("type"))
        for d in ET.parse(repodata / "repomd.xml").getroot().findall("repo:data", ns)
    ]


def test_repodata_lists_exactly_the_pkglist(topdir: Topdir) -> None:
    repo = topdir.build_repo
    assert repo.repodata == repo.arch_dir / "repodata"
    listed = _repodata_packages(repo.repodata)
    assert sorted(p["href"] for p in listed) == sorted(repo.pkglist.read_text().splitlines())
    assert "group" in _repodata_types(repo.repodata)
    assert not (repo.repodata / "EMPTY_REPO").exists()


def test_comps_has_the_build_groups(topdir: Topdir) -> None:
    comps = ET.parse(topdir.build_repo.comps).getroot()
    groups = {
        g.findtext("id"): [p.text for p in g.iter("packagereq")] for g in comps.findall("group")
    }
    assert groups == {"build": ["debian-buildtools"], "srpm-build": ["debian-buildtools"]}
    assert all(p.get("type") == "mandatory" for p in comps.iter("packagereq"))


def test_blocked_packages_and_src_option(topdir: Topdir) -> None:
    repo = topdir.topdir.make_repo(
        "adj-blocked",
        30,
        ARCH,
        blocked=["adj-hello"],
        src=True,
        with_repodata=False,
        groups={"build": ["debian-buildtools", "adj-whoami"]},
    )
    lines = repo.pkglist.read_text().splitlines()
    assert repo.blocklist.read_text() == "adj-hello\n"
    assert not any("/adj-hello/" in line for line in lines)
    assert any(line.endswith(f"adj-libgreet-1.2-3{DIST}.src.rpm") for line in lines)
    assert json.loads(repo.repo_json.read_text())["with_src"] is True
    # Without repodata the repo is as a createrepo task finds it: no repodata, not "latest".
    assert repo.repodata is None and not (repo.arch_dir / "repodata").exists()
    assert not (repo.repo_dir.parent / "latest").exists()
    assert '<packagereq type="mandatory">adj-whoami</packagereq>' in repo.comps.read_text()


def test_an_existing_repo_is_never_overwritten(topdir: Topdir) -> None:
    with pytest.raises(FileExistsError):
        topdir.topdir.make_repo("adj-build", 10, ARCH)


def test_empty_repo_is_marked_like_kojid_does(topdir: Topdir) -> None:
    repo = topdir.topdir.make_repo("adj-empty", 40, ARCH, packages=[])
    assert repo.pkglist.read_text() == ""
    assert repo.repodata is not None and (repo.repodata / "EMPTY_REPO").is_file()
    assert _repodata_packages(repo.repodata) == []


def test_createrepo_command_follows_kojid(topdir: Topdir, tmp_path: Path) -> None:
    repo = topdir.build_repo
    assert kt.createrepo_command(repo.arch_dir, tmp_path) == [
        "createrepo_c",
        "--error-exit-val",
        "-vd",
        "-o",
        str(tmp_path),
        "-i",
        str(repo.pkglist),
        "-g",
        str(repo.comps),
        str(repo.arch_dir),
    ]


def test_canon_arch_matches_koji() -> None:
    cases = {
        "i686": "i386",
        "athlon": "i386",
        "ia32e": "x86_64",
        "ppc64le": "ppc64le",
        "ppc64p7": "ppc64",
        "armv7hl": "armhfp",
        "armv6l": "arm",
        "x86_64": "x86_64",
        "aarch64": "aarch64",
        "sparcv9": "sparc",
        "sparc64v": "sparc64",
        "alphaev6": "alpha",
    }
    assert {arch: kt.canon_arch(arch) for arch in cases} == cases


# --- the repo in the task image ---------------------------------------------------------


def _mock_dnf_conf(baseurl: str) -> str:
    """The yum.conf that koji.genMockConfig writes for a buildroot, as dnf's config."""
    return (
        "[main]\ncachedir=/var/cache/yum\ndebuglevel=1\nlogfile=/var/log/yum.log\n"
        "reposdir=/dev/null\nretries=20\nobsoletes=1\ngpgcheck=0\nassumeyes=1\nkeepcache=1\n"
        "install_weak_deps=0\nstrict=1\n\n# repos\n\n[build]\nname=build\n"
        f"baseurl={baseurl}\n"
    )


class Buildroot:
    """A running task-image container with the topdir mounted read-only and no network."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(
        self, argv: Sequence[str], *, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*PODMAN, "exec"]
        if user is not None:
            cmd += ["--user", user, "--env", "HOME=/builddir", "--workdir", "/builddir"]
        return subprocess.run(
            [*cmd, self.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )

    def rebuild(self, srpm: Path, *defines: str) -> subprocess.CompletedProcess[str]:
        """rpmbuild --rebuild as mockbuild, with mock's _topdir; BuildRequires are checked."""
        argv = [
            "rpmbuild",
            "--rebuild",
            "--define",
            "_topdir /builddir/build",
            "--define",
            f"dist {DIST}",
        ]
        for define in defines:
            argv += ["--define", define]
        return self.run([*argv, f"{SRPM_MOUNT}/{srpm.name}"], user=MOCKBUILD)


@contextmanager
def _buildroot(
    topdir: kt.KojiTopdir, repo: kt.KojiRepo, srpm_dir: Path, install: Sequence[str]
) -> Iterator[Buildroot]:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    if subprocess.run([*PODMAN, "image", "exists", IMAGE], check=False).returncode != 0:
        _unavailable(f"task image {IMAGE} is missing (scripts/build-task-image.sh builds it)")
    name = f"kojitopdir-test-{uuid.uuid4().hex[:12]}"
    start = [
        *PODMAN,
        "run",
        "--detach",
        "--rm",
        "--name",
        name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--volume",
        f"{topdir.root}:{TOPDIR_MOUNT}:ro",
        "--volume",
        f"{srpm_dir}:{SRPM_MOUNT}:ro",
        IMAGE,
        "sleep",
        "infinity",
    ]
    subprocess.run(start, check=True, stdout=subprocess.DEVNULL)
    try:
        root = Buildroot(name)
        # Debian's rpm keeps a per-user rpmdb (~/.rpmdb); one system rpmdb makes what root's dnf
        # installs visible to mockbuild's rpmbuild.
        setup = (
            "set -e\n"
            "echo '%_dbpath /var/lib/rpm' > /etc/rpm/macros.dbpath\n"
            f"cat > /etc/dnf/dnf.conf <<'EOF'\n{_mock_dnf_conf(repo.baseurl_at(TOPDIR_MOUNT))}EOF\n"
            f"dnf --releasever=1 install {' '.join(install)}\n"
        )
        result = root.run(["bash", "-c", setup])
        assert result.returncode == 0, result.stdout
        yield root
    finally:
        subprocess.run(
            [*PODMAN, "rm", "--force", "--time", "0", name],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def greeter_root(topdir: Topdir, built: Built) -> Iterator[Buildroot]:
    with _buildroot(
        topdir.topdir, topdir.build_repo, built.srpm_dir, ["@build", "adj-libgreet-devel"]
    ) as root:
        yield root


@pytest.fixture(scope="module")
def tools_root(topdir: Topdir, built: Built) -> Iterator[Buildroot]:
    with _buildroot(topdir.topdir, topdir.tools_repo, built.srpm_dir, ["@build"]) as root:
        yield root


def _installed(root: Buildroot) -> dict[str, str]:
    result = root.run(["rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} %{SIGMD5}\\n"])
    assert result.returncode == 0, result.stdout
    return dict(line.split() for line in result.stdout.splitlines())


@pytest.mark.podman
def test_dnf_installs_the_build_group_and_deps_from_the_repo(
    greeter_root: Buildroot, topdir: Topdir
) -> None:
    installed = _installed(greeter_root)
    repo_hashes = {
        f"{r['name']}-{r['version']}-{r['release']}.{r['arch']}": r["payloadhash"]
        for r in topdir.build_repo.rpms
    }
    wanted = {"debian-buildtools", "adj-libgreet", "adj-libgreet-devel"}
    assert sorted(installed) == sorted(
        f"{r['name']}-{r['version']}-{r['release']}.{r['arch']}"
        for r in topdir.build_repo.rpms
        if r["name"] in wanted
    )
    # What a buildroot list reports matches rpmlist.jsonl by payload hash, as kojid checks.
    assert all(installed[nvra] == repo_hashes[nvra] for nvra in installed)


@pytest.mark.podman
def test_buildroot_list_entry_matches_the_installed_rpmdb(
    greeter_root: Buildroot, topdir: Topdir
) -> None:
    """What kojid's getPackageList would read from the buildroot's rpmdb, field by field."""
    fmt = "%{NAME} %{VERSION} %{RELEASE} %{EPOCH} %{ARCH} %{SIGMD5} %{SIZE} %{BUILDTIME}\\n"
    result = greeter_root.run(["rpm", "-qa", "--qf", fmt])
    assert result.returncode == 0, result.stdout
    keys = ("name", "version", "release", "epoch", "arch", "payloadhash", "size", "buildtime")
    from_rpmdb = []
    for line in result.stdout.splitlines():
        entry: dict[str, object] = dict(zip(keys, line.split()))
        for key in ("epoch", "size", "buildtime"):
            entry[key] = None if entry[key] == "(none)" else int(str(entry[key]))
        from_rpmdb.append(entry)
    by_name = {path.name: path for path in topdir.build_repo.packages}
    expected = [
        kt.buildroot_list_entry(
            by_name[f"{e['name']}-{e['version']}-{e['release']}.{e['arch']}.rpm"]
        )
        for e in from_rpmdb
    ]
    assert from_rpmdb == expected


@pytest.mark.podman
def test_unprivileged_rebuild_sees_build_requires_from_the_repo(
    greeter_root: Buildroot, built: Built
) -> None:
    result = greeter_root.rebuild(built.srpms["adj-greeter"])
    assert result.returncode == 0, result.stdout
    assert "Failed build dependencies" not in result.stdout
    for rpm in (
        f"x86_64/adj-greeter-2.0-1{DIST}.x86_64.rpm",
        f"x86_64/adj-greeter-tools-2.0-1{DIST}.x86_64.rpm",
        f"noarch/adj-greeter-doc-2.0-1{DIST}.noarch.rpm",
    ):
        assert f"Wrote: /builddir/build/RPMS/{rpm}" in result.stdout


@pytest.mark.podman
def test_missing_build_dependency_is_reported(greeter_root: Buildroot, built: Built) -> None:
    result = greeter_root.rebuild(built.srpms["adj-missingdep"])
    assert result.returncode != 0
    assert "adj-nonexistent-dependency >= 1.0 is needed by" in result.stdout


@pytest.mark.podman
def test_sample_builds_with_only_the_build_group(tools_root: Buildroot, built: Built) -> None:
    assert sorted(_installed(tools_root)) == [f"debian-buildtools-12-1{DIST}.{ARCH}"]
    result = tools_root.rebuild(built.srpms["koji-adjutant-hello"])
    assert result.returncode == 0, result.stdout
    assert (
        f"Wrote: /builddir/build/RPMS/noarch/koji-adjutant-hello-doc-1.0-1{DIST}.noarch.rpm"
        in result.stdout
    )


@pytest.mark.podman
def test_netprobe_finds_no_network_in_the_buildroot(tools_root: Buildroot, built: Built) -> None:
    result = tools_root.rebuild(built.srpms["adj-netprobe"])
    assert result.returncode == 0, result.stdout
    assert "ADJ-NETPROBE: interfaces: lo" in result.stdout
    assert "ADJ-NETPROBE: NETWORK ABSENT" in result.stdout


def _tree_digest(root: Path) -> str:
    """Digest of every path, link target and file content under root (toplink not followed)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.podman
def test_repowriter_fails_on_the_read_only_repo_and_changes_nothing(
    tools_root: Buildroot, built: Built, topdir: Topdir
) -> None:
    before = _tree_digest(topdir.topdir.root)
    result = tools_root.rebuild(built.srpms["adj-repowriter"])
    assert result.returncode != 0
    arch_dir = f"{TOPDIR_MOUNT}/repos/adj-tools-build/20/{ARCH}"
    assert f"ADJ-REPOWRITER: write {arch_dir}: REFUSED (Read-only file system)" in result.stdout
    assert f"ADJ-REPOWRITER: write {TOPDIR_MOUNT}: REFUSED (Read-only file system)" in result.stdout
    assert "ADJ-REPOWRITER: ALL WRITES REFUSED" in result.stdout
    assert _tree_digest(topdir.topdir.root) == before


@pytest.mark.podman
def test_whoami_records_the_unprivileged_user_and_macros(
    tools_root: Buildroot, built: Built
) -> None:
    result = tools_root.rebuild(built.srpms["adj-whoami"], "vendor Koji", "packager Koji")
    assert result.returncode == 0, result.stdout
    for line in (
        "uid=1000",
        "user=mockbuild",
        f"dist={DIST}",
        "vendor=Koji",
        "packager=Koji",
        "topdir=/builddir/build",
        f"target_cpu={ARCH}",
    ):
        assert f"ADJ-WHOAMI: {line}\n" in result.stdout
