"""Real RPMs and a real Koji topdir for koji-adjutant's integration tests and README demo.

The buildArch and createrepo adapters must produce what kojid's mock-based tasks produce from
the same inputs, so their tests need the inputs Koji really uses: RPMs built by rpmbuild, stored
at ``koji.pathinfo``'s paths, and repos laid out as the hub's ``repo_init`` writes them
(kojihub/kojihub.py), with repodata made by createrepo_c the way kojid's
``CreaterepoTask.create_local_repo`` runs it and moved into place as the hub's
``host.repoDone`` does. A Koji repo::

    <topdir>/packages/<build name>/<build version>/<build release>/<rpm arch>/<n>-<v>-<r>.<a>.rpm
    <topdir>/repos/<tag>/<repo_id>/repo.json          json.dump(..., indent=2)
    <topdir>/repos/<tag>/<repo_id>/groups/comps.xml   koji.generate_comps(expand_groups=True)
    <topdir>/repos/<tag>/<repo_id>/<arch>/toplink     symlink -> ../../../.. (the topdir)
    <topdir>/repos/<tag>/<repo_id>/<arch>/pkglist     toplink/packages/... one per line
    <topdir>/repos/<tag>/<repo_id>/<arch>/rpmlist.jsonl  one rpminfo dict per line
    <topdir>/repos/<tag>/<repo_id>/<arch>/blocklist   one blocked package name per line
    <topdir>/repos/<tag>/<repo_id>/<arch>/repodata/   createrepo_c output
    <topdir>/repos/<tag>/latest -> <repo_id>          once the repo is ready

This module only needs the host's ``rpm``, ``rpmbuild`` and ``createrepo_c`` (Debian packages
``rpm`` and ``createrepo-c``); it does not depend on pytest or on koji-adjutant itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union
from xml.sax.saxutils import escape

__all__ = [
    "BUILDTOOLS_SPEC",
    "DEFAULT_GROUPS",
    "DEFAULT_HEADER_TAGS",
    "SAMPLE_DIR",
    "SAMPLE_SPEC",
    "SPECS_DIR",
    "BuiltPackage",
    "GitDaemon",
    "KojiBuild",
    "KojiRepo",
    "KojiRpm",
    "KojiTopdir",
    "MissingToolError",
    "RpmToolError",
    "build_package",
    "build_rpms",
    "build_srpm",
    "buildroot_list_entry",
    "canon_arch",
    "createrepo_command",
    "ensure_rpm_tools",
    "generate_comps",
    "link_or_copy",
    "make_git_repo",
    "rpm_header",
    "run_createrepo",
    "scm_hello_files",
    "spec_path",
]

PathLike = Union[str, "os.PathLike[str]"]
HeaderValue = Union[str, int, None]

#: Test-only specs (adj-*.spec). The specs the README demo also needs live in SAMPLE_DIR.
SPECS_DIR: Path = Path(__file__).resolve().parent / "specs"


def _find_sample_dir() -> Path:
    """Locate koji_adjutant/sample without importing koji_adjutant (its _core may be unbuilt)."""
    in_tree = Path(__file__).resolve().parent.parent / "python" / "koji_adjutant" / "sample"
    if in_tree.is_dir():
        return in_tree
    import importlib.util

    spec = importlib.util.find_spec("koji_adjutant")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("koji_adjutant/sample not found in the source tree or installed")
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


#: The sample package and debian-buildtools specs, shipped in the wheel for the README demo.
SAMPLE_DIR: Path = _find_sample_dir()
SAMPLE_SPEC: Path = SAMPLE_DIR / "koji-adjutant-hello.spec"
BUILDTOOLS_SPEC: Path = SAMPLE_DIR / "debian-buildtools.spec"

#: Koji groups for a tag built with the Debian task image: debian-buildtools stands in for the
#: bash/gcc/make/... packages a Fedora tag's groups list (see debian-buildtools.spec).
DEFAULT_GROUPS: Mapping[str, Sequence[str]] = {
    "build": ("debian-buildtools",),
    "srpm-build": ("debian-buildtools",),
}

#: What rpm_header() reads when no tags are named.
DEFAULT_HEADER_TAGS: tuple[str, ...] = (
    "name",
    "epoch",
    "version",
    "release",
    "arch",
    "payloadhash",
    "size",
    "buildtime",
    "vendor",
    "packager",
    "distribution",
    "sourcerpm",
)

_INT_TAGS = frozenset({"epoch", "size", "buildtime", "installtime", "longsize", "archivesize"})
# Koji's name for the header's SIGMD5 (the payload digest the hub compares buildroot lists by).
_TAG_ALIASES = {"payloadhash": "SIGMD5"}
_QF_SEPARATOR = "\x1f"


class MissingToolError(RuntimeError):
    """A host tool this module runs (rpm, rpmbuild, createrepo_c) is not installed."""


class RpmToolError(RuntimeError):
    """rpm, rpmbuild or createrepo_c failed; the message ends with the tail of its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.splitlines()[-40:])
        super().__init__(f"{argv[0]} exited with {returncode}: {' '.join(argv)}\n{tail}")


