"""The dev distribution: the task image's own files as RPMs, for buildroots installed from empty.

Under mock's bootstrap model a buildroot starts empty and every package in it is installed from
the Koji tag's repo with ``dnf --installroot``. No RPM distribution is reachable from the
development and CI machines, so the project makes its own out of the Debian-based task image
(``localhost/koji-adjutant-task:dev``): ``sample/devdistro.spec`` packages a container's root
filesystem by role (``devdistro-setup``, ``-base``, ``-rpm``, ``-toolchain``, ``-utils``,
``-perl``, ``-python3``, ``-dnf``, ``-extras``) and :func:`ensure_dev_distro` runs that
rpmbuild in a container of the image, through :class:`~koji_adjutant.PodmanManager`.

The result is cached per image ID (and spec) and reused, like the image itself::

    distro = ensure_dev_distro(PodmanManager(), "localhost/koji-adjutant-task:dev")
    # put distro.rpms in the tag's repo, distro.groups in its comps.xml

The ``build`` group (setup, base, rpm, toolchain, utils) installs a root that runs rpmbuild,
gcc, g++ and make; ``srpm-build`` is the same without the toolchain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from koji_adjutant import AdjutantError, ContainerSpec, PodmanManager, VolumeMount

if TYPE_CHECKING:
    from koji_adjutant._core import LogSink

SPEC: Path = Path(__file__).resolve().parent / "sample" / "devdistro.spec"
"""The spec built in the task image; ships in the wheel."""

BUILD_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "build": (
            "devdistro-setup",
            "devdistro-base",
            "devdistro-rpm",
            "devdistro-toolchain",
            "devdistro-utils",
        ),
        "srpm-build": ("devdistro-setup", "devdistro-base", "devdistro-rpm", "devdistro-utils"),
    }
)
"""The comps groups a Koji tag using the dev distribution lists (package names)."""

DEFAULT_CACHE_DIR = Path("/var/cache/koji-adjutant/devdistro")
CACHE_DIR_ENV = "KOJI_ADJUTANT_DEVDISTRO_DIR"
MANIFEST = "devdistro.json"

# Mount points inside the build container: under /tmp, which the spec never packages.
_SRC = "/tmp/devdistro/src"
_OUT = "/tmp/devdistro/out"
# The build copies files with their owners and set-id bits into rpmbuild's buildroot as root:
# chown needs CAP_CHOWN and keeping setgid on root:shadow files needs CAP_FSETID. The project's
# containers start with an empty capability set; nothing else is added.
_CAPS = ("CHOWN", "FSETID")
_TAIL_BYTES = 8192


class DevDistroError(AdjutantError):
    """Building the dev distribution failed; the message ends with the build's last output."""


@dataclass(frozen=True)
class DevDistro:
    """A built dev distribution: the RPMs of one task image, in their cache directory."""

    image_id: str
    """ID of the image whose files the RPMs hold."""
    directory: Path
    """The cache directory holding the RPMs and ``devdistro.json``."""
    srpm: Path
    rpms: tuple[Path, ...]
    """The binary RPMs, sorted by file name."""
    groups: Mapping[str, tuple[str, ...]]
    """Package names of the ``build`` and ``srpm-build`` comps groups."""
    build_seconds: float
    """How long building the distribution took (when it was built, not when it was reused)."""

    def rpm(self, name: str) -> Path:
        """The binary RPM of package ``name`` (``devdistro-base``, ...)."""
        for path in self.rpms:
            if path.name.rsplit("-", 2)[0] == name:
                return path
        raise KeyError(name)


