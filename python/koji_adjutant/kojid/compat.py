"""Stand-ins for the kojid pieces the glue builds on, for use where kojid is not loaded.

kojid is a script, not a library: PyPI's koji has ``koji.tasks`` and ``koji.daemon`` but no
``BuildArchTask``, ``CreaterepoTask``, ``BuildRoot`` or ``BuildRootLogs``. Inside kojid the
glue subclasses kojid's own classes and inherits their behaviour (task weights, host checks,
SRPM sanity checks, the external/internal RPM mapping of buildroot lists). Everywhere else
(CI, a test harness, a kojid too old to have a method) these classes supply the same
behaviour, written from kojid 1.35.3's documented semantics:

* :class:`BuildArchTaskBase`: ``Methods = ['buildArch']``, weight 1.5 raised by the package's
  average build duration (+0.75 per hour, capped at +18), ``checkHost`` on the tag's arches,
  and ``srpm_sanity_checks`` (packager, vendor, distribution must be set).
* :class:`CreaterepoTaskBase`: ``Methods = ['createrepo']``, weight 1.5.
* :class:`BuildRootBase`: the upload path, incremental/single log uploads, expiry, and the
  two passes kojid's ``getPackageList`` applies to a buildroot's RPM list:
  ``markExternalRPMs`` (an RPM whose ``pkgorigins`` origin is an external repo's URL is
  recorded against that repo) and ``mapInternalRPMs`` (an internal RPM gets its Koji id from
  the repo's ``rpmlist.jsonl``, and must have the same payload hash).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from typing import IO, Any, ClassVar

import koji
import koji.tasks
import requests
from koji.daemon import incremental_upload

__all__ = [
    "BaseBuildTaskBase",
    "BuildArchTaskBase",
    "BuildRootBase",
    "BuildSRPMFromSCMTaskBase",
    "CreaterepoTaskBase",
    "RebuildSRPMBase",
]

_REPO_NS = "{http://linux.duke.edu/metadata/repo}"
_NVRA = "%(name)s-%(version)s-%(release)s.%(arch)s"


class BaseBuildTaskBase(koji.tasks.BaseTaskHandler):
    """kojid's BaseBuildTask: the host check on the tag's arches."""

    def checkHostArch(self, tag: Any, hostdata: dict[str, Any], event: int | None = None) -> bool:
        ref = (tag.get("id") or tag.get("name")) if isinstance(tag, dict) else tag
        kwargs = {} if event is None else {"event": event}
        config = self.session.getBuildConfig(ref, **kwargs)
        if config and config["arches"]:
            tag_arches = {koji.canonArch(a) for a in config["arches"].split()}
            if not tag_arches.intersection(hostdata["arches"].split()):
                self.logger.info(
                    "Task %s (%s): tag arches and host arches are disjoint", self.id, self.method
                )
                return False
        return True

    def checkHost(self, hostdata: dict[str, Any]) -> bool:
        return self.checkHostArch(self.params[1], hostdata)


class RebuildSRPMBase(BaseBuildTaskBase):
    """kojid's RebuildSRPM minus its handler."""

    Methods: ClassVar[list[str]] = ["rebuildSRPM"]
    _taskWeight = 1.0


class BuildSRPMFromSCMTaskBase(BaseBuildTaskBase):
    """kojid's BuildSRPMFromSCMTask minus its handler: the spec checks (no ``Packager``,
    ``Distribution`` or ``Vendor`` set or defined in the spec) and the patch hook."""

    Methods: ClassVar[list[str]] = ["buildSRPMFromSCM"]
    _taskWeight = 1.0

    def spec_sanity_checks(self, filename: str) -> None:
        with open(filename, encoding="utf-8", errors="replace") as handle:
            spec = handle.read()
        for tag in ("Packager", "Distribution", "Vendor"):
            if re.match(f"{tag}:", spec, re.M):
                raise koji.BuildError(f"{tag} is not allowed to be set in spec file")
        for tag in ("packager", "distribution", "vendor"):
            if re.match(rf"%define\s+{tag}\s+", spec, re.M):
                raise koji.BuildError(f"{tag} is not allowed to be defined in spec file")

    def patch_scm_source(self, sourcedir: str, logfile: str, opts: Any) -> None:
        pass


class BuildArchTaskBase(BaseBuildTaskBase):
    """kojid's BuildArchTask minus its handler (see module doc)."""

    Methods: ClassVar[list[str]] = ["buildArch"]

    def weight(self) -> float:
        return 1.5

    def updateWeight(self, name: str) -> None:
        try:
            avg = self.session.getAverageBuildDuration(name, age=6)
        except koji.ParameterError:  # hubs older than 1.23 have no age
            avg = self.session.getAverageBuildDuration(name)
        if not avg:
            return
        if avg < 0:
            self.logger.warning("Negative average build duration for %s: %s", name, avg)
            return
        adjustment = min(18.0, avg / 4800.0)
        self.session.host.setTaskWeight(self.id, self.weight() + adjustment)

    def srpm_sanity_checks(self, filename: str) -> None:
        fields = koji.get_header_fields(filename, ["packager", "vendor", "distribution"])
        for field in ("packager", "vendor", "distribution"):
            if not fields[field]:
                raise koji.BuildError(f"The build system failed to set the {field} tag")


