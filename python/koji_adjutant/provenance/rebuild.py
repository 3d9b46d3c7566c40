"""Recreating a buildroot from its lockfile (``koji-adjutant rebuild-root``).

1. Every package the lockfile lists is fetched by its ``url`` (the Koji repo's copy; another
   base URL or directory can stand in for the repo's) into a staging directory this process
   creates, and its header must have the locked name, epoch, version, release, arch and
   SIGMD5 before anything is installed. The SHA-256 of each file is reported.
2. A container of the image that made the root (by the lockfile's image ID when present,
   else its reference, which must then have that ID) runs ``dnf --installroot`` of exactly
   those files, with no repository at all, into a fresh host directory mounted at ``/br``:
   the same package manager, options and releasever as the build's bootstrap container.
3. A second container reads the new root's rpmdb (``rpm --root /br -qa``) and prints it; the
   host reads only that output, never a file of the new root (everything the packages'
   scriptlets wrote there is as hostile as a build's, docs/security.md).
4. The report compares the installed packages (name, epoch, version, release, arch, SIGMD5)
   with the lockfile and gives each one's header SHA-256 from the rpmdb.

What the lockfile does not hold is not recreated: the build user and mock's directories,
which the build made after installing the packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from koji_adjutant import labels

__all__ = [
    "InstalledPackage",
    "RebuildError",
    "RebuildReport",
    "load_lock",
    "rebuild_root",
]

ROOT = "/br"
PKGS = "/pkgs"
QUERY_FORMAT = (
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SIGMD5}\\t%{SHA256HEADER}\\n"
)
_TAIL = 16384


class RebuildError(Exception):
    """The buildroot cannot be recreated; the message says why."""


@dataclass(frozen=True)
class InstalledPackage:
    """One package of a root's rpmdb."""

    name: str
    epoch: str | None
    version: str
    release: str
    arch: str
    sigmd5: str
    sha256header: str

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        return (self.name, self.epoch or "", self.version, self.release, self.arch, self.sigmd5)

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"


@dataclass
class RebuildReport:
    root: Path
    image: str
    image_id: str
    #: The new root's rpmdb, sorted by NEVRA.
    installed: list[InstalledPackage]
    #: SHA-256 of each package file installed, by NEVRA.
    file_sha256: dict[str, str]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.missing and not self.unexpected

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "image": self.image,
            "image_id": self.image_id,
            "identical": self.identical,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "notes": self.notes,
            "installed": [
                {
                    "nevra": p.nevra,
                    "sigmd5": p.sigmd5,
                    "sha256header": p.sha256header,
                    "file_sha256": self.file_sha256.get(p.nevra),
                }
                for p in self.installed
            ],
        }


