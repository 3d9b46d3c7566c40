"""Provenance of every buildArch: a buildroot lockfile, an SBOM and a signed attestation.

Three files, written by the kojid glue into the task's result dir (which no container ever
mounts) after a successful build, uploaded next to build.log and listed in the result's
``logs``:

* ``buildroot_lock.json`` (:mod:`.lockfile`): the installed buildroot in the format of mock's
  ``buildroot_lock`` plugin (schema 1.1.0), with each package's URL in the Koji repo;
* ``sbom.spdx.json`` (:mod:`.sbom`): SPDX 2.3, the SRPM, the outputs with their SHA-256, the
  buildroot packages and their relationships;
* ``provenance.intoto.json`` (:mod:`.attestation`): an in-toto statement with a SLSA
  provenance v1 predicate in a DSSE envelope, signed when adjutant.conf names a key.

:func:`write_files` writes them from :class:`BuildFacts`; :mod:`.verify` checks an RPM against
them (``koji-adjutant verify``) and :mod:`.rebuild` recreates a buildroot from a lockfile
(``koji-adjutant rebuild-root``). docs/provenance.md explains each file with an example.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from koji_adjutant.provenance.attestation import envelope, make_statement
from koji_adjutant.provenance.facts import (
    BuildFacts,
    ImageFacts,
    LockedPackage,
    RepoFacts,
    RpmFile,
    koji_macros,
)
from koji_adjutant.provenance.kojirepo import Opener, RepoListError, locate_packages
from koji_adjutant.provenance.lockfile import dump, make_lock
from koji_adjutant.provenance.sbom import make_sbom

__all__ = [
    "FILE_NAMES",
    "LOCK_NAME",
    "PROVENANCE_NAME",
    "SBOM_NAME",
    "BuildFacts",
    "ImageFacts",
    "LockedPackage",
    "RepoFacts",
    "RepoListError",
    "RpmFile",
    "facts_from_result",
    "koji_macros",
    "locate_packages",
    "write_files",
]

LOCK_NAME = "buildroot_lock.json"
SBOM_NAME = "sbom.spdx.json"
PROVENANCE_NAME = "provenance.intoto.json"
#: In the order they are written (each later one refers to the earlier ones by digest).
FILE_NAMES = (LOCK_NAME, SBOM_NAME, PROVENANCE_NAME)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never through a link, never over an existing file), world-readable
    like the task's other results."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o644)  # whatever the umask


def write_files(
    facts: BuildFacts, out_dir: str | os.PathLike[str], *, signer: Any = None
) -> list[Path]:
    """Write the lockfile, the SBOM and the (signed, with ``signer``) provenance into
    ``out_dir``; returns their paths in :data:`FILE_NAMES` order."""
    out = Path(out_dir)
    lock_path, sbom_path, prov_path = (out / name for name in FILE_NAMES)
    _write_new(lock_path, dump(make_lock(facts)))
    _write_new(sbom_path, dump(make_sbom(facts), compact=True))
    statement = make_statement(facts, {LOCK_NAME: lock_path, SBOM_NAME: sbom_path})
    _write_new(prov_path, dump(envelope(statement, signer)))
    return [lock_path, sbom_path, prov_path]


def facts_from_result(
    result: Any,
    *,
    task_id: int,
    srpm_request: str,
    srpm: str | os.PathLike[str],
    arch: str,
    keep_srpm: bool,
    repo: RepoFacts,
    open_repo_file: Opener,
    image: ImageFacts,
    build_config: Mapping[str, Any],
    buildroot_mode: str,
    started: datetime,
    finished: datetime,
    worker_id: str,
    kojid_options: Mapping[str, Any],
    buildhost: str | None = None,
    hub: str | None = None,
    version: str | None = None,
) -> BuildFacts:
    """:class:`BuildFacts` of a :class:`~koji_adjutant.BuildArchResult`: reads the SRPM's and
    the outputs' headers and digests, and finds each buildroot package in the Koji repo
    (``open_repo_file`` opens a file of the repo's arch dir). ``kojid_options`` holds
    kojid's ``vendor``, ``packager``, ``distribution`` and ``mockhost``."""
    if version is None:
        from koji_adjutant import __version__ as version
    packages = locate_packages(result.lock_rpms, repo.url, open_repo_file)
    return BuildFacts(
        task_id=task_id,
        srpm_request=srpm_request,
        srpm=RpmFile.read(srpm),
        arch=arch,
        buildroot_arch=result.buildroot_arch,
        keep_srpm=keep_srpm,
        rpms=tuple(RpmFile.read(p) for p in sorted(result.rpms, key=os.path.basename)),
        srpms=tuple(RpmFile.read(p) for p in result.srpms) if keep_srpm else (),
        packages=tuple(packages),
        repo=repo,
        image=image,
        build_config=build_config,
        buildroot_mode=buildroot_mode,
        started=started,
        finished=finished,
        worker_id=worker_id,
        version=str(version),
        macros=koji_macros(
            build_config,
            vendor=str(kojid_options.get("vendor") or "Koji"),
            packager=str(kojid_options.get("packager") or "Koji"),
            distribution=str(kojid_options.get("distribution") or "Koji"),
            mockhost=str(kojid_options.get("mockhost") or "koji-linux-gnu"),
            target_arch=result.buildroot_arch,
            buildhost=buildhost,
        ),
        kojid_options=dict(kojid_options),
        hub=hub,
        cache_hit=getattr(result, "cache_hit", None),
    )