def ensure_rpm_tools(*tools: str) -> None:
    """Raise MissingToolError naming every missing tool (default: rpm, rpmbuild, createrepo_c)."""
    wanted = tools or ("rpm", "rpmbuild", "createrepo_c")
    missing = [tool for tool in wanted if shutil.which(tool) is None]
    if missing:
        raise MissingToolError(
            f"missing host tools: {', '.join(missing)}"
            " (on Debian: apt-get install rpm createrepo-c)"
        )


def _run(argv: Sequence[str], *, cwd: Path | None = None) -> str:
    """Run a tool, returning stdout+stderr; raise RpmToolError with that output on failure."""
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RpmToolError(argv, proc.returncode, proc.stdout)
    return proc.stdout


def spec_path(name: str) -> Path:
    """Path of a bundled spec by file name or package name (tests/specs, then the sample dir)."""
    filename = name if name.endswith(".spec") else f"{name}.spec"
    for directory in (SPECS_DIR, SAMPLE_DIR):
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no spec {filename} in {SPECS_DIR} or {SAMPLE_DIR}")


def _define_args(defines: Mapping[str, str] | None) -> list[str]:
    args: list[str] = []
    for name, value in (defines or {}).items():
        args += ["--define", f"{name} {value}"]
    return args


def _written_files(output: str) -> list[Path]:
    """Files rpmbuild reports with its 'Wrote: <path>' lines."""
    return [Path(m.group(1)) for m in re.finditer(r"^Wrote: (\S+)$", output, re.MULTILINE)]


def _rpmbuild(
    mode_args: Sequence[str], outdir: Path, defines: Mapping[str, str] | None
) -> list[Path]:
    """Run host rpmbuild in a throwaway _topdir and move what it wrote into outdir."""
    ensure_rpm_tools("rpmbuild")
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kojitopdir-rpmbuild-") as topdir:
        # --nodeps: the host rpmdb is empty (Debian's tools are not RPMs); BuildRequires are
        # checked where it matters, in the task image's buildroot.
        argv = ["rpmbuild", *mode_args, "--nodeps", "--define", f"_topdir {topdir}"]
        argv += _define_args(defines)
        output = _run(argv)
        produced = []
        for written in _written_files(output):
            target = outdir / written.name
            shutil.move(str(written), str(target))
            produced.append(target)
    if not produced:
        raise RpmToolError(argv, 0, output + "\n(no 'Wrote:' lines)")
    return sorted(produced)


def build_srpm(
    spec: PathLike, outdir: PathLike, *, defines: Mapping[str, str] | None = None
) -> Path:
    """Build the SRPM of a spec with host ``rpmbuild -bs``; sources are read next to the spec.

    ``defines`` are rpm macros (for instance ``{"dist": ".fc99"}``) and change the SRPM's NVR
    exactly as a Koji tag's rpm.macro.* settings do.
    """
    spec = Path(spec).resolve()
    args = ["-bs", "--define", f"_sourcedir {spec.parent}", str(spec)]
    (srpm,) = _rpmbuild(args, Path(outdir), defines)
    return srpm