class CreaterepoTaskBase(koji.tasks.BaseTaskHandler):
    """kojid's CreaterepoTask minus its handler."""

    Methods: ClassVar[list[str]] = ["createrepo"]
    _taskWeight = 1.5


class BuildRootBase:
    """The parts of kojid's BuildRoot that do not run mock (see module doc).

    Expects the attributes kojid's ``BuildRoot._new`` sets: ``session``, ``options``,
    ``logger``, ``logs``, ``task_id``, ``repo_info``, ``repoid``, ``tag_name``, ``br_arch``.
    """

    session: koji.ClientSession
    options: Any
    logger: logging.Logger
    logs: set[str]
    task_id: int
    repo_info: dict[str, Any]
    repoid: int
    tag_name: str
    br_arch: str

    def get_repo_dir(self) -> str:
        return koji.PathInfo(topdir="").repo(self.repoid, self.tag_name)

    def getUploadPath(self) -> str:
        return koji.pathinfo.taskrelpath(self.task_id)

    def incremental_log(self, fname: str, fd: IO[bytes]) -> None:
        incremental_upload(self.session, fname, fd, self.getUploadPath(), logger=self.logger)
        self.logs.add(fname)

    def single_log(self, localfile: str, name: str | None = None) -> None:
        name = name or os.path.basename(localfile)
        self.session.uploadWrapper(localfile, self.getUploadPath(), name=name)
        self.logs.add(name)

    def expire(self) -> None:
        self.session.host.setBuildRootState(self.id, "EXPIRED")  # type: ignore[attr-defined]

    def _open_repo_file(self, name: str) -> IO[bytes]:
        # get_repo_dir() starts with '/'; kojid sends topurl + '//repos/...', which a web
        # server's slash merging forgives; send the plain path
        relpath = os.path.join(self.get_repo_dir(), self.br_arch, name).lstrip("/")
        return koji.openRemoteFile(  # type: ignore[no-any-return]
            relpath,
            topurl=self.options.topurl,
            topdir=self.options.topdir,
            tempdir=self.options.workdir,
        )

    def _origins(self) -> dict[str, str]:
        """NVRA -> origin URL, from the repo's pkgorigins (named in repomd.xml)."""
        with self._open_repo_file("repodata/repomd.xml") as fo:
            root = ET.parse(fo).getroot()
        href = None
        for data in root.iter(_REPO_NS + "data"):
            if data.get("type") == "origin":
                location = data.find(_REPO_NS + "location")
                href = None if location is None else location.get("href")
        if not href:
            raise koji.BuildError(f"No origin data in the repodata of {self.get_repo_dir()}")
        index: dict[str, str] = {}
        with self._open_repo_file(href) as fo, gzip.GzipFile(fileobj=fo, mode="rb") as gz:
            for line in io.TextIOWrapper(gz, encoding="utf-8"):
                parts = line.split(None, 2)
                if len(parts) < 2:
                    continue
                index[_NVRA % koji.parse_NVRA(parts[0])] = parts[1]
        return index

    def markExternalRPMs(self, rpmlist: list[dict[str, Any]]) -> None:
        external_repos = self.session.getExternalRepoList(
            self.repo_info["tag_id"], event=self.repo_info["create_event"]
        )
        if not external_repos:
            return
        by_url = {e["url"].replace("$arch", self.br_arch): e for e in external_repos}
        origins = self._origins()
        # the repo's own packages were merged from the createrepo task's premerge repo
        local_tail = f"/repo_{self.repo_info['id']}_premerge/"
        for info in rpmlist:
            key = _NVRA % info
            url = origins.get(key)
            if not url:
                raise koji.BuildError(f"No origin for {key}")
            erepo = by_url.get(url)
            if erepo is None:
                if url.startswith("file://") and url.endswith(local_tail):
                    continue
                raise koji.BuildError(f"Unknown origin for {key}: {url}")
            info["external_repo"] = erepo
            info["location"] = erepo["external_repo_id"]

    def repo_draft_rpms(self) -> list[dict[str, Any]]:
        rpms, _builds = self.session.listTaggedRPMS(
            tag=self.repo_info["tag_id"],
            event=self.repo_info["create_event"],
            latest=True,
            draft=True,
        )
        return rpms  # type: ignore[no-any-return]

    def mapInternalRPMs(self, rpmlist: list[dict[str, Any]]) -> None:
        compat_mode = False
        try:
            with self._open_repo_file("rpmlist.jsonl") as fo:
                repo_rpms = [json.loads(line) for line in fo]
        except requests.exceptions.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 404:
                raise
            self.logger.warning("Missing repo content file: rpmlist.jsonl")
            repo_rpms = self.repo_draft_rpms()
            compat_mode = True
        by_nvra = {_NVRA % r: r for r in repo_rpms}
        for info in rpmlist:
            if "external_repo" in info:
                continue
            nvra = _NVRA % info
            data = by_nvra.get(nvra)
            if not data:
                if not compat_mode:
                    self.logger.warning("%s not found in rpmlist.jsonl", nvra)
                continue
            if data["payloadhash"] != info["payloadhash"]:
                raise koji.BuildrootError(
                    f"RPM: {nvra}: payloadhash: {info['payloadhash']} mismatch expected"
                    f" {data['payloadhash']} in rpmlist.jsonl"
                )
            info["id"] = data["id"]
