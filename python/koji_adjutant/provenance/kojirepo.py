"""Where each buildroot package is in the Koji repo: the repo's own ``pkglist`` and
``rpmlist.jsonl``.

The hub's ``repo_init`` writes both files into every arch directory of a repo, line for line
in the same order: ``pkglist`` the package's path relative to the arch dir (through the
``toplink`` symlink: ``toplink/packages/<name>/<version>/<release>/<arch>/<file>``, the
``location href`` createrepo_c then writes into the repodata), ``rpmlist.jsonl`` the hub's
rpminfo of the same RPM (its id and ``payloadhash``, the SIGMD5). So a package's URL is the
repo's URL plus its pkglist line, exactly what dnf fetched (mock's lockfile ``url``), and the
match is by name, epoch, version, release, arch *and* SIGMD5: the repo's copy is the one that
was installed. Plain text and JSON lines, whatever compression the repodata uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from koji_adjutant.provenance.facts import LockedPackage

__all__ = ["RepoListError", "locate_packages"]

#: Opens a file of the repo's arch directory by its relative path (``pkglist``), binary.
Opener = Callable[[str], IO[bytes]]


class RepoListError(Exception):
    """The repo's pkglist or rpmlist.jsonl cannot be read or do not agree."""


def _key(name: Any, epoch: Any, version: Any, release: Any, arch: Any, sigmd5: Any) -> tuple:
    return (
        str(name),
        "" if epoch in (None, "") else str(epoch),
        str(version),
        str(release),
        str(arch),
        str(sigmd5).lower(),
    )


def _read(open_file: Opener, name: str) -> list[str]:
    try:
        with open_file(name) as handle:
            data = handle.read()
    except Exception as exc:  # OSError, requests' errors, koji's
        raise RepoListError(f"cannot read the repo's {name}: {exc}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RepoListError(f"the repo's {name} is not UTF-8: {exc}") from None


def repo_index(open_file: Opener) -> dict[tuple, tuple[str, int | None]]:
    """(name, epoch, version, release, arch, sigmd5) -> (pkglist path, Koji RPM id)."""
    paths = [line for line in _read(open_file, "pkglist") if line.strip()]
    infos = [line for line in _read(open_file, "rpmlist.jsonl") if line.strip()]
    if len(paths) != len(infos):
        raise RepoListError(
            f"the repo's pkglist ({len(paths)} lines) and rpmlist.jsonl ({len(infos)}) differ"
        )
    index: dict[tuple, tuple[str, int | None]] = {}
    for path, line in zip(paths, infos):
        try:
            info = json.loads(line)
            key = _key(
                info["name"],
                info.get("epoch"),
                info["version"],
                info["release"],
                info["arch"],
                info["payloadhash"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepoListError(f"bad rpmlist.jsonl line {line[:200]!r}: {exc}") from None
        rpm_id = info.get("id")
        index[key] = (path.strip(), int(rpm_id) if isinstance(rpm_id, int) else None)
    return index


def locate_packages(
    lock_rpms: Iterable[Mapping[str, Any]], repo_url: str, open_file: Opener
) -> list[LockedPackage]:
    """The adapter's ``lock_rpms`` with each package's URL and Koji RPM id from the repo at
    ``repo_url`` (whose arch dir ``open_file`` reads). A package the repo does not list (an
    image mode image's own RPMs) gets ``url == ""``."""
    index = repo_index(open_file)
    base = repo_url.rstrip("/")
    located = []
    for item in lock_rpms:
        key = _key(
            item["name"],
            item.get("epoch"),
            item["version"],
            item["release"],
            item["arch"],
            item["sigmd5"],
        )
        path, rpm_id = index.get(key, ("", None))
        located.append(
            LockedPackage(
                name=str(item["name"]),
                epoch=None if item.get("epoch") in (None, "") else str(item["epoch"]),
                version=str(item["version"]),
                release=str(item["release"]),
                arch=str(item["arch"]),
                sigmd5=str(item["sigmd5"]),
                license=str(item.get("license") or ""),
                signature=None if item.get("signature") is None else str(item["signature"]),
                url=f"{base}/{path}" if path else "",
                koji_rpm_id=rpm_id,
            )
        )
    return located