def build_rpms(
    spec_or_srpm: PathLike,
    outdir: PathLike,
    *,
    target_arch: str | None = None,
    defines: Mapping[str, str] | None = None,
) -> list[Path]:
    """Build binary RPMs with host rpmbuild (``--rebuild`` for an SRPM, ``-bb`` for a spec).

    Returns the written RPMs, moved flat into outdir. Build them from the SRPM when they will
    form a Koji build with it, so their SOURCERPM header names that SRPM.
    """
    source = Path(spec_or_srpm).resolve()
    if source.name.endswith(".src.rpm"):
        args = ["--rebuild", str(source)]
    else:
        args = ["-bb", "--define", f"_sourcedir {source.parent}", str(source)]
    if target_arch:
        args = ["--target", target_arch, *args]
    return _rpmbuild(args, Path(outdir), defines)


@dataclass(frozen=True)
class BuiltPackage:
    """A Koji-style build product: the SRPM and the binary RPMs rebuilt from it."""

    srpm: Path
    rpms: tuple[Path, ...]

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.srpm, *self.rpms)


def build_package(
    spec: PathLike,
    outdir: PathLike,
    *,
    target_arch: str | None = None,
    defines: Mapping[str, str] | None = None,
) -> BuiltPackage:
    """Build a spec as Koji does: the SRPM first, then the binary RPMs from that SRPM."""
    srpm = build_srpm(spec, outdir, defines=defines)
    rpms = build_rpms(srpm, outdir, target_arch=target_arch, defines=defines)
    return BuiltPackage(srpm=srpm, rpms=tuple(rpms))


def rpm_header(path: PathLike, *tags: str) -> dict[str, HeaderValue]:
    """Read header tags of an RPM file with ``rpm -qp --qf``.

    Keys are the tag names as given, lower-cased; absent tags are None; epoch, size, buildtime
    (and other counts) are ints. ``payloadhash`` reads SIGMD5, as Koji names it. ``arch`` of a
    source package is ``"src"``, as koji.get_header_fields reports it. ``size`` is the header's
    SIZE (installed size, what kojid's buildroot list reports), not the file size.
    """
    ensure_rpm_tools("rpm")
    names = [tag.lower() for tag in (tags or DEFAULT_HEADER_TAGS)]
    query = [*names, "sourcepackage"]
    fmt = _QF_SEPARATOR.join("%{" + _TAG_ALIASES.get(tag, tag.upper()) + "}" for tag in query)
    output = _run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fmt, str(path)])
    values = output.split(_QF_SEPARATOR)
    if len(values) != len(query):
        raise RpmToolError(["rpm", "-qp", str(path)], 0, f"unexpected query output: {output!r}")
    header: dict[str, HeaderValue] = {}
    for tag, raw in zip(query, values):
        value: HeaderValue = None if raw == "(none)" else raw
        if value is not None and tag in _INT_TAGS:
            value = int(value)
        header[tag] = value
    is_source = header.pop("sourcepackage") is not None
    if is_source and "arch" in header:
        header["arch"] = "src"
    return header


def buildroot_list_entry(path: PathLike) -> dict[str, HeaderValue]:
    """The dict kojid's BuildRoot.getPackageList reports for this RPM once it is installed.

    Fields name, version, release, epoch, arch, payloadhash, size (header SIZE), buildtime: what
    an adapter's buildroot list must contain for each RPM installed from the repo.
    """
    return rpm_header(
        path, "name", "version", "release", "epoch", "arch", "payloadhash", "size", "buildtime"
    )


def canon_arch(arch: str) -> str:
    """Koji's canonical arch (koji.canonArch): i?86 -> i386, armv7hl -> armhfp, ..."""
    if re.fullmatch(r"i.86", arch) or arch == "athlon":
        return "i386"
    if arch == "ia32e":
        return "x86_64"
    if arch == "ppc64le":
        return "ppc64le"
    for prefix in ("ppc64", "sparc64", "sparc", "alpha"):
        if arch.startswith(prefix):
            return prefix
    if re.fullmatch(r"arm.*h.*", arch):
        return "armhfp"
    if arch.startswith("arm"):
        return "arm"
    return arch


def _is_debuginfo(name: str) -> bool:
    """koji.is_debuginfo: debuginfo and debugsource RPMs stay out of repos by default."""
    return name.endswith("-debuginfo") or name.endswith("-debugsource") or "-debuginfo-" in name


def _bool_text(value: bool | None) -> str:
    return "true" if value else "false"


