"""The dev distribution (koji_adjutant.devdistro) against real Podman and the real task image.

The RPMs are built once per session into a fresh cache directory. Then: their names and
Provides (host rpm), a `dnf --installroot` of the `build` group into an empty directory with the
task image's own dnf (exactly the group's packages end up in the root's rpmdb), that root as a
container's root filesystem (gcc, g++, make and rpmbuild as uid 1000), and the cache: a second
call runs no container, two concurrent callers share one build.

The root checks use the podman CLI (`podman run --rootfs`), which the API under test does not
offer. Run: KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock .venv/bin/python -m pytest \
     tests/test_devdistro.py -q
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RecordingSink, _unavailable, podman_cli
from koji_adjutant import PodmanManager
from koji_adjutant.devdistro import (
    BUILD_GROUPS,
    CACHE_DIR_ENV,
    DEFAULT_CACHE_DIR,
    MANIFEST,
    DevDistro,
    default_cache_dir,
    ensure_dev_distro,
)

podman = pytest.mark.podman

ROLES = ("setup", "base", "rpm", "toolchain", "utils", "perl", "python3", "dnf", "extras")
# Never in a package: what podman injects or mounts, scratch space, the image build's state.
NOT_PACKAGED = re.compile(
    r"^/(proc|sys|dev|run|tmp|var/tmp|home|builddir|var/cache/apt|var/lib/apt|var/lib/dpkg"
    r"|var/lib/rpm|var/log)/|^/builddir$|^/etc/(hosts|hostname|resolv\.conf)$"
)
BUILD_USER, BUILD_UID, BUILD_GROUP, BUILD_GID = "mockbuild", 1000, "mock", 135
RLIMIT_CEILING = 16384  # src/core/spec.rs: NOFILE_CEILING, NPROC_CEILING


def _ulimits() -> list[str]:
    """Podman's default rlimits exceed this kind of host's hard limits (PODMAN-NOTES): ask for
    the host's, capped as PodmanManager caps them (runc cannot raise what podman lowered)."""
    args = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        value = RLIMIT_CEILING if hard == resource.RLIM_INFINITY else min(hard, RLIMIT_CEILING)
        args += ["--ulimit", f"{name}={value}:{value}"]
    return args


def _run(*args: str) -> str:
    """A podman CLI call that must succeed; its stdout."""
    out = podman_cli(*args)
    assert out.returncode == 0, f"podman {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _rpm(*args: str) -> str:
    if shutil.which("rpm") is None:
        _unavailable("no rpm on this host (make host-deps installs it)")
    return subprocess.run(["rpm", *args], capture_output=True, text=True, check=True).stdout


def _comps(groups: dict[str, tuple[str, ...]]) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<comps>"]
    for group, packages in groups.items():
        lines.append(f"  <group><id>{group}</id><name>{group}</name><packagelist>")
        lines += [f'    <packagereq type="mandatory">{p}</packagereq>' for p in packages]
        lines.append("  </packagelist></group>")
    return "\n".join([*lines, "</comps>", ""])


@pytest.fixture(scope="session")
def built(
    manager: PodmanManager, image: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DevDistro, RecordingSink, Path]:
    cache = tmp_path_factory.mktemp("devdistro-cache")
    sink = RecordingSink()
    distro = ensure_dev_distro(manager, image, cache_dir=cache, sink=sink)
    return distro, sink, cache


@pytest.fixture(scope="session")
def distro(built: tuple[DevDistro, RecordingSink, Path]) -> DevDistro:
    return built[0]