def load_lock(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A lockfile, checked for what rebuilding needs."""
    try:
        with open(path, encoding="utf-8") as handle:
            lock = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RebuildError(f"cannot read the lockfile {path}: {exc}") from None
    try:
        rpms = lock["buildroot"]["rpms"]
        version = lock["version"]
    except (KeyError, TypeError):
        raise RebuildError(f"{path} is not a buildroot lockfile (buildroot.rpms)") from None
    if not str(version).startswith("1."):
        raise RebuildError(f"{path}: lockfile version {version}, this reads 1.x")
    unlocated = [_nevra(p) for p in rpms if not p.get("url")]
    if unlocated:
        raise RebuildError(
            f"{path}: {len(unlocated)} packages have no URL (not from the Koji repo):"
            f" {', '.join(unlocated[:10])}"
        )
    return lock  # type: ignore[no-any-return]


def _nevra(item: Mapping[str, Any]) -> str:
    epoch = f"{item['epoch']}:" if item.get("epoch") else ""
    return f"{item['name']}-{epoch}{item['version']}-{item['release']}.{item['arch']}"


def _locked_key(item: Mapping[str, Any]) -> tuple[str, str, str, str, str, str]:
    return (
        str(item["name"]),
        "" if item.get("epoch") in (None, "") else str(item["epoch"]),
        str(item["version"]),
        str(item["release"]),
        str(item["arch"]),
        str(item["sigmd5"]).lower(),
    )


def _ours(lock: Mapping[str, Any]) -> Mapping[str, Any]:
    config = lock.get("config") or {}
    return config.get("koji_adjutant") or {}


def _source_url(url: str, lock: Mapping[str, Any], repo: str | None) -> str:
    """``url``, or the same path under ``repo`` when the caller names another copy."""
    if not repo:
        return url
    base = str((_ours(lock).get("koji_repo") or {}).get("url") or "").rstrip("/")
    if not base or not url.startswith(base + "/"):
        raise RebuildError(f"{url} is not under the lockfile's repo URL {base!r}")
    rel = url[len(base) + 1 :]
    if "://" not in repo:
        repo = Path(repo).resolve().as_uri()
    return f"{repo.rstrip('/')}/{rel}"


def _open_source(url: str) -> IO[bytes]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return open(urllib.parse.unquote(parsed.path), "rb")
    if parsed.scheme in ("http", "https"):
        return urllib.request.urlopen(url, timeout=300)  # type: ignore[no-any-return]
    raise RebuildError(f"cannot fetch {url}: only file://, http:// and https:// URLs")


def _fetch(url: str, dest: Path) -> str:
    """Copy ``url`` to ``dest`` (created new); its SHA-256."""
    digest = hashlib.sha256()
    try:
        with _open_source(url) as source:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
    except OSError as exc:  # urllib's errors are OSErrors
        raise RebuildError(f"cannot fetch {url}: {exc}") from None
    return digest.hexdigest()


def _header_key(path: Path) -> tuple[str, str, str, str, str, str]:
    import koji

    try:
        fields = koji.get_header_fields(
            str(path), ["name", "epoch", "version", "release", "arch", "sigmd5"]
        )
    except Exception as exc:  # koji.GenericError, rpm.error
        raise RebuildError(f"{path.name} is not a readable RPM: {exc}") from None
    sigmd5 = fields["sigmd5"]
    if isinstance(sigmd5, bytes):
        sigmd5 = sigmd5.hex()
    return (
        str(fields["name"]),
        "" if fields["epoch"] is None else str(fields["epoch"]),
        str(fields["version"]),
        str(fields["release"]),
        str(fields["arch"]),
        str(sigmd5).lower(),
    )


def stage_packages(
    lock: Mapping[str, Any], staging: Path, repo: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """Fetch every locked package into ``staging``, each checked by its header against the
    lock; (file names, SHA-256 by NEVRA)."""
    names: list[str] = []
    sha256: dict[str, str] = {}
    for item in lock["buildroot"]["rpms"]:
        url = _source_url(str(item["url"]), lock, repo)
        name = os.path.basename(urllib.parse.urlparse(url).path)
        if not name.endswith(".rpm") or name in names or "/" in name or name.startswith("."):
            raise RebuildError(f"unusable package file name in {url}")
        path = staging / name
        digest = _fetch(url, path)
        found = _header_key(path)
        if found != _locked_key(item):
            raise RebuildError(
                f"{url} is not the locked package {_nevra(item)} (SIGMD5 {item['sigmd5']}):"
                f" its header says {found}"
            )
        names.append(name)
        sha256[_nevra(item)] = digest
    return names, sha256


class _Collect:
    """A LogSink keeping stdout whole and the tail of both streams, forwarding to ``inner``."""

    def __init__(self, inner: Any = None, keep_stdout: bool = False) -> None:
        self.inner = inner
        self.keep_stdout = keep_stdout
        self.stdout = bytearray()
        self.tail = bytearray()

    def _tail(self, data: bytes) -> None:
        self.tail += data
        del self.tail[:-_TAIL]

    def write_stdout(self, data: bytes) -> None:
        if self.keep_stdout:
            self.stdout += data
        self._tail(data)
        if self.inner is not None:
            self.inner.write_stdout(data)

    def write_stderr(self, data: bytes) -> None:
        self._tail(data)
        if self.inner is not None:
            self.inner.write_stderr(data)


def _choose_image(
    manager: Any, lock: Mapping[str, Any], image: str | None, pull_policy: str
) -> tuple[str, str, list[str]]:
    """(image to run, its ID, notes): the lockfile's image by ID when this host has it, else
    its reference, which must then have the locked ID; ``image`` overrides both."""
    ours = _ours(lock)
    locked_id = str(
        (lock.get("bootstrap") or {}).get("id") or (ours.get("image") or {}).get("id") or ""
    )
    reference = str(
        (lock.get("config") or {}).get("bootstrap_image")
        or (ours.get("image") or {}).get("reference")
        or ""
    )
    notes: list[str] = []
    if image:
        image_id = manager.ensure_image_available(image, pull_policy=pull_policy).removeprefix(
            "sha256:"
        )
        if locked_id and image_id != locked_id:
            notes.append(
                f"image {image} is {image_id}, the lockfile's root was made by {locked_id}"
            )
        return image, image_id, notes
    if locked_id:
        try:
            manager.inspect_image(locked_id)
            return locked_id, locked_id, notes
        except Exception:  # ImageError: not on this host, try the reference
            pass
    if not reference:
        raise RebuildError("the lockfile names no image; pass one (--image)")
    image_id = manager.ensure_image_available(reference, pull_policy=pull_policy).removeprefix(
        "sha256:"
    )
    if locked_id and image_id != locked_id:
        raise RebuildError(
            f"{reference} is image {image_id} here, the lockfile's root was made by"
            f" {locked_id}; pull that image or name one (--image)"
        )
    return reference, image_id, notes


def _parse_query(text: str) -> list[InstalledPackage]:
    installed = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 7:
            raise RebuildError(f"unexpected rpm output line {line[:200]!r}")
        name, epoch, version, release, arch, sigmd5, sha256header = parts
        if name == "gpg-pubkey":
            continue
        installed.append(
            InstalledPackage(
                name,
                None if epoch == "(none)" else epoch,
                version,
                release,
                arch,
                sigmd5.lower(),
                sha256header.lower(),
            )
        )
    return sorted(installed, key=lambda p: p.nevra)


def _new_root(dest: Path) -> Path:
    if dest.is_symlink():
        raise RebuildError(f"{dest} is a symlink")
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise RebuildError(f"{dest} exists and is not an empty directory")
    else:
        dest.mkdir(parents=True)
    dest.chmod(0o755)
    return dest.resolve()


def query_root(
    manager: Any, image: str, root: Path, *, timeout: int | None = 600
) -> list[InstalledPackage]:
    """The rpmdb of the root at ``root`` (a host dir), read by ``image``'s rpm in a container
    with no capabilities; only its output is read."""
    from koji_adjutant import ContainerSpec, VolumeMount

    sink = _Collect(keep_stdout=True)
    spec = ContainerSpec(
        image,
        ["rpm", "--root", ROOT, "-qa", "--qf", QUERY_FORMAT],
        user="0:0",
        mounts=[VolumeMount(root, ROOT, read_only=False)],
        labels={labels.ROLE: "rebuild-root-query"},
        timeout=timeout,
    )
    result = manager.run(spec, sink)
    if result.exit_code != 0:
        raise RebuildError(
            f"rpm -qa in the new root exited {result.exit_code}:\n"
            f"{sink.tail.decode(errors='replace')}"
        )
    return _parse_query(sink.stdout.decode("utf-8", errors="replace"))


def rebuild_root(
    manager: Any,
    lock: Mapping[str, Any],
    dest: str | os.PathLike[str],
    *,
    image: str | None = None,
    repo: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    pull_policy: str = "if-not-present",
    sink: Any = None,
    timeout: int | None = 3600,
) -> RebuildReport:
    """Recreate the buildroot of ``lock`` (from :func:`load_lock`) in ``dest`` (a new or empty
    directory) with ``manager`` (a :class:`~koji_adjutant.PodmanManager`); see the module
    doc. ``repo`` is another base URL or directory for the lockfile's Koji repo; ``sink``
    gets dnf's output. Raises :class:`RebuildError`; a root that differs from the lockfile
    is not an error (the report says how)."""
    from koji_adjutant import INSTALL_CAPS, ContainerSpec, VolumeMount

    image_ref, image_id, notes = _choose_image(manager, lock, image, pull_policy)
    root = _new_root(Path(dest))
    staging = Path(tempfile.mkdtemp(prefix="koji-adjutant-rebuild-", dir=workdir))
    try:
        staging.chmod(0o755)
        names, sha256 = stage_packages(lock, staging, repo)
        releasever = str(_ours(lock).get("releasever") or "koji")
        dnf = [
            "dnf",
            f"--installroot={ROOT}",
            "--setopt=reposdir=/var/empty/koji-adjutant-no-repos",
            "--noplugins",
            f"--releasever={releasever}",
            "--setopt=deltarpm=False",
            "--setopt=allow_vendor_change=yes",
            "--allowerasing",
            "--setopt=install_weak_deps=0",
            "--setopt=gpgcheck=0",
            "--setopt=localpkg_gpgcheck=0",
            "--setopt=cachedir=/var/cache/dnf",
            "--assumeyes",
            "install",
            "--",
            *(f"{PKGS}/{name}" for name in sorted(names)),
        ]
        collect = _Collect(sink)
        spec = ContainerSpec(
            image_ref,
            dnf,
            user="0:0",
            mounts=[
                VolumeMount(staging, PKGS, read_only=True),
                VolumeMount(root, ROOT, read_only=False),
            ],
            labels={labels.ROLE: "rebuild-root"},
            timeout=timeout,
            cap_add=list(INSTALL_CAPS),
        )
        result = manager.run(spec, collect)
        if result.exit_code != 0:
            raise RebuildError(
                f"dnf install into {root} exited {result.exit_code}:\n"
                f"{collect.tail.decode(errors='replace')}"
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    installed = query_root(manager, image_ref, root)
    expected = {_locked_key(item): _nevra(item) for item in lock["buildroot"]["rpms"]}
    have = {p.key: p.nevra for p in installed}
    return RebuildReport(
        root=root,
        image=image_ref,
        image_id=image_id,
        installed=installed,
        file_sha256=sha256,
        missing=sorted(nevra for key, nevra in expected.items() if key not in have),
        unexpected=sorted(nevra for key, nevra in have.items() if key not in expected),
        notes=notes,
    )


def compare(a: Sequence[InstalledPackage], b: Sequence[InstalledPackage]) -> bool:
    """Whether two rpmdbs hold the same packages with the same header SHA-256s."""
    return sorted((p.key, p.sha256header) for p in a) == sorted((p.key, p.sha256header) for p in b)