def generate_comps(groups: Mapping[str, Sequence[str]]) -> str:
    """comps.xml as the hub writes groups/comps.xml (koji.generate_comps, expand_groups=True).

    Each group maps to its package names, all ``type="mandatory"`` (koji's default). The other
    fields take the values ``koji grplist-add``/``add-group-pkg`` leave: display name = name,
    no description (which Koji renders as the text ``None``), default false, uservisible true.
    """
    parts = [
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">\n'
        "\n"
        "<!-- Auto-generated by the build system -->\n"
        "<comps>\n"
    ]
    for name in sorted(groups):
        parts.append(
            "  <group>\n"
            f"    <id>{escape(name)}</id>\n"
            f"    <name>{escape(name)}</name>\n"
            "    <description>None</description>\n"
            f"    <default>{_bool_text(False)}</default>\n"
            f"    <uservisible>{_bool_text(True)}</uservisible>\n"
            "    <packagelist>\n"
        )
        for package in sorted(groups[name]):
            parts.append(f'      <packagereq type="mandatory">{escape(package)}</packagereq>\n')
        parts.append("    </packagelist>\n  </group>\n")
    parts.append("</comps>\n")
    return "".join(parts)


def createrepo_command(
    arch_dir: Path, outdir: Path, *, createrepo_c: str = "createrepo_c"
) -> list[str]:
    """The createrepo_c command kojid's CreaterepoTask.create_local_repo runs for a repo arch.

    Paths in pkglist are relative to the positional directory (the arch dir), so
    ``toplink/packages/...`` resolves through the toplink symlink; output goes to outdir, from
    which the hub later moves repodata/ into the arch dir. An empty pkglist means an empty repo:
    no ``-i`` and the outdir itself is scanned. (No ``--update``: no old repo is reused.)
    """
    pkglist = arch_dir / "pkglist"
    comps = arch_dir.parent / "groups" / "comps.xml"
    cmd = [createrepo_c, "--error-exit-val", "-vd", "-o", str(outdir)]
    has_packages = pkglist.is_file() and pkglist.stat().st_size > 0
    if has_packages:
        cmd += ["-i", str(pkglist)]
    if comps.is_file():
        cmd += ["-g", str(comps)]
    cmd.append(str(arch_dir if has_packages else outdir))
    return cmd


@dataclass(frozen=True)
class KojiRpm:
    """One RPM stored in the topdir, with the rpminfo the hub keeps for it."""

    path: Path
    relpath: str  # relative to the topdir: packages/<n>/<v>/<r>/<arch>/<file>
    info: Mapping[str, object]  # hub rpminfo, in readTaggedRPMS' field order

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def arch(self) -> str:
        return str(self.info["arch"])

    @property
    def nvra(self) -> str:
        info = self.info
        return f"{info['name']}-{info['version']}-{info['release']}.{info['arch']}"


@dataclass(frozen=True)
class KojiBuild:
    """A build imported into the topdir (its SRPM and binary RPMs under packages/)."""

    id: int
    name: str
    version: str
    release: str
    epoch: int | None
    dir: Path
    rpms: tuple[KojiRpm, ...]

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version}-{self.release}"


@dataclass(frozen=True)
class KojiRepo:
    """A repo written by KojiTopdir.make_repo, one arch of it."""

    tag: str
    repo_id: int
    arch: str
    repo_dir: Path
    arch_dir: Path
    toplink: Path
    pkglist: Path
    rpmlist: Path
    blocklist: Path
    comps: Path
    repo_json: Path
    repodata: Path | None
    #: Absolute paths of the RPMs in pkglist order (resolved through toplink).
    packages: tuple[Path, ...]
    #: The rpmlist.jsonl entries (hub rpminfo: size is the file size), pkglist order.
    rpms: tuple[Mapping[str, object], ...]

    @property
    def baseurl(self) -> str:
        """file:// URL of the arch dir on this host, as genMockConfig builds it from topdir."""
        return self.arch_dir.as_uri()

    def baseurl_at(self, topdir: str) -> str:
        """The baseurl when the topdir is mounted at ``topdir`` (e.g. /mnt/koji) in a container."""
        return f"file://{topdir.rstrip('/')}/repos/{self.tag}/{self.repo_id}/{self.arch}"

    @property
    def nvras(self) -> tuple[str, ...]:
        return tuple(f"{r['name']}-{r['version']}-{r['release']}.{r['arch']}" for r in self.rpms)


