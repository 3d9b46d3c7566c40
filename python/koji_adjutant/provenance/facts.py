"""What the three provenance files are made of: plain data the kojid glue gathers per task.

Nothing here talks to the hub or to Podman; the glue (``koji_adjutant.kojid.handlers``) fills
these from what it already knows (the task, the repo, the adapter's result, the image's
inspect data), and tests fill them by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "BuildFacts",
    "ImageFacts",
    "LockedPackage",
    "RepoFacts",
    "RpmFile",
    "file_sha256",
    "oci_image_digest",
    "rfc3339",
]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a host file (never a link: opened with ``O_NOFOLLOW``)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def oci_image_digest(inspect: Mapping[str, Any]) -> str | None:
    """mock's ``bootstrap.image_digest``: SHA-256 of ``{"RootFS", "Config"}`` of podman's image
    inspect data, dumped with sorted keys (``mockbuild.podman.podman_get_oci_digest``)."""
    rootfs = inspect.get("RootFS")
    if not isinstance(rootfs, Mapping) or rootfs.get("Type") != "layers":
        return None
    data = {"RootFS": inspect["RootFS"], "Config": inspect.get("Config")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def rfc3339(moment: datetime) -> str:
    """``2026-11-29T10:11:12Z`` (UTC, whole seconds: what SPDX's ``created`` allows)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RpmFile:
    """A built RPM or SRPM on the host: its header identity and the file's SHA-256."""

    path: Path
    name: str
    epoch: int | None
    version: str
    release: str
    #: ``src`` for a source package.
    arch: str
    license: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def evr(self) -> str:
        epoch = "" if self.epoch is None else f"{self.epoch}:"
        return f"{epoch}{self.version}-{self.release}"

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RpmFile:
        """Reads the header with koji's helpers (rpm's bindings, which kojid always has)."""
        import koji

        fields = koji.get_header_fields(
            os.fspath(path), ["name", "epoch", "version", "release", "arch", "license"], True
        )
        return cls(
            path=Path(path),
            name=str(fields["name"]),
            epoch=None if fields["epoch"] is None else int(fields["epoch"]),
            version=str(fields["version"]),
            release=str(fields["release"]),
            arch=str(fields["arch"]),
            license=str(fields["license"] or ""),
            sha256=file_sha256(path),
        )


@dataclass(frozen=True)
class LockedPackage:
    """One package of the buildroot as the lockfile records it: mock's ``rpms`` item (the
    adapter's ``lock_rpms`` entry plus ``url``) and where in the Koji repo it came from."""

    name: str
    epoch: str | None
    version: str
    release: str
    arch: str
    sigmd5: str
    license: str
    signature: str | None
    #: The package's location as dnf fetched it (repo URL + the pkglist path); ``""`` when
    #: the Koji repo does not list it (an image mode image's own RPMs).
    url: str = ""
    #: Koji's RPM id (from the repo's ``rpmlist.jsonl``), when the repo lists it.
    koji_rpm_id: int | None = None

    @property
    def nevra(self) -> str:
        epoch = "" if self.epoch in (None, "") else f"{self.epoch}:"
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"

    def lock_item(self) -> dict[str, Any]:
        """The ``buildroot.rpms`` item: exactly the keys mock's schema allows."""
        return {
            "arch": self.arch,
            "epoch": self.epoch,
            "license": self.license,
            "name": self.name,
            "release": self.release,
            "sigmd5": self.sigmd5,
            "signature": self.signature,
            "url": self.url,
            "version": self.version,
        }


@dataclass(frozen=True)
class RepoFacts:
    """The Koji repo the buildroot was installed from (one arch of it)."""

    id: int
    tag_name: str
    #: The repo's arch directory: ``x86_64`` etc.
    arch: str
    #: Where users fetch it: kojid's ``topurl`` + ``/repos/<tag>/<id>/<arch>``, or a
    #: ``file://`` URL of the topdir when kojid has no topurl.
    url: str
    tag_id: int | None = None
    create_event: int | None = None
    #: SHA-256 of the repo's ``repodata/repomd.xml`` (what the buildroot cache is keyed by).
    repomd_sha256: str | None = None
    #: Where the build's dnf read it, when that is not ``url`` (a local topdir, or
    #: adjutant.conf's ``buildroot_topurl``).
    used: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    """The image whose dnf installed the root (tag mode: the bootstrap image; image mode: the
    buildroot image itself)."""

    reference: str
    id: str
    #: podman's ``Digest`` (the manifest digest, ``sha256:...``): what ``podman pull`` takes.
    pull_digest: str
    #: mock's ``image_digest`` (see :func:`oci_image_digest`), when podman's data allow it.
    image_digest: str | None = None
    #: OCI architecture (``amd64``), as podman reports it.
    architecture: str | None = None
    #: Which setting chose it (``tag extra mock.bootstrap_image``, ``adjutant.conf
    #: task_image``, ...).
    source: str | None = None

    @classmethod
    def from_inspect(
        cls, reference: str, inspect: Mapping[str, Any], *, source: str | None = None
    ) -> ImageFacts:
        """From ``PodmanManager.inspect_image`` (podman's image inspect data)."""
        return cls(
            reference=reference,
            id=str(inspect.get("Id") or ""),
            pull_digest=str(inspect.get("Digest") or ""),
            image_digest=oci_image_digest(inspect),
            architecture=str(inspect["Architecture"]) if inspect.get("Architecture") else None,
            source=source,
        )

    def bootstrap(self) -> dict[str, str] | None:
        """mock's ``bootstrap`` object, or None when one of its required fields is unknown."""
        if not (self.id and self.pull_digest and self.image_digest and self.architecture):
            return None
        return {
            "architecture": self.architecture,
            "id": self.id,
            "image_digest": self.image_digest,
            "pull_digest": self.pull_digest,
        }


@dataclass(frozen=True)
class BuildFacts:
    """One finished buildArch task: the request, the buildroot, the results, the run."""

    task_id: int
    #: The task's SRPM (the ``pkg`` parameter, relative to the topdir's ``work/``).
    srpm_request: str
    srpm: RpmFile
    #: The task's arch parameter (``noarch`` included).
    arch: str
    buildroot_arch: str
    keep_srpm: bool
    rpms: tuple[RpmFile, ...]
    #: The rebuilt SRPM, when kept.
    srpms: tuple[RpmFile, ...]
    packages: tuple[LockedPackage, ...]
    repo: RepoFacts
    image: ImageFacts
    #: ``getBuildConfig`` of the build tag at the repo's event.
    build_config: Mapping[str, Any]
    buildroot_mode: str
    started: datetime
    finished: datetime
    worker_id: str
    version: str
    method: str = "buildArch"
    install_group: str = "build"
    #: The buildroot macros as kojid's genMockConfig sets them (see :func:`koji_macros`).
    macros: Mapping[str, str] = field(default_factory=dict)
    #: kojid's options that shape the build (vendor, packager, distribution, mockhost, ...).
    kojid_options: Mapping[str, Any] = field(default_factory=dict)
    #: The hub's URL (kojid's ``server``), when known.
    hub: str | None = None
    cache_hit: bool | None = None

    @property
    def outputs(self) -> tuple[RpmFile, ...]:
        """What the task uploads as results: the binary RPMs, then the kept SRPM."""
        return (*self.rpms, *self.srpms)


def koji_macros(
    build_config: Mapping[str, Any],
    *,
    vendor: str,
    packager: str,
    distribution: str,
    mockhost: str,
    target_arch: str,
    buildhost: str | None = None,
) -> dict[str, str]:
    """The buildroot's macros in kojid's genMockConfig precedence (the adapter sets the same):
    kojid's options, the tag's ``rpm.macro.*``, then ``%_topdir``, ``%_host_cpu`` and
    ``%_host``, which neither may override; ``%_buildhost`` unless the tag sets it."""
    macros = {
        "%_rpmfilename": "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        "%vendor": vendor,
        "%packager": packager,
        "%distribution": distribution,
    }
    extra = build_config.get("extra") or {}
    for key, value in sorted(extra.items()):
        if key.startswith("rpm.macro."):
            macros["%" + key[len("rpm.macro.") :]] = str(value)
    macros["%_topdir"] = "/builddir/build"
    macros["%_host_cpu"] = target_arch
    macros["%_host"] = f"{target_arch}-{mockhost}"
    if buildhost:
        macros.setdefault("%_buildhost", buildhost)
    return dict(sorted(macros.items()))


def sorted_packages(packages: Sequence[LockedPackage]) -> list[LockedPackage]:
    """mock's order: by name, then arch (its query sorts lines starting ``name|arch``)."""
    return sorted(packages, key=lambda p: (p.name, p.arch, p.epoch or "", p.version, p.release))
