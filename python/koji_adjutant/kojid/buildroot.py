"""The hub's record of a container buildroot, kept exactly as kojid's BuildRoot keeps it.

kojid's ``BuildRoot`` does two jobs: it drives mock, and it keeps the hub's buildroot record.
The container adapter replaces the first; this module is the second, making the same calls in
the same order and the same states as ``BuildRoot._new``/``init``/``build``:

1. ``repoInfo(repo_id, strict=True)`` (the repo must be READY; EXPIRED is tolerated)
2. ``getBuildConfig(tag, event=<repo create event>)`` (must be the repo's tag)
3. ``host.newBuildRoot(repo_id, <canonical arch>, task_id=...)`` -> the buildroot id, INIT
4. once the buildroot is installed: ``host.setBuildRootList(id, rpms)`` (in INIT), then
   ``host.setBuildRootState(id, 'BUILDING')``
5. after the build, failed or not: ``host.updateBuildRootList(id, rpms)``
6. ``host.setBuildRootState(id, 'EXPIRED')``

The RPM lists go through kojid's own ``markExternalRPMs`` and ``mapInternalRPMs`` (inherited
from kojid's BuildRoot when the glue runs in kojid, else from ``compat.BuildRootBase``), so
the hub resolves every entry exactly as it resolves mock's: internal RPMs by id from the repo's
``rpmlist.jsonl``, external ones by their origin. RPMs the adapter already recorded against an
external repo (the task image's own, with ``image_external_repo``) skip the origin lookup,
which would not find them in the Koji repo.

What the class does *not* inherit from kojid's BuildRoot: writing a mock config (there is
none; so no ``mock_config.log`` either), and the directories under kojid's ``mockdir``: the
buildroot's result and temporary files live in the task's work dir, which kojid removes when
the task ends, so kojid's mockdir scan never sees a container buildroot.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import koji

__all__ = ["ContainerBuildRootMixin"]


class ContainerBuildRootMixin:
    """Put before kojid's ``BuildRoot`` (or ``compat.BuildRootBase``) in the bases."""

    def __init__(
        self,
        session: koji.ClientSession,
        options: Any,
        tag: Any,
        arch: str,
        task_id: int,
        *,
        repo_id: int,
        workdir: str,
    ) -> None:
        # kojid's BuildRoot.__init__ would dispatch to _new, which writes a mock config:
        # set up the same attributes here instead.
        self.logger = logging.getLogger("koji.build.buildroot")
        self.session = session
        self.options = options
        self.logs: set[str] = set()
        self.task_id = task_id
        self.workdir = workdir
        if not repo_id:
            raise koji.BuildrootError("A repo id must be provided")
        self.repo_info: dict[str, Any] = session.repoInfo(repo_id, strict=True)
        self.repoid: int = self.repo_info["id"]
        self.event_id: int = self.repo_info["create_event"]
        self.config: dict[str, Any] = session.getBuildConfig(tag, event=self.event_id)
        if not self.config:
            raise koji.BuildrootError(f"Could not get config info for tag: {tag}")
        self.tag_id: int = self.config["id"]
        self.tag_name: str = self.config["name"]
        if self.config["id"] != self.repo_info["tag_id"]:
            raise koji.BuildrootError(
                f"tag/repo mismatch: {self.config['name']} vs {self.repo_info['tag_name']}"
            )
        state = koji.REPO_STATES[self.repo_info["state"]]
        if state == "EXPIRED":
            # still intact, only not current (which may be what the build asked for)
            self.logger.info("Requested repo (%i) is no longer current", repo_id)
        elif state != "READY":
            raise koji.BuildrootError(f"Requested repo ({repo_id}) is {state}")
        self.br_arch: str = koji.canonArch(arch)
        self.target_arch = "armv7hl" if arch == "armhfp" else arch
        brootid = session.host.newBuildRoot(self.repoid, self.br_arch, task_id=task_id)
        if brootid is None:
            raise koji.BuildrootError("failed to get a buildroot id")
        self.id: int = brootid
        self.name = f"{self.tag_name}-{self.id}-{self.repoid}"
        self.listed = False

    # -- where files live: the task's work dir instead of kojid's mockdir ----------------------

    def resultdir(self) -> str:
        return os.path.join(self.workdir, "result")

    def rootdir(self) -> str:
        return os.path.join(self.workdir, "root")

    def tmpdir(self, within: bool = False) -> str:
        """Scratch space for kojid's markExternalRPMs (librepo's download dir)."""
        path = os.path.join(self.workdir, "tmp")
        koji.ensuredir(path)
        return path

    # -- the hub record ---------------------------------------------------------------------

    def package_list(self, packages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The adapter's buildroot RPMs as kojid's ``getPackageList`` returns them, marked as
        kojid marks them: external RPMs of the tag's repos by their origin
        (``markExternalRPMs``), internal ones by id (``mapInternalRPMs``). In image mode the
        adapter marks the image's own RPMs with the ``image_external_repo`` name; they get
        that external repo as ``external_repo`` and its id as ``location``, which is what the
        hub's ``setBuildRootList`` needs to record (or add) them as that repo's RPMs."""
        rpms = [dict(p) for p in packages]
        from_image = [r for r in rpms if r.get("external_repo")]
        from_repos = [r for r in rpms if not r.get("external_repo")]
        if from_image:
            self.mark_image_rpms(from_image)
        self.markExternalRPMs(from_repos)  # type: ignore[attr-defined]
        self.mapInternalRPMs(rpms)  # type: ignore[attr-defined]
        return rpms

    def mark_image_rpms(self, rpms: Sequence[dict[str, Any]]) -> None:
        """Record the image's own RPMs against the external repo the adapter named."""
        names = {str(r["external_repo"].get("external_repo_name")) for r in rpms}
        for name in sorted(names):
            # image_external_repo may name the repo or give its id
            info = self.session.getExternalRepo(int(name) if name.isdigit() else name, strict=True)
            erepo = {
                "external_repo_id": info["id"],
                "external_repo_name": info["name"],
                "url": info.get("url"),
            }
            for rpm in rpms:
                if str(rpm["external_repo"].get("external_repo_name")) == name:
                    rpm["external_repo"] = erepo
                    rpm["location"] = info["id"]
        self.logger.info(
            "%d buildroot RPMs come from the task image (external repos %s)",
            len(rpms),
            ", ".join(sorted(names)),
        )

    def set_initial_list(self, packages: Sequence[Mapping[str, Any]]) -> None:
        """``BuildRoot.init``'s last step, then ``build``'s first: list in INIT, then BUILDING."""
        self.session.host.setBuildRootList(self.id, self.package_list(packages))
        self.listed = True
        self.session.host.setBuildRootState(self.id, "BUILDING")

    def update_list(self, packages: Sequence[Mapping[str, Any]]) -> None:
        """``BuildRoot.build``'s step after the build (kojid makes it also when it failed)."""
        self.session.host.updateBuildRootList(self.id, self.package_list(packages))

    def expire(self) -> None:
        self.session.host.setBuildRootState(self.id, "EXPIRED")

    # kojid's BuildRoot.init/build run mock; a container buildroot is driven by the adapter
    def init(self) -> None:  # pragma: no cover - guard against kojid code calling it
        raise NotImplementedError("a container buildroot is initialised by the adapter")

    def build(self, srpm: str, arch: str | None = None) -> None:  # pragma: no cover
        raise NotImplementedError("a container buildroot is built by the adapter")