def default_cache_dir() -> Path:
    """``$KOJI_ADJUTANT_DEVDISTRO_DIR``, else ``/var/cache/koji-adjutant/devdistro``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def ensure_dev_distro(
    manager: PodmanManager,
    image: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sink: LogSink | None = None,
    pull_policy: str = "if-not-present",
    timeout: int | None = 1800,
) -> DevDistro:
    """The dev distribution of ``image``: reused from ``cache_dir`` or built now.

    Building runs ``rpmbuild -ba`` of :data:`SPEC` as root in a container of ``image``
    (no network, capabilities ``CHOWN`` and ``FSETID`` only), streaming its output to
    ``sink``. The result goes to ``<cache_dir>/<image id>-<spec digest>/``: written to a
    temporary directory next to it and renamed into place when complete, so a concurrent
    caller never sees part of it; callers on one machine also wait for each other (a lock
    file) instead of building twice. Files are world-readable.

    Raises :class:`DevDistroError` when the build fails, :class:`~koji_adjutant.ImageError`
    when the image is missing.
    """
    image_id = manager.ensure_image_available(image, pull_policy=pull_policy)
    image_id = image_id.removeprefix("sha256:")
    spec_digest = hashlib.sha256(SPEC.read_bytes()).hexdigest()
    key = f"{image_id}-{spec_digest[:16]}"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key

    found = _load(final)
    if found is not None:
        return found
    with _locked(root / f".{key}.lock"):
        found = _load(final)  # built by the caller that held the lock
        if found is not None:
            return found
        # Left by a build that died holding the lock, or damaged since: never in use now.
        for stale in [*root.glob(f".{key}.tmp*"), *([final] if final.exists() else [])]:
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.tmp", dir=root))
        try:
            _build(manager, image, image_id, spec_digest, work, sink, timeout)
            try:
                work.rename(final)
            except OSError:  # another machine sharing the directory won the race
                if _load(final) is None:
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    distro = _load(final)
    if distro is None:
        raise DevDistroError(f"{final} has no complete dev distribution after building it")
    return distro


def _build(
    manager: PodmanManager,
    image: str,
    image_id: str,
    spec_digest: str,
    work: Path,
    sink: LogSink | None,
    timeout: int | None,
) -> None:
    """rpmbuild in the image, into ``work``; then checks the output and writes the manifest."""
    work.chmod(0o755)
    command = [
        "rpmbuild",
        "-ba",
        "--nodeps",
        "--noclean",  # the container's /tmp goes away with it
        *("--define", "_topdir /tmp/rpmbuild"),
        *("--define", f"_sourcedir {_SRC}"),
        *("--define", f"_srcrpmdir {_OUT}"),
        *("--define", f"_rpmdir {_OUT}"),
        *("--define", f"image_id {image_id[:12]}"),
        f"{_SRC}/{SPEC.name}",
    ]
    spec = ContainerSpec(
        image,
        command,
        user="0:0",
        mounts=[
            VolumeMount(SPEC.parent, _SRC, read_only=True),
            VolumeMount(work, _OUT, read_only=False),
        ],
        labels={"io.koji.adjutant.devdistro": image_id[:12]},
        timeout=timeout,
        cap_add=list(_CAPS),
    )
    tail = _TailSink(sink)
    started = time.monotonic()
    result = manager.run(spec, tail)
    seconds = round(time.monotonic() - started, 1)
    if result.exit_code != 0:
        raise DevDistroError(
            f"building the dev distribution of {image} failed (rpmbuild exit {result.exit_code}):"
            f"\n{tail.text()}"
        )
    srpms = sorted(p.name for p in work.glob("*.src.rpm"))
    rpms = sorted(p.name for p in work.glob("*.rpm") if not p.name.endswith(".src.rpm"))
    names = {n.rsplit("-", 2)[0] for n in rpms}
    missing = sorted({p for group in BUILD_GROUPS.values() for p in group} - names)
    if len(srpms) != 1 or missing:
        raise DevDistroError(
            f"rpmbuild of {SPEC.name} made {srpms + rpms}; missing: {missing or 'one SRPM'}"
        )
    manifest = {
        "image": image,
        "image_id": image_id,
        "spec_sha256": spec_digest,
        "srpm": srpms[0],
        "rpms": rpms,
        "groups": {name: list(pkgs) for name, pkgs in BUILD_GROUPS.items()},
        "build_seconds": seconds,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for path in work.iterdir():
        path.chmod(0o755 if path.is_dir() else 0o644)


def _load(directory: Path) -> DevDistro | None:
    """The distribution in ``directory``, or None if there is none (the manifest comes last)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    rpms = tuple(directory / name for name in manifest["rpms"])
    srpm = directory / manifest["srpm"]
    if not srpm.is_file() or not all(p.is_file() for p in rpms):
        return None
    return DevDistro(
        image_id=manifest["image_id"],
        directory=directory,
        srpm=srpm,
        rpms=rpms,
        groups=BUILD_GROUPS,
        build_seconds=float(manifest["build_seconds"]),
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``, released when the block ends or the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _TailSink:
    """Forwards output to ``inner`` and keeps its last bytes for an error message."""

    def __init__(self, inner: LogSink | None) -> None:
        self.inner = inner
        self.tail = bytearray()

    def _keep(self, data: bytes) -> None:
        self.tail += data
        del self.tail[:-_TAIL_BYTES]

    def write_stdout(self, data: bytes) -> None:
        self._keep(data)
        if self.inner is not None:
            self.inner.write_stdout(data)

    def write_stderr(self, data: bytes) -> None:
        self._keep(data)
        if self.inner is not None:
            self.inner.write_stderr(data)

    def text(self) -> str:
        return self.tail.decode(errors="replace")


__all__ = [
    "BUILD_GROUPS",
    "CACHE_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "SPEC",
    "DevDistro",
    "DevDistroError",
    "default_cache_dir",
    "ensure_dev_distro",
]