@dataclass
class KojiTopdir:
    """Builds a Koji topdir on disk: imported builds under packages/, repos under repos/.

    Ids (build, rpm, tag, event) are assigned in sequence, the way a fresh hub would. Nothing
    is read back from disk: one KojiTopdir object describes one topdir.
    """

    root: Path
    _builds: list[KojiBuild] = field(default_factory=list, init=False, repr=False)
    _tag_ids: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _next_rpm_id: int = field(default=1000, init=False, repr=False)
    _next_event_id: int = field(default=5000, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # A topdir is world-readable (builders and buildroot users read it); a mkdtemp root is not.
        self.root.chmod(0o755)
        for sub in ("packages", "repos", "work"):
            (self.root / sub).mkdir(exist_ok=True)

    @property
    def builds(self) -> tuple[KojiBuild, ...]:
        return tuple(self._builds)

    def add_build(self, rpms: Iterable[PathLike]) -> KojiBuild:
        """Import one build: copy its RPMs to packages/<name>/<version>/<release>/<arch>/.

        The build's NVR is its SRPM's (the srpm itself or the binaries' SOURCERPM header), as
        Koji names builds; every RPM given must belong to that SRPM.
        """
        paths = [Path(p).resolve() for p in rpms]
        if not paths:
            raise ValueError("add_build needs at least one RPM")
        headers = [(path, rpm_header(path, *DEFAULT_HEADER_TAGS)) for path in paths]
        name, version, release, epoch = self._build_nvre(headers)
        if any(
            b.name == name and b.version == version and b.release == release for b in self._builds
        ):
            raise ValueError(f"build {name}-{version}-{release} already exists")
        build_id = 100 + len(self._builds)
        build_dir = self.root / "packages" / name / version / release
        stored: list[KojiRpm] = []
        for path, header in headers:
            stored.append(self._store_rpm(path, header, build_dir, build_id))
        build = KojiBuild(
            id=build_id,
            name=name,
            version=version,
            release=release,
            epoch=epoch,
            dir=build_dir,
            rpms=tuple(stored),
        )
        self._builds.append(build)
        return build

    @staticmethod
    def _build_nvre(
        headers: Sequence[tuple[Path, Mapping[str, HeaderValue]]],
    ) -> tuple[str, str, str, int | None]:
        """The build's name, version, release and epoch, checking all RPMs agree on the SRPM."""
        srpm_names = set()
        for _path, header in headers:
            if header["arch"] == "src":
                srpm_names.add(f"{header['name']}-{header['version']}-{header['release']}.src.rpm")
            else:
                srpm_names.add(str(header["sourcerpm"]))
        if len(srpm_names) != 1:
            raise ValueError(f"RPMs of one build must share one SRPM, got {sorted(srpm_names)}")
        (srpm_name,) = srpm_names
        match = re.fullmatch(r"(.+)-([^-]+)-([^-]+)\.(?:no)?src\.rpm", srpm_name)
        if match is None:
            raise ValueError(f"cannot parse SRPM name {srpm_name!r}")
        epochs = {header["epoch"] for _path, header in headers}
        epoch = epochs.pop() if len(epochs) == 1 else None
        return (
            match.group(1),
            match.group(2),
            match.group(3),
            epoch if isinstance(epoch, int) else None,
        )

    def _store_rpm(
        self, path: Path, header: Mapping[str, HeaderValue], build_dir: Path, build_id: int
    ) -> KojiRpm:
        arch = str(header["arch"])
        filename = f"{header['name']}-{header['version']}-{header['release']}.{arch}.rpm"
        target = build_dir / arch / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path, target)
        rpm_id = self._next_rpm_id
        self._next_rpm_id += 1
        # Field order of kojihub.readTaggedRPMS, which repo_init dumps into rpmlist.jsonl.
        info = {
            "name": header["name"],
            "version": header["version"],
            "release": header["release"],
            "arch": arch,
            "id": rpm_id,
            "epoch": header["epoch"],
            "draft": False,
            "payloadhash": header["payloadhash"],
            "size": target.stat().st_size,  # import_rpm stores the file size
            "buildtime": header["buildtime"],
            "buildroot_id": None,
            "build_id": build_id,
            "metadata_only": False,
            "extra": None,
        }
        return KojiRpm(path=target, relpath=target.relative_to(self.root).as_posix(), info=info)

    def tag_id(self, tag: str) -> int:
        """A stable id for a tag name, assigned on first use."""
        return self._tag_ids.setdefault(tag, len(self._tag_ids) + 1)

    def _select_builds(
        self, packages: Iterable[str | KojiBuild] | None, blocked: Sequence[str]
    ) -> list[KojiBuild]:
        """The builds a tag would list: the latest build of each package, minus blocked ones."""
        latest: dict[str, KojiBuild] = {}
        for build in self._builds:
            latest[build.name] = build  # later imports win, like a later tagging
        if packages is None:
            chosen = list(latest.values())
        else:
            chosen = []
            for item in packages:
                if isinstance(item, KojiBuild):
                    chosen.append(item)
                elif item in latest:
                    chosen.append(latest[item])
                else:
                    raise KeyError(f"no build of package {item!r} in {self.root}")
        return [build for build in chosen if build.name not in blocked]

    def make_repo(
        self,
        tag: str,
        repo_id: int,
        arch: str,
        *,
        packages: Iterable[str | KojiBuild] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        blocked: Sequence[str] = (),
        src: bool = False,
        debuginfo: bool = False,
        with_repodata: bool = True,
        task_id: int | None = None,
    ) -> KojiRepo:
        """Write repos/<tag>/<repo_id>/ as the hub's repo_init does, for one arch.

        packages: package names (latest build of each) or KojiBuild objects; default all.
        groups: Koji groups for comps.xml (default DEFAULT_GROUPS). blocked: package names
        written to blocklist and left out of the repo. src/debuginfo: the repo options.
        with_repodata: also run createrepo_c as kojid's createrepo task does and finish the
        repo as repoDone does (repodata/ in the arch dir, the tag's ``latest`` symlink);
        without it the repo is left as a createrepo task finds it (state INIT).
        """
        arch = canon_arch(arch)
        if arch in ("src", "noarch"):
            raise ValueError(f"repo arch must be a build arch, not {arch}")
        repo_dir = self.root / "repos" / tag / str(repo_id)
        repo_dir.mkdir(parents=True)  # like repo_init: must not exist yet
        comps = repo_dir / "groups" / "comps.xml"
        comps.parent.mkdir()
        comps.write_text(
            generate_comps(DEFAULT_GROUPS if groups is None else groups), encoding="utf-8"
        )
        repo_json = self._write_repo_json(
            repo_dir, tag, repo_id, task_id, src=src, debuginfo=debuginfo
        )

        arch_dir = repo_dir / arch
        arch_dir.mkdir()
        toplink = arch_dir / "toplink"
        os.symlink(os.path.relpath(self.root, arch_dir), toplink)
        selected = [
            rpm
            for build in self._select_builds(packages, blocked)
            for rpm in build.rpms
            if self._in_repo(rpm, arch, src=src, debuginfo=debuginfo)
        ]
        selected.sort(key=lambda rpm: rpm.relpath)
        pkglist = arch_dir / "pkglist"
        pkglist.write_text(
            "".join(f"toplink/{rpm.relpath}\n" for rpm in selected), encoding="utf-8"
        )
        rpmlist = arch_dir / "rpmlist.jsonl"
        rpmlist.write_text(
            "".join(json.dumps(dict(rpm.info)) + "\n" for rpm in selected), encoding="utf-8"
        )
        blocklist = arch_dir / "blocklist"
        blocklist.write_text("".join(f"{name}\n" for name in blocked), encoding="utf-8")

        repodata = None
        if with_repodata:
            repodata = run_createrepo(arch_dir)
            latest = repo_dir.parent / "latest"
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            os.symlink(str(repo_id), latest)
        return KojiRepo(
            tag=tag,
            repo_id=repo_id,
            arch=arch,
            repo_dir=repo_dir,
            arch_dir=arch_dir,
            toplink=toplink,
            pkglist=pkglist,
            rpmlist=rpmlist,
            blocklist=blocklist,
            comps=comps,
            repo_json=repo_json,
            repodata=repodata,
            packages=tuple(rpm.path for rpm in selected),
            rpms=tuple(rpm.info for rpm in selected),
        )

    @staticmethod
    def _in_repo(rpm: KojiRpm, arch: str, *, src: bool, debuginfo: bool) -> bool:
        """repo_init's per-arch filter: noarch everywhere, src only with src, no debuginfo."""
        if not debuginfo and _is_debuginfo(rpm.name):
            return False
        if rpm.arch == "src":
            return src
        return rpm.arch == "noarch" or canon_arch(rpm.arch) == arch

    def _write_repo_json(
        self,
        repo_dir: Path,
        tag: str,
        repo_id: int,
        task_id: int | None,
        *,
        src: bool,
        debuginfo: bool,
    ) -> Path:
        event_id = self._next_event_id
        self._next_event_id += 1
        opts = {"src": src, "debuginfo": debuginfo, "separate_src": False, "maven": False}
        info = {
            "id": repo_id,
            "tag": tag,
            "tag_id": self.tag_id(tag),
            "task_id": task_id,
            "event_id": event_id,
            "opts": opts,
            "custom_opts": {},
            "with_src": src,
            "with_separate_src": False,
            "with_debuginfo": debuginfo,
        }
        path = repo_dir / "repo.json"
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
        return path