@pytest.fixture(scope="session")
def build_root(
    distro: DevDistro, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """An empty directory with `@build` installed by the task image's dnf from a repo of the
    distro's RPMs (repodata and comps made by the image's createrepo_c)."""
    base = tmp_path_factory.mktemp("devdistro-root")
    repo, root = base / "repo", base / "root"
    repo.mkdir()
    root.mkdir(mode=0o755)
    for rpm in distro.rpms:
        shutil.copy2(rpm, repo / rpm.name)
    (base / "comps.xml").write_text(_comps(dict(distro.groups)))
    script = (
        "set -e; mkdir -p /etc/yum.repos.d; createrepo_c -q -g /comps.xml /repo; "
        "start=$(date +%s%N); "
        "dnf -y -q --installroot=/br --releasever=1 --disablerepo='*' "
        "--repofrompath=k,file:///repo --enablerepo=k --nogpgcheck "
        "--setopt=install_weak_deps=0 install @build; "
        'echo "installed in $(( ($(date +%s%N) - start) / 1000000 )) ms"'
    )
    out = _run(
        "run", "--rm", "--network", "none", *_ulimits(),
        "-v", f"{repo}:/repo", "-v", f"{base / 'comps.xml'}:/comps.xml:ro", "-v", f"{root}:/br",
        image, "bash", "-c", script,
    )  # fmt: skip
    print(out)
    yield root
    shutil.rmtree(base, ignore_errors=True)


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    assert default_cache_dir() == DEFAULT_CACHE_DIR == Path("/var/cache/koji-adjutant/devdistro")
    monkeypatch.setenv(CACHE_DIR_ENV, "/srv/distro")
    assert default_cache_dir() == Path("/srv/distro")


@podman
def test_the_build_makes_one_srpm_and_one_rpm_per_role(
    built: tuple[DevDistro, RecordingSink, Path], image: str, manager: PodmanManager
) -> None:
    distro, sink, cache = built
    image_id = manager.ensure_image_available(image, pull_policy="never").removeprefix("sha256:")
    assert distro.image_id == image_id
    assert distro.directory.parent == cache and distro.directory.name.startswith(image_id)
    assert b"Wrote: " in sink.stdout + sink.stderr  # rpmbuild's output reached the sink
    assert sorted(p.name.rsplit("-", 2)[0] for p in distro.rpms) == sorted(
        f"devdistro-{role}" for role in ROLES
    )
    assert distro.rpm("devdistro-base").name.startswith("devdistro-base-")
    assert distro.srpm.name.endswith(".src.rpm")
    assert distro.groups == BUILD_GROUPS
    # the release carries the image, every RPM comes from the one SRPM, files world-readable
    for rpm in distro.rpms:
        release, source = _rpm("-qp", "--qf", "%{RELEASE} %{SOURCERPM}", str(rpm)).split()
        assert release.endswith(image_id[:12]) and source == distro.srpm.name
    for path in [distro.directory, *distro.directory.iterdir()]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), path
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]


@podman
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("setup", ["setup", "/etc/passwd", "/etc/group"]),
        ("base", ["/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/env", "/usr/sbin/useradd",
                  "/sbin/ldconfig", "/usr/bin/awk", "bash", "coreutils", "glibc", "shadow-utils",
                  "util-linux", "procps-ng", "libc.so.6()(64bit)", "libc.so.6(GLIBC_2.34)(64bit)",
                  "ld-linux-x86-64.so.2()(64bit)", "libstdc++.so.6()(64bit)",
                  "libgcc_s.so.1()(64bit)", "libz.so.1()(64bit)", "rtld(GNU_HASH)"]),
        ("rpm", ["rpm", "rpm-build", "/usr/bin/rpmbuild", "librpm.so.9()(64bit)"]),
        ("toolchain", ["gcc", "gcc-c++", "cpp", "make", "binutils", "glibc-devel",
                       "kernel-headers", "libstdc++-devel", "/usr/bin/gcc", "/usr/bin/cc",
                       "/usr/bin/g++", "/usr/bin/make"]),
        ("utils", ["tar", "gzip", "bzip2", "xz", "zstd", "cpio", "unzip", "patch", "file",
                   "/usr/bin/tar", "/bin/tar", "libmagic.so.1()(64bit)"]),
        ("perl", ["perl", "perl-interpreter", "/usr/bin/perl", "libperl.so.5.36()(64bit)"]),
        ("python3", ["python3", "/usr/bin/python3", "python(abi)"]),
        ("dnf", ["dnf", "createrepo_c", "/usr/bin/dnf", "/usr/bin/createrepo_c"]),
        ("extras", ["dpkg", "tzdata"]),
    ],
)  # fmt: skip
def test_each_rpm_provides_what_it_holds(distro: DevDistro, role: str, expected: list[str]):
    rpm = distro.rpm(f"devdistro-{role}")
    provides = _rpm("-qp", "--provides", str(rpm)).splitlines()
    names = {p.split(" ")[0] for p in provides}
    assert not [e for e in expected if e not in names], provides
    # Fedora names are versioned with the real upstream version, never left open
    for name in ("gcc", "bash", "make", "rpm-build", "python3"):
        for p in provides:
            if p.split(" ")[0] == name:
                assert re.fullmatch(rf"{re.escape(name)} = \d+(\.\d+)+", p), p
    # AutoReqProv is off: dependencies are between the subpackages only
    requires = _rpm("-qp", "--requires", str(rpm)).splitlines()
    assert [r for r in requires if not r.startswith(("devdistro-", "rpmlib("))] == []


