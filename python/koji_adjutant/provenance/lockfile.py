"""``buildroot_lock.json``: the installed buildroot in mock's buildroot_lock format (1.1.0).

mock's ``buildroot_lock`` plugin writes ``{"version", "buildroot": {"rpms": [...]},
"bootstrap": {...}, "config": {...}}`` after the BuildRequires are installed; its JSON schema
(``mock/docs/buildroot-lock-schema-1.1.0.json``) forbids keys of its own in ``rpms`` items and
in ``bootstrap``, and leaves ``config`` free. So:

* ``buildroot.rpms``: every package of the root as the adapter read it from the root's rpmdb
  after the build (name, epoch, version, release, arch, sigmd5, license, signature) and its
  ``url`` in the Koji repo (:mod:`.kojirepo`), sorted as mock sorts them;
* ``bootstrap``: the bootstrap image's ID, pull digest, architecture and mock's
  ``image_digest`` (tag mode only: in image mode the image is the root, not a bootstrap);
* ``config``: mock's own keys where they mean the same here (``target_arch``,
  ``package_manager``, ``bootstrap_image``, ``bootstrap_image_ready``, ``macros``), and under
  ``koji_adjutant`` what else decided the root: the Koji repo (id, tag, URL, repomd.xml
  digest), the build tag's config, the mode, install group and releasever, the image, each
  package's Koji RPM id, and the packages the repo does not list.

Nothing about the task (id, times, cache hit) is in it: two builds in the same root write the
same bytes, which is what makes the file a lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from koji_adjutant.provenance.facts import BuildFacts, sorted_packages

__all__ = ["LOCK_VERSION", "dump", "jsonable", "make_lock"]

#: The mock schema version the lockfile conforms to.
LOCK_VERSION = "1.1.0"


def jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (XML-RPC DateTime, sets) turned into text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def dump(document: Mapping[str, Any], *, compact: bool = False) -> bytes:
    """The bytes written: mock's layout (indent 4, sorted keys, a final newline), or one line
    with sorted keys (``compact``: the SBOM, whose relationships grow with outputs times
    buildroot packages)."""
    if compact:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    else:
        text = json.dumps(document, indent=4, sort_keys=True)
    return (text + "\n").encode("utf-8")


def make_lock(facts: BuildFacts) -> dict[str, Any]:
    """The lockfile of ``facts``' buildroot (see the module doc)."""
    packages = sorted_packages(facts.packages)
    extra = facts.build_config.get("extra") or {}
    releasever = extra.get("mock.releasever") or "koji"
    repo = facts.repo
    image = facts.image
    ours: dict[str, Any] = {
        "buildroot_mode": facts.buildroot_mode,
        "install_group": facts.install_group,
        "releasever": str(releasever),
        "image": {
            "reference": image.reference,
            "id": image.id,
            "pull_digest": image.pull_digest,
            "source": image.source,
        },
        "koji_repo": {
            "id": repo.id,
            "tag": repo.tag_name,
            "tag_id": repo.tag_id,
            "create_event": repo.create_event,
            "arch": repo.arch,
            "url": repo.url,
            "repomd_sha256": repo.repomd_sha256,
        },
        "build_tag": jsonable(facts.build_config),
        "koji_rpm_ids": {p.nevra: p.koji_rpm_id for p in packages if p.koji_rpm_id is not None},
        "not_in_repo": [p.nevra for p in packages if not p.url],
    }
    config: dict[str, Any] = {
        "target_arch": facts.buildroot_arch,
        "package_manager": "dnf",
        "macros": dict(facts.macros),
        "koji_adjutant": ours,
    }
    lock: dict[str, Any] = {
        "version": LOCK_VERSION,
        "buildroot": {"rpms": [p.lock_item() for p in packages]},
        "config": config,
    }
    if facts.buildroot_mode == "tag":
        config["bootstrap_image"] = image.reference
        config["bootstrap_image_ready"] = True
        bootstrap = image.bootstrap()
        if bootstrap is not None:
            lock["bootstrap"] = bootstrap
    return lock