def link_or_copy(source: Path, target: Path) -> None:
    """Store a package: a hard link where possible (the dev distribution is ~180 MB), else a
    copy. Packages are never written after they are stored, so sharing the inode is safe; a
    package already at ``target`` (a build stored again) is unlinked first, never written."""
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    target.chmod(0o644)


def run_createrepo(arch_dir: Path) -> Path:
    """Make repodata for a repo arch dir like kojid + hub do; return <arch_dir>/repodata.

    kojid runs createrepo_c into a task work dir (writing EMPTY_REPO for an empty pkglist), and
    the hub's repoDone moves the files into <arch_dir>/repodata.
    """
    ensure_rpm_tools("createrepo_c")
    repodata = arch_dir / "repodata"
    with tempfile.TemporaryDirectory(prefix="kojitopdir-createrepo-") as workdir:
        outdir = Path(workdir) / "repo"
        outdir.mkdir()
        cmd = createrepo_command(
            arch_dir, outdir, createrepo_c=shutil.which("createrepo_c") or "createrepo_c"
        )
        _run(cmd)
        if "-i" not in cmd:
            (outdir / "repodata" / "EMPTY_REPO").write_text(
                "This repo is empty because its tag has no content for this arch\n",
                encoding="utf-8",
            )
        repodata.mkdir(exist_ok=True)
        for produced in sorted((outdir / "repodata").iterdir()):
            shutil.move(str(produced), str(repodata / produced.name))
    return repodata