@podman
def test_every_file_is_in_one_package_and_podmans_files_in_none(distro: DevDistro) -> None:
    owner: dict[str, str] = {}
    for rpm in distro.rpms:
        name = rpm.name.rsplit("-", 2)[0]
        listing = _rpm("-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", str(rpm))
        for line in listing.splitlines():
            perms, path = line.split(" ", 1)
            assert not NOT_PACKAGED.search(path), f"{path} in {name}"
            if not perms.startswith("d"):
                assert path not in owner, f"{path} in {owner.get(path)} and {name}"
                owner[path] = name
    assert owner["/etc/rpm/macros.dbpath"] == "devdistro-rpm"
    assert owner["/etc/passwd"] == owner["/etc/group"] == "devdistro-setup"
    assert owner["/etc/ld.so.cache"] == owner["/usr/bin/bash"] == "devdistro-base"
    assert owner["/usr/bin/cc"] == owner["/usr/bin/gcc-12"] == "devdistro-toolchain"
    assert owner["/usr/bin/rpmbuild"] == "devdistro-rpm"
    assert owner["/usr/bin/python3.11"] == "devdistro-python3"
    # files of a role Debian package nobody placed would land in -extras: none of the image's
    assert not [p for p, n in owner.items() if n == "devdistro-extras" and "/gcc" in p]


@podman
def test_build_group_installs_exactly_its_packages_into_an_empty_root(
    distro: DevDistro, build_root: Path
) -> None:
    installed = _rpm("--root", str(build_root), "--dbpath", "/var/lib/rpm", "-qa", "--qf",
                     "%{NAME}\n").split()  # fmt: skip
    assert sorted(installed) == sorted(distro.groups["build"])
    assert not (build_root / "usr/bin/python3").exists()
    assert not (build_root / "usr/bin/perl").exists()
    assert not (build_root / "usr/bin/dnf").exists()
    # The build user is the product's to create, not the distro's
    passwd = (build_root / "etc/passwd").read_text()
    group = (build_root / "etc/group").read_text()
    assert f"\n{BUILD_USER}:" not in f"\n{passwd}" and f":{BUILD_UID}:" not in passwd
    assert f"\n{BUILD_GROUP}:" not in f"\n{group}"
    assert f"{BUILD_USER}:" not in (build_root / "etc/subuid").read_text()
    # owners came through: /etc/shadow is root:shadow (as in the image), su is setuid
    shadow_gid = next(int(f.split(":")[2]) for f in group.splitlines() if f.startswith("shadow:"))
    assert (build_root / "etc/shadow").stat().st_gid == shadow_gid
    assert (build_root / "usr/bin/su").stat().st_mode & 0o4000
    assert (build_root / "bin").readlink() == Path("usr/bin")
    assert not (build_root / "builddir").exists()