# -- git repositories for builds from SCM -------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "koji-adjutant tests",
        "GIT_AUTHOR_EMAIL": "tests@example.org",
        "GIT_COMMITTER_NAME": "koji-adjutant tests",
        "GIT_COMMITTER_EMAIL": "tests@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def make_git_repo(base: Path, name: str, files: Mapping[str, str]) -> str:
    """A bare repository ``base/<name>.git`` with one commit of ``files`` (``get-sources``
    executable); returns the commit's hash."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    _git(work, "init", "-q")
    for rel, text in files.items():
        (work / rel).write_text(text)
        if rel == "get-sources":
            (work / rel).chmod(0o755)
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "import")
    commit = _git(work, "rev-parse", "HEAD")
    _git(base, "clone", "-q", "--bare", str(work), f"{name}.git")
    shutil.rmtree(work)
    return commit


def scm_hello_files() -> dict[str, str]:
    """adj-scmhello's repository: the spec, and ``get-sources`` (its source_cmd, which
    writes greeting.txt and fails without a network)."""
    return {
        "adj-scmhello.spec": spec_path("adj-scmhello").read_text(),
        "get-sources": (SPECS_DIR / "adj-scmhello-get-sources").read_text(),
    }


class GitDaemon:
    """``git daemon`` on 127.0.0.1 (a free port) serving ``base``'s repositories, while in
    its ``with`` block; ``url`` is ``git://127.0.0.1:<port>``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"git://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GitDaemon:
        self._process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)
            self._process = None