@podman
def test_the_installed_root_runs_gcc_make_and_rpmbuild_as_the_build_user(
    build_root: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    (work / "hello.spec").write_text(HELLO_SPEC)
    (work / "hello.spec").chmod(0o644)
    script = r"""
set -e
cd /tmp
printf '#include <stdio.h>\nint main(void) { puts("hello, devdistro"); return 0; }\n' > hello.c
gcc -O2 -o hello hello.c && ./hello
printf '#include <iostream>\nint main() { std::cout << "hello, c++" << std::endl; }\n' > hi.cc
g++ -o hi hi.cc && ./hi
rpmbuild -bb --define "_topdir /tmp/rpmbuild" /work/hello.spec > rpmbuild.log 2>&1 \
    || { cat rpmbuild.log; exit 1; }
rpm -qp --requires /tmp/rpmbuild/RPMS/x86_64/hello-1-1.x86_64.rpm
bash --login -c 'echo login shell ok'
test -x /usr/bin/sleep && test -x /usr/bin/kill && /usr/bin/sleep 0.1 && echo tools ok
id -u
"""
    out = _run(
        "run", "--rm", "--network", "none", "--user", f"{BUILD_UID}:{BUILD_GID}",
        "--cap-drop", "all", "--security-opt", "no-new-privileges", *_ulimits(),
        "-e", "HOME=/tmp", "-v", f"{work}:/work:ro",
        # --rootfs takes the path as its first argument: every option goes before it
        "--rootfs", f"{build_root}:O", "/bin/bash", "-c", script,
    )  # fmt: skip
    assert "hello, devdistro" in out and "hello, c++" in out
    assert "libc.so.6()(64bit)" in out  # rpmbuild's elfdeps ran on the built binary
    assert "login shell ok" in out and "tools ok" in out
    assert out.split()[-1] == str(BUILD_UID)
    # the overlay kept every write away from the root
    assert not (build_root / "tmp/rpmbuild").exists()


HELLO_SPEC = """\
Name:           hello
Version:        1
Release:        1
Summary:        A C program built in the dev distribution
License:        MIT
BuildRequires:  gcc make /bin/sh

%description
Built by tests/test_devdistro.py.

%prep

%build
printf '#include <stdio.h>\\nint main(void) { puts("hi"); return 0; }\\n' > hello.c
printf 'hello: hello.c\\n\\t$(CC) -O2 -g -o $@ $<\\n' > Makefile
make

%install
install -D -m 0755 hello %{buildroot}%{_bindir}/hello

%files
%{_bindir}/hello
"""


@podman
@pytest.mark.usefixtures("no_leaks")
def test_a_second_call_reuses_the_cache_without_a_container(
    built: tuple[DevDistro, RecordingSink, Path], manager: PodmanManager, image: str
) -> None:
    distro, _, cache = built
    manifest = distro.directory / MANIFEST
    before = {p: p.stat().st_mtime_ns for p in [manifest, *distro.rpms]}
    sink = RecordingSink()
    started = time.monotonic()
    again = ensure_dev_distro(manager, image, cache_dir=cache, sink=sink)
    assert time.monotonic() - started < 5
    assert again == distro
    assert sink.chunks == []  # no container ran
    assert {p: p.stat().st_mtime_ns for p in before} == before


@podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_concurrent_callers_share_one_build(
    manager: PodmanManager, image: str, tmp_path: Path
) -> None:
    results: list[DevDistro] = []
    errors: list[BaseException] = []
    sinks = [RecordingSink(), RecordingSink()]

    def call(sink: RecordingSink) -> None:
        try:
            results.append(ensure_dev_distro(manager, image, cache_dir=tmp_path, sink=sink))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(s,)) for s in sinks]
    for thread in threads:
        thread.start()
        time.sleep(0.5)
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1]
    assert sorted(bool(s.chunks) for s in sinks) == [False, True]  # one built, one waited
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [
        results[0].directory.name
    ]
