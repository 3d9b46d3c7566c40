"""kojid's buildArch and createrepo task handlers, running their work in containers.

:func:`make_handlers` builds two classes from the kojid classes it is given: a subclass of
kojid's own ``BuildArchTask`` and one of its ``CreaterepoTask``, with the same ``Methods``, so
that kojid (which registers plugin handlers after its own) dispatches those methods to them.
Everything kojid does around the tool run is kojid's own code, inherited: the task weight and
``updateWeight``, ``checkHost``, ``find_arch``, ``localPath``, ``uploadFile``,
``run_callbacks`` (``postCreateRepo``), ``srpm_sanity_checks``, the work dir handling of
``BaseTaskHandler.run``, and, in the buildroot record, ``markExternalRPMs``/``mapInternalRPMs``
and kojid's ``BuildRootLogs``. The handlers themselves follow kojid 1.35.3's handler bodies step
by step (the comments name the steps of the hub conversation documented in
``tests/hubfake/server.py``) and replace only what ran mock or createrepo_c on the host.

Where the hub traffic differs from kojid's, on purpose:

* buildArch uploads no ``mock_config.log`` (there is no mock config): ``buildroot_config.log``
  says what the buildroot is made of instead; its other logs are mock's (``build.log``,
  ``root.log``, ``hw_info.log``, ``installed_pkgs.log``, dnf's) and the adapter's
  ``state.log`` and ``container.log``.
* buildArch asks the image whether it can build the task (``BuildArchAdapter.check``) before
  ``host.newBuildRoot``, and refuses the task when not (an arch the image cannot build, a tag
  asking for dnf5, ``mock.forcearch`` or mock's sign plugin), so the hub offers it to another
  builder.
* buildArch picks the concrete arch of a noarch task deterministically (the task's arch, else
  the builder's own) where kojid picks at random: an image builds only its own arch family.
* createrepo asks for ``getBuildConfig`` of the repo's tag first (to choose the image from the
  tag's inherited extra), and asks for ``getExternalRepoList`` before running createrepo_c
  rather than after (one container run does createrepo and mergerepo). Both are reads.

Host problems (invalid ``adjutant.conf``, Podman not answering, no repos dir) refuse the task,
as kojid refuses a createrepo task on a builder without the repos mount, so that a builder
that is set up correctly takes it. Problems of the tag (an invalid ``adjutant.image`` extra) and
of the build fail it, with kojid's messages where kojid has one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, Callable

import koji
import koji.daemon
import koji.tasks
import requests
from koji.tasks import RefuseTask

import koji_adjutant
from koji_adjutant import records
from koji_adjutant.config import AdjutantConfig, ConfigError, load_config
from koji_adjutant.kojid import compat, failed_tree, reaper
from koji_adjutant.kojid.buildroot import ContainerBuildRootMixin
from koji_adjutant.kojid.images import ImageChoice, select_image
from koji_adjutant.kojid.logs import LiveUpload, LogWatcher, TaskLogUploads

__all__ = ["BuildArchMixin", "CreaterepoMixin", "Handlers", "make_handlers"]

logger = logging.getLogger("koji.build.adjutant")

#: Interval of the incremental log uploads, as kojid's mock and log_output loops.
LOG_UPLOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class Handlers:
    """The handler classes made for one kojid."""

    build_arch: type[koji.tasks.BaseTaskHandler]
    createrepo: type[koji.tasks.BaseTaskHandler]
    save_failed_tree: type[koji.tasks.BaseTaskHandler]
    rebuild_srpm: type[koji.tasks.BaseTaskHandler]
    build_srpm_from_scm: type[koji.tasks.BaseTaskHandler]

    def all(self) -> list[type[koji.tasks.BaseTaskHandler]]:
        """Every class made."""
        return [
            self.build_arch,
            self.createrepo,
            self.save_failed_tree,
            self.rebuild_srpm,
            self.build_srpm_from_scm,
        ]


@dataclass
class _Runtime:
    """What a task needs from the builder: its config and a Podman connection."""

    config: AdjutantConfig
    manager: Any  # koji_adjutant.PodmanManager


class AdjutantTaskMixin:
    """Config, Podman connection, orphan reaping and the lease, shared by both handlers."""

    # set on the classes make_handlers builds
    log_upload_interval: float = LOG_UPLOAD_INTERVAL

    id: int
    workdir: str
    options: Any
    session: koji.ClientSession
    logger: logging.Logger

    def adjutant_config(self) -> AdjutantConfig:
        """This builder's ``adjutant.conf``, read for every task (like kojid's runroot plugin),
        so a fixed file applies to the next task without restarting kojid."""
        try:
            return load_config()
        except ConfigError as exc:
            raise RefuseTask(f"koji-adjutant configuration error: {exc}") from None

    def adjutant_runtime(self, config: AdjutantConfig | None = None) -> _Runtime:
        """Config and Podman, checked before the first hub call; then reap and take the lease."""
        if config is None:
            config = self.adjutant_config()
        try:
            manager = koji_adjutant.PodmanManager(
                config.podman_socket, worker_id=config.worker_id, timeout=config.podman_timeout
            )
            manager.ping()
        except koji_adjutant.AdjutantError as exc:
            raise RefuseTask(
                f"koji-adjutant: podman service at {config.podman_socket} does not answer: {exc}"
            ) from None
        try:
            reaper.reap_orphans(
                manager,
                worker_id=config.worker_id,
                workdir_root=self.options.workdir,
                keep=(self.id,),
                state_dir=config.state_dir,
            )
        except koji_adjutant.AdjutantError as exc:
            self.logger.warning("koji-adjutant: reaping orphaned containers failed: %s", exc)
        reaper.write_lease(self.workdir, self.id, config.worker_id)
        return _Runtime(config, manager)

    def adjutant_context(self, config: AdjutantConfig) -> Any:
        return koji_adjutant.TaskContext(
            self.id, self.workdir, worker_id=config.worker_id, log_dir=config.log_dir
        )

    def kojid_handler(self, *args: Any) -> Any:
        """kojid's own handler of this method (mock, host createrepo_c), unchanged: for a
        builder (``enabled = no``) or a tag (``adjutant.enabled`` false) not moved yet."""
        self.adjutant_delegated = True
        for cls in type(self).__mro__[type(self).__mro__.index(AdjutantTaskMixin) + 1 :]:
            if "handler" in vars(cls):
                if cls is koji.tasks.BaseTaskHandler:
                    break
                return vars(cls)["handler"](self, *args)
        raise RefuseTask(
            "koji-adjutant is not enabled for this task and kojid's own handler is not loaded"
        )

    def record_task(
        self, config: AdjutantConfig, method: str, arch: str | None, work: Callable[[], Any]
    ) -> Any:
        """Runs ``work`` (the handler's body) and appends how it ended to the builder's
        records (``koji-adjutant serve`` and ``status`` read them), with what the task's
        containers used; a task handed to kojid's own handler is not recorded."""
        started = time.time()
        self.adjutant_delegated = False
        self.adjutant_usage: dict[str, Any] = {}
        outcome, reason = "failed", None
        try:
            result = work()
            outcome = "ok"
            return result
        except RefuseTask as exc:
            outcome, reason = "refused", str(exc)
            raise
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            raise
        except BaseException as exc:
            # kojid's SIGTERM handler (SystemExit), SIGINT (KeyboardInterrupt)
            reason = f"interrupted ({type(exc).__name__})"
            raise
        finally:
            if not self.adjutant_delegated:
                records.record_finished(
                    config.state_dir,
                    task_id=self.id,
                    method=method,
                    arch=arch,
                    outcome=outcome,
                    started=started,
                    finished=time.time(),
                    reason=reason,
                    **usage_figures(self.adjutant_usage),
                )

    def note_usage(self, usage: dict[str, Any]) -> None:
        """The adapter's ``on_usage``: what the task's containers used, kept for the records
        and written to kojid's log, one line per container."""
        self.adjutant_usage = usage
        for role, used in usage.items():
            if used:
                self.logger.info(
                    "koji-adjutant: %s container of task %s used: peak memory %s bytes,"
                    " %s CPU seconds, %s bytes written",
                    role,
                    self.id,
                    used.get("peak_memory_bytes"),
                    used.get("cpu_seconds"),
                    used.get("bytes_written"),
                )

    def adjutant_limits(self, config: AdjutantConfig) -> Any:
        return koji_adjutant.ResourceLimits(
            memory_bytes=config.memory_limit, cpus=config.cpus, pids=config.pids_limit
        )


def usage_figures(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A task's figures from the adapter's usage (``{"build": {...}, "bootstrap": {...}}``,
    createrepo's ``{"createrepo": {...}}``): the build container's peak memory (where the
    package is built; createrepo: its one container's), the CPU seconds and bytes written of
    all its containers."""
    parts = [part for part in usage.values() if isinstance(part, Mapping)]
    if not parts:
        return {}

    def total(key: str) -> Any:
        values = [part[key] for part in parts if part.get(key) is not None]
        return sum(values) if values else None

    build = usage.get("build") if isinstance(usage.get("build"), Mapping) else parts[0]
    return {
        "peak_memory_bytes": build.get("peak_memory_bytes"),
        "cpu_seconds": total("cpu_seconds"),
        "bytes_written": total("bytes_written"),
    }


def tag_enabled(build_config: Mapping[str, Any]) -> bool:
    """The tag's ``adjutant.enabled`` extra (inherited; absent: enabled)."""
    return tag_flag(build_config, "adjutant.enabled")


def tag_flag(build_config: Mapping[str, Any], key: str) -> bool:
    """A boolean tag extra (inherited; absent: true), parsed as kojid parses boolean extras
    (``True``, ``1``, ``"yes"``...)."""
    value = (build_config.get("extra") or {}).get(key, True)
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


class BuildArchMixin(AdjutantTaskMixin):
    """``buildArch(pkg, root, arch, keep_srpm, opts)`` in a container (see module doc)."""

    buildroot_class: type[Any]
    log_watcher_class: Callable[..., Any]
    params: list[Any]
    #: kojid's BuildRoot.build sends updateBuildRootList after the tool, failed or not
    updates_list_after_build = True

    def choose_noarch_arch(self, arch: str) -> str | None:
        """kojid's preferred arch for a noarch task (the task's), else this builder's own."""
        if arch != "noarch":
            return None
        task = self.session.getTaskInfo(self.id)
        if task["arch"] != "noarch":
            return str(task["arch"])
        return koji.canonArch(os.uname().machine)

    def buildroot_repo(self, config: AdjutantConfig, repo_info: Mapping[str, Any], br_arch: str):
        """The repo the buildroot installs from, per the ``network`` policy: a local arch dir
        (nothing in the container needs a network) or its topurl URL (dnf steps get one).
        Returns (repo, topdir or None)."""
        topdir = self.options.topdir
        local = os.path.join(
            koji.PathInfo(topdir=topdir).repo(repo_info["id"], repo_info["tag_name"]), br_arch
        )
        local_ok = bool(topdir) and os.path.isfile(os.path.join(local, "repodata", "repomd.xml"))
        topurl = config.buildroot_topurl or getattr(self.options, "topurl", None)
        if config.network == "none" or (config.network == "auto" and (local_ok or not topurl)):
            if not local_ok:
                raise RefuseTask(
                    f"koji-adjutant: network = {config.network} needs the repo on the local"
                    f" topdir, but {local}/repodata/repomd.xml is not readable here"
                )
            return local, topdir
        if not topurl:
            raise RefuseTask("koji-adjutant: network = repo needs kojid's topurl")
        url = f"{topurl.rstrip('/')}/repos/{repo_info['tag_name']}/{repo_info['id']}/{br_arch}"
        return url, None

    def repomd_sha256(self, repo_info: Mapping[str, Any], br_arch: str) -> str:
        """SHA-256 of the repo's ``repodata/repomd.xml`` fetched from kojid's ``topurl`` (or
        topdir), as kojid fetches repo files: what the repo holds, for the buildroot cache."""
        relpath = os.path.join(
            koji.PathInfo(topdir="").repo(repo_info["id"], repo_info["tag_name"]).lstrip("/"),
            br_arch,
            "repodata",
            "repomd.xml",
        )
        opts = {k: getattr(self.options, k, None) for k in ("topurl", "topdir")}
        digest = hashlib.sha256()
        try:
            with koji.openRemoteFile(relpath, **opts) as handle:
                for chunk in iter(lambda: handle.read(1 << 16), b""):
                    digest.update(chunk)
        except (OSError, requests.exceptions.RequestException) as exc:
            # as mock's init would fail on an unreachable repo: before any buildroot record
            raise koji.BuildrootError(
                f"cannot read the buildroot repo's {relpath}: {exc}"
            ) from None
        return digest.hexdigest()

    def handler(self, pkg, root, arch, keep_srpm, opts=None):  # type: ignore[no-untyped-def]
        """Build ``work/<pkg>`` for ``arch`` in a container buildroot of tag ``root``."""
        config = self.adjutant_config()
        if not config.enabled:
            return self.kojid_handler(pkg, root, arch, keep_srpm, opts)
        return self.record_task(
            config,
            "buildArch",
            arch,
            lambda: self.build_in_container(config, pkg, root, arch, keep_srpm, opts),
        )

    def build_in_container(self, config, pkg, root, arch, keep_srpm, opts):  # type: ignore[no-untyped-def]
        """kojid's buildArch handler, step by step, with the build in a container."""
        started = datetime.now(timezone.utc)
        runtime = self.adjutant_runtime(config)
        signer = self.provenance_signer(config)
        if opts is None:
            opts = {}
        repo_id = opts.get("repo_id")
        if not repo_id:
            raise koji.BuildError("A repo id must be provided")
        # 1. the repo and its event
        repo_info = self.session.repoInfo(repo_id, strict=True)
        event_id = repo_info["create_event"]
        fn = self.localPath(f"work/{pkg}")  # type: ignore[attr-defined]
        if not os.path.exists(fn):
            raise koji.BuildError(f"SRPM file missing: {fn}")
        try:
            header = koji_adjutant.read_package(fn)
        except koji_adjutant.InvalidSpec as exc:
            raise koji.BuildError(str(exc)) from None
        name = header["name"]
        if not header["sourcepackage"]:
            raise koji.BuildError("not a source package")
        # 2. weight by the package's average build time
        self.updateWeight(name)  # type: ignore[attr-defined]
        # 3.-5. the buildroot arch
        preferred = self.choose_noarch_arch(arch)
        host = self.session.host.getHost()
        build_config = self.session.getBuildConfig(root, event=event_id)
        if not tag_enabled(build_config):
            self.logger.info("koji-adjutant is not enabled for tag %s", build_config["name"])
            return self.kojid_handler(pkg, root, arch, keep_srpm, opts)
        br_arch = self.find_arch(  # type: ignore[attr-defined]
            arch, host, build_config, preferred_arch=preferred
        )
        image = select_image(
            build_config.get("extra"),
            tag_name=build_config["name"],
            method="buildArch",
            arch=koji.canonArch(br_arch),
            default=config.task_image,
            bootstrap=config.buildroot_mode == "tag",
            allowlist=config.image_allowlist,
        )
        repo, topdir = self.buildroot_repo(config, repo_info, koji.canonArch(br_arch))
        repomd_sha256 = None if topdir else self.repomd_sha256(repo_info, koji.canonArch(br_arch))
        self.logger.info(
            "buildArch (%s mode) in image %s (from %s), repo %s",
            config.buildroot_mode,
            image.image,
            image.source,
            repo,
        )
        srpm = self.srpm_in_workdir(fn)
        # (adjutant) can this builder's image build it as the tag asks? if not, another
        # builder takes it, before any buildroot record exists
        adapter = self.build_adapter(runtime, image)
        self.check_task(
            adapter, arch, build_config, koji.canonArch(br_arch) if arch == "noarch" else None
        )
        # 6.-8. the hub's buildroot record
        broot = self.buildroot_class(
            self.session,
            self.options,
            root,
            br_arch,
            self.id,
            repo_id=repo_id,
            workdir=self.workdir,
        )
        result = self.run_build(
            runtime, adapter, broot, srpm, arch, br_arch, keep_srpm, repo, topdir, repomd_sha256
        )
        finished = datetime.now(timezone.utc)
        # 15. the buildroot after the build: sent by on_buildroot_final
        if len(result.unknown_rpms):
            self.logger.warning(
                "%d RPMs of image %s are not in the buildroot list (set image_external_repo)",
                len(result.unknown_rpms),
                image.image,
            )
        # (adjutant) the lockfile, SBOM and provenance, uploaded with the logs
        provenance = self.write_provenance(
            runtime,
            image,
            broot,
            result,
            request=pkg,
            srpm=srpm,
            arch=arch,
            keep_srpm=bool(keep_srpm),
            repo=repo,
            repomd_sha256=repomd_sha256,
            started=started,
            finished=finished,
            signer=signer,
        )
        return self.upload_results(broot, result, keep_srpm, extra_logs=provenance)

    def provenance_signer(self, config: AdjutantConfig) -> Any:
        """The signer of the provenance (``provenance_signing_key``), or None. A key that
        cannot be used is a problem of this builder: the task is refused, before any hub
        call, so that a builder with a working key takes it."""
        if config.provenance_signing_key is None:
            return None
        from koji_adjutant.provenance.attestation import SigningError, load_signer

        try:
            return load_signer(config.provenance_signing_key)
        except SigningError as exc:
            raise RefuseTask(f"koji-adjutant: {exc}") from None

    def write_provenance(  # type: ignore[no-untyped-def]
        self,
        runtime,
        image: ImageChoice,
        broot,
        result,
        *,
        request: str,
        srpm: str,
        arch: str,
        keep_srpm: bool,
        repo: str,
        repomd_sha256: str | None,
        started: datetime,
        finished: datetime,
        signer: Any,
    ) -> list[str]:
        """Write buildroot_lock.json, sbom.spdx.json and provenance.intoto.json into the
        result dir (no container mounts it); returns their paths. Failing to is failing the
        task: every buildArch has them (docs/provenance.md)."""
        from koji_adjutant import provenance as prov

        config = runtime.config
        try:
            repo_info = broot.repo_info
            repo_arch = koji.canonArch(broot.br_arch)
            digest = repomd_sha256 or self.repomd_sha256(repo_info, repo_arch)
            repo_facts = prov.RepoFacts(
                id=int(repo_info["id"]),
                tag_name=str(repo_info["tag_name"]),
                arch=repo_arch,
                url=self.public_repo_url(repo_info, repo_arch),
                tag_id=repo_info.get("tag_id"),
                create_event=repo_info.get("create_event"),
                repomd_sha256=digest,
                used=repo,
            )
            if repo_facts.used == repo_facts.url:
                repo_facts = dataclasses.replace(repo_facts, used=None)
            try:
                inspected = runtime.manager.inspect_image(result.image_id)
                image_facts = prov.ImageFacts.from_inspect(
                    image.image, inspected, source=image.source
                )
            except koji_adjutant.AdjutantError as exc:
                self.logger.warning("cannot inspect image %s: %s", result.image_id, exc)
                image_facts = prov.ImageFacts(
                    image.image, result.image_id, result.image_digest, source=image.source
                )
            options = self.options
            facts = prov.facts_from_result(
                result,
                task_id=self.id,
                srpm_request=request,
                srpm=srpm,
                arch=arch,
                keep_srpm=keep_srpm,
                repo=repo_facts,
                open_repo_file=self.repo_file_opener(repo_info, repo_arch),
                image=image_facts,
                build_config=broot.config,
                buildroot_mode=config.buildroot_mode,
                started=started,
                finished=finished,
                worker_id=config.worker_id,
                kojid_options={
                    name: getattr(options, name, None)
                    for name in (
                        "vendor",
                        "packager",
                        "distribution",
                        "mockhost",
                        "rpmbuild_timeout",
                    )
                },
                buildhost=socket.getfqdn(),
                hub=getattr(options, "server", None),
            )
            paths = prov.write_files(facts, broot.resultdir(), signer=signer)
        except (OSError, ValueError, koji.GenericError, prov.RepoListError) as exc:
            broot.expire()
            raise koji.BuildError(
                f"koji-adjutant: cannot write the build's provenance: {exc}"
            ) from None
        unlocated = [p.nevra for p in facts.packages if not p.url]
        if unlocated:
            self.logger.warning(
                "%d buildroot RPMs are not in repo %s: %s",
                len(unlocated),
                repo_facts.id,
                ", ".join(unlocated[:5]),
            )
        return [os.fspath(p) for p in paths]

    def public_repo_url(self, repo_info: Mapping[str, Any], br_arch: str) -> str:
        """The repo's arch dir as users reach it: kojid's ``topurl``, else a ``file://`` URL
        of the topdir."""
        relpath = koji.PathInfo(topdir="").repo(repo_info["id"], repo_info["tag_name"])
        topurl = (getattr(self.options, "topurl", None) or "").split()
        if topurl:
            return f"{topurl[0].rstrip('/')}{relpath}/{br_arch}"
        return "file://" + os.path.join(self.options.topdir, relpath.lstrip("/"), br_arch)

    def repo_file_opener(
        self, repo_info: Mapping[str, Any], br_arch: str
    ) -> Callable[[str], IO[bytes]]:
        """Opens a file of the repo's arch dir: on the local topdir when this builder sees
        it, else over kojid's ``topurl`` (as kojid fetches repo files)."""
        relpath = os.path.join(
            koji.PathInfo(topdir="").repo(repo_info["id"], repo_info["tag_name"]).lstrip("/"),
            br_arch,
        )
        topdir = getattr(self.options, "topdir", None)
        topurl = getattr(self.options, "topurl", None)

        def open_file(name: str) -> IO[bytes]:
            local = os.path.join(topdir or "", relpath, name)
            if topdir and os.path.isfile(local):
                return open(local, "rb")
            handle: IO[bytes] = koji.openRemoteFile(
                os.path.join(relpath, name), topurl=topurl, topdir=topdir
            )
            return handle

        return open_file

    def srpm_in_workdir(self, fn: str) -> str:
        """The SRPM inside the task's work dir, where the adapter reads it (kojid's localPath
        downloads it there when ``topurl`` is set; from a topdir it is linked or copied)."""
        workdir = os.path.realpath(self.workdir)
        if os.path.realpath(fn).startswith(workdir + os.sep):
            return fn
        dest_dir = os.path.join(self.workdir, "srpm")
        koji.ensuredir(dest_dir)
        dest = os.path.join(dest_dir, os.path.basename(fn))
        try:
            os.link(fn, dest)
        except OSError:
            shutil.copyfile(fn, dest)
        return dest

    def log_patterns(self, config: AdjutantConfig, broot: Any) -> list[str]:
        """The adapter's logs: result/*.log, and container.log where ``log_dir`` keeps it."""
        patterns = [os.path.join(broot.resultdir(), "*.log")]
        if config.log_dir:
            patterns.append(os.path.join(config.log_dir, str(self.id), "container.log"))
        return patterns

    def check_task(
        self, adapter: Any, arch: str, build_config: Mapping[str, Any], buildroot_arch: Any
    ) -> None:
        """Whether the image builds the task as the tag asks (``BuildArchAdapter.check``),
        before any buildroot record: if not, the task is refused for another builder."""
        try:
            adapter.check(arch, build_config=build_config, buildroot_arch=buildroot_arch)
        except koji_adjutant.TaskRefused as exc:
            raise RefuseTask(f"koji-adjutant: {exc}") from None
        except koji_adjutant.AdjutantError as exc:
            raise koji.BuildrootError(f"koji-adjutant: {exc}") from None

    def build_adapter(
        self, runtime: _Runtime, image: ImageChoice, install_group: str = "build"
    ) -> Any:
        """The buildArch adapter for this task, from adjutant.conf and kojid's options."""
        config = runtime.config
        return koji_adjutant.BuildArchAdapter(
            runtime.manager,
            image=image.image,
            install_group=install_group,
            buildroot_mode=config.buildroot_mode,
            pull_policy=config.pull_policy,
            vendor=self.options.vendor,
            packager=self.options.packager,
            distribution=self.options.distribution,
            mockhost=getattr(self.options, "mockhost", "koji-linux-gnu"),
            rpmbuild_timeout=self.options.rpmbuild_timeout,
            buildhost=socket.getfqdn(),
            limits=self.adjutant_limits(config),
            selinux_label=config.selinux_label,
            image_external_repo=config.image_external_repo,
            cache=config.buildroot_cache,
            cache_max_images=config.buildroot_cache_max_entries,
            cache_max_bytes=config.buildroot_cache_max_bytes,
            cache_dir=config.buildroot_cache_dir,
            log_cap_bytes=config.log_cap_bytes,
            userns_base=config.userns_base,
            keep_failed_root=round(config.keep_failed_root * 3600),
            yum_proxy=getattr(self.options, "yum_proxy", None) or None,
            dnf_timeout=config.dnf_timeout,
        )

    def run_build(  # type: ignore[no-untyped-def]
        self,
        runtime,
        adapter,
        broot,
        srpm,
        arch,
        br_arch,
        keep_srpm,
        repo,
        topdir,
        repomd_sha256=None,
    ):
        """10.-15.: the adapter run, with the logs streamed and the buildroot recorded."""
        return self.run_adapter(
            runtime,
            broot,
            lambda ready, final, usage: adapter.run(
                self.adjutant_context(runtime.config),
                srpm,
                arch,
                repo=repo,
                repo_id=broot.repoid,
                tag_name=broot.tag_name,
                build_config=broot.config,
                keep_srpm=bool(keep_srpm),
                topdir=topdir,
                buildroot_arch=koji.canonArch(br_arch) if arch == "noarch" else None,
                repomd_sha256=repomd_sha256,
                on_buildroot_ready=ready,
                on_buildroot_final=final,
                on_usage=usage,
            ),
        )

    def run_adapter(self, runtime: _Runtime, broot: Any, launch: Callable[..., Any]) -> Any:
        """``launch(on_buildroot_ready, on_buildroot_final, on_usage)`` (an adapter run) with
        the logs streamed and the buildroot recorded; a failure as kojid reports it."""
        config = runtime.config
        watcher = self.log_watcher_class(
            broot,
            self.log_patterns(config, broot),
            with_ts=bool(getattr(self.options, "log_timestamps", False)),
        )
        uploads = LiveUpload(
            watcher.sync_logs,
            watcher.close_logs,
            interval=self.log_upload_interval,
            logger=self.logger,
        )
        installed: list[Any] = []
        final_sent: list[bool] = []
        callback_errors: list[BaseException] = []

        def on_buildroot_ready(packages: list[dict[str, Any]]) -> None:
            # 12.-13. list the installed buildroot in INIT, then BUILDING
            try:
                with uploads.session():
                    broot.set_initial_list(packages)
            except BaseException as exc:
                callback_errors.append(exc)
                raise
            installed[:] = packages

        def on_buildroot_final(packages: list[dict[str, Any]]) -> None:
            # 15. the root after the build, failed or not (kojid's updateBuildRootList)
            try:
                with uploads.session():
                    broot.update_list(packages)
            except BaseException as exc:
                callback_errors.append(exc)
                raise
            final_sent.append(True)

        def on_usage(usage: dict[str, Any]) -> None:
            self.note_usage(usage)

        try:
            with uploads:
                return launch(on_buildroot_ready, on_buildroot_final, on_usage)
        except BaseException as exc:
            # an exception of the callback (a hub fault) propagates as it would from kojid's
            # BuildRoot.init; the adapter may wrap it
            cause = callback_errors[0] if callback_errors else None
            if cause is not None and (exc is cause or exc.__cause__ is cause):
                raise cause from None
            if not isinstance(exc, koji_adjutant.AdjutantError):
                raise
            self.adapter_failed(broot, exc, installed if not final_sent else None)
            raise  # not reached: adapter_failed raises

    def adapter_failed(self, broot: Any, exc: BaseException, installed: list[Any] | None) -> None:
        """kojid's bookkeeping after a failed mock run, with the adapter's message (which
        already has kojid's wording and names the log to read). ``installed`` is the list to
        send when the adapter could not send the root's list after the failure."""
        if not broot.listed:
            # init failed: BuildRoot.init expires and raises BuildrootError
            broot.expire()
            raise koji.BuildrootError(str(exc)) from None
        if isinstance(exc, koji_adjutant.TaskRefused):
            broot.expire()
            raise RefuseTask(f"koji-adjutant: {exc}") from None
        if isinstance(exc, koji_adjutant.BuildError):
            # BuildRoot.build: the list is updated even after a failed build (not by
            # rebuild_srpm and build_srpm)
            if installed is not None and self.updates_list_after_build:
                broot.update_list(installed)
            broot.expire()
            raise koji.BuildError(str(exc)) from None
        broot.expire()
        raise koji.BuildrootError(f"koji-adjutant: {exc}") from None

    def upload_results(  # type: ignore[no-untyped-def]
        self, broot, result, keep_srpm, extra_logs: Sequence[str] = ()
    ) -> dict[str, Any]:
        """16.-18.: noarch rpmdiff, the RPMs, the SRPM when kept; the result dict; EXPIRED.
        ``extra_logs`` (the provenance files) are uploaded and listed after the logs. The
        dict is the core's (``koji_adjutant.kojid_build_result``), which also makes kojid's
        checks that exactly one SRPM was built when it is kept."""
        import koji.rpmdiff  # needs rpm's bindings, which kojid always has

        log_files = sorted(broot.logs)
        rpmdiff_hash: dict[int, dict[str, str]] = {self.id: {}}
        for path in map(os.fspath, result.rpms):
            if path.endswith(".noarch.rpm"):
                diff = koji.rpmdiff.Rpmdiff(path, path, ignore="S5TN")
                rpmdiff_hash[self.id][os.path.basename(path)] = diff.kojihash()
        if rpmdiff_hash[self.id]:
            log_name = "noarch_rpmdiff.json"
            noarch_hash_path = os.path.join(broot.workdir, log_name)
            koji.dump_json(noarch_hash_path, rpmdiff_hash, indent=2, sort_keys=True)
            self.uploadFile(noarch_hash_path)  # type: ignore[attr-defined]
            log_files.append(log_name)
        for path in extra_logs:
            self.uploadFile(path)  # type: ignore[attr-defined]
            log_files.append(os.path.basename(path))
        try:
            ret = koji_adjutant.kojid_build_result(
                broot.getUploadPath(),
                self.id,
                rpms=result.rpms,
                srpms=result.srpms,
                logs=log_files,
                brootid=broot.id,
                keep_srpm=bool(keep_srpm),
            )
        except koji_adjutant.BuildError as exc:
            raise koji.BuildError(str(exc)) from None
        for path in result.rpms:
            self.uploadFile(os.fspath(path))  # type: ignore[attr-defined]
        if keep_srpm:
            self.srpm_sanity_checks(os.fspath(result.srpms[0]))  # type: ignore[attr-defined]
            self.uploadFile(os.fspath(result.srpms[0]))  # type: ignore[attr-defined]
        broot.expire()
        return dict(ret)


class CreaterepoMixin(AdjutantTaskMixin):
    """``createrepo(repo_id, arch, oldrepo)`` in a container (see module doc)."""

    log_watcher_class: Callable[..., Any]

    def handler(self, repo_id, arch, oldrepo):  # type: ignore[no-untyped-def]
        """Make the repodata of one arch of repo ``repo_id`` and upload it flat."""
        config = self.adjutant_config()
        if not config.enabled:
            return self.kojid_handler(repo_id, arch, oldrepo)
        return self.record_task(
            config,
            "createrepo",
            arch,
            lambda: self.createrepo_in_container(config, repo_id, arch, oldrepo),
        )

    def createrepo_in_container(self, config, repo_id, arch, oldrepo):  # type: ignore[no-untyped-def]
        """kojid's createrepo handler, step by step, with createrepo_c in a container."""
        runtime = self.adjutant_runtime(config)
        # 1. the repo must still be in INIT
        rinfo = self.session.repoInfo(repo_id, strict=True)
        if rinfo["state"] != koji.REPO_INIT:
            raise koji.GenericError("Repo {id} not in INIT state (got {state})".format(**rinfo))
        self.repo_id = rinfo["id"]
        self.pathinfo = koji.PathInfo(self.options.topdir)
        toprepodir = self.pathinfo.repo(repo_id, rinfo["tag_name"])
        self.repodir = f"{toprepodir}/{arch}"
        if not os.path.isdir(self.repodir):
            top_repos_dir = os.path.join(self.options.topdir, "repos")
            if not os.path.isdir(top_repos_dir):
                raise RefuseTask(f"No access to repos dir {top_repos_dir}")
            raise koji.GenericError(f"Repo directory missing: {self.repodir}")
        groupdata = os.path.join(toprepodir, "groups", "comps.xml")
        pkglist: str | None = os.path.join(self.repodir, "pkglist")
        if os.path.getsize(pkglist) == 0:  # type: ignore[arg-type]
            pkglist = None
        # 2. repodata to recycle
        old_repodata = self.old_repodata(pkglist, oldrepo, arch)
        # (adjutant) the image, from the tag's inherited extra
        build_config = self.session.getBuildConfig(rinfo["tag_id"], event=rinfo["create_event"])
        if not tag_enabled(build_config):
            self.logger.info("koji-adjutant is not enabled for tag %s", build_config["name"])
            return self.kojid_handler(repo_id, arch, oldrepo)
        image = select_image(
            build_config.get("extra"),
            tag_name=build_config["name"],
            method="createrepo",
            arch=koji.canonArch(arch),
            default=config.task_image,
            allowlist=config.image_allowlist,
        )
        self.logger.info("createrepo in image %s (from %s)", image.image, image.source)
        # 4. (asked before the run) the external repos to merge
        external_repos = self.session.getExternalRepoList(
            rinfo["tag_id"], event=rinfo["create_event"]
        )
        # 3.-4. createrepo_c and mergerepo_c, logs streamed
        result = self.run_createrepo(
            runtime, image, groupdata, pkglist, old_repodata, external_repos
        )
        self.datadir = os.fspath(result.repodata_dir)
        self.outdir = os.path.dirname(self.datadir)
        # 5.-6. postCreateRepo callbacks see the output dir, as under kojid
        tag = self.session.getTag(rinfo["tag_id"], event=rinfo["create_event"], strict=True)["name"]
        self.run_callbacks(  # type: ignore[attr-defined]
            "postCreateRepo", tag=tag, repodir=self.outdir, repo_id=self.repo_id, arch=arch
        )
        # 7. every file of repodata, flat (callbacks may have added some)
        uploadpath = self.getUploadDir()  # type: ignore[attr-defined]
        files = []
        for name in os.listdir(self.datadir):
            files.append(name)
            self.session.uploadWrapper(f"{self.datadir}/{name}", uploadpath, name)
        return [uploadpath, files]

    def old_repodata(self, pkglist: str | None, oldrepo: Any, arch: str) -> str | None:
        """kojid's ``--update`` source: the previous repo's repodata, when it exists."""
        if not (pkglist and oldrepo and self.options.createrepo_update):
            return None
        # the old repo may belong to an inherited tag: its own tag names its path
        old = self.session.repoInfo(oldrepo["id"], strict=True)
        olddatadir = f"{self.pathinfo.repo(old['id'], old['tag_name'])}/{arch}/repodata"
        if not os.path.isdir(olddatadir):
            self.logger.warning("old repodata is missing: %s", olddatadir)
            return None
        return olddatadir

    def run_createrepo(self, runtime, image, groupdata, pkglist, old_repodata, external_repos):  # type: ignore[no-untyped-def]
        config = runtime.config
        adapter = koji_adjutant.CreaterepoAdapter(
            runtime.manager,
            image=image.image,
            pull_policy=config.pull_policy,
            createrepo_update=bool(self.options.createrepo_update),
            createrepo_skip_stat=bool(self.options.createrepo_skip_stat),
            limits=self.adjutant_limits(config),
            selinux_label=config.selinux_label,
            log_cap_bytes=config.log_cap_bytes,
            timeout=config.createrepo_timeout,
        )
        sink = TaskLogUploads(self.session, self.getUploadDir(), self.logger)  # type: ignore[attr-defined]
        watcher = self.log_watcher_class(
            sink,
            [
                os.path.join(self.workdir, "createrepo.log"),
                os.path.join(self.workdir, "mergerepos.log"),
                # the adapter's: how each command ended, what the task used
                os.path.join(self.workdir, "state.log"),
            ],
        )
        uploads = LiveUpload(
            watcher.sync_logs,
            watcher.close_logs,
            interval=self.log_upload_interval,
            logger=self.logger,
        )
        try:
            with uploads:
                return adapter.run(
                    self.adjutant_context(config),
                    repo_dir=self.repodir,
                    topdir=self.options.topdir,
                    groups=groupdata if os.path.isfile(groupdata) else None,
                    pkglist=pkglist,
                    old_repodata=old_repodata,
                    external_repos=list(external_repos or ()),
                    on_usage=self.note_usage,
                )
        except koji_adjutant.TaskRefused as exc:
            # "No access to repos dir ...", which kojid refuses too
            raise RefuseTask(str(exc)) from None
        except koji_adjutant.RepoError as exc:
            # the adapter words it as kojid does ("failed to create repo: ...")
            raise koji.GenericError(str(exc)) from None
        except koji_adjutant.AdjutantError as exc:
            raise koji.GenericError(f"koji-adjutant: {exc}") from None


def _lookup(kojid: Any, name: str) -> Any:
    if kojid is None:
        return None
    if isinstance(kojid, Mapping):
        return kojid.get(name)
    return getattr(kojid, name, None)


def _check_base(base: type, method: str) -> None:
    if not (isinstance(base, type) and issubclass(base, koji.tasks.BaseTaskHandler)):
        raise TypeError(f"{base!r} is not a koji task handler class")
    if method not in getattr(base, "Methods", ()):
        raise TypeError(f"{base.__name__} does not handle {method}")


def make_handlers(kojid: Any = None) -> Handlers:
    """The handler classes for a kojid: its module (``import __main__ as kojid`` in a plugin),
    its ``globals()``, or None for the stand-ins of :mod:`koji_adjutant.kojid.compat`."""
    build_arch_base = _lookup(kojid, "BuildArchTask") or compat.BuildArchTaskBase
    createrepo_base = _lookup(kojid, "CreaterepoTask") or compat.CreaterepoTaskBase
    buildroot_base = _lookup(kojid, "BuildRoot") or compat.BuildRootBase
    log_watcher = _lookup(kojid, "BuildRootLogs") or LogWatcher
    _check_base(build_arch_base, "buildArch")
    _check_base(createrepo_base, "createrepo")
    buildroot_class = type(
        "ContainerBuildRoot",
        (ContainerBuildRootMixin, buildroot_base),
        {"__module__": __name__, "__doc__": ContainerBuildRootMixin.__doc__},
    )
    build_arch = type(
        "AdjutantBuildArchTask",
        (BuildArchMixin, build_arch_base),
        {
            "__module__": __name__,
            "__doc__": BuildArchMixin.__doc__,
            "Methods": list(build_arch_base.Methods),
            "buildroot_class": buildroot_class,
            "log_watcher_class": log_watcher,
        },
    )
    createrepo = type(
        "AdjutantCreaterepoTask",
        (CreaterepoMixin, createrepo_base),
        {
            "__module__": __name__,
            "__doc__": CreaterepoMixin.__doc__,
            "Methods": list(createrepo_base.Methods),
            # createrepo's logs are plain files; kojid streams them with log_output, whose
            # loop cannot be reused, so the watcher is always the glue's own
            "log_watcher_class": LogWatcher,
        },
    )
    srpm_classes = srpm_handlers(kojid, buildroot_class, log_watcher)
    return Handlers(build_arch, createrepo, failed_tree.make_class(), *srpm_classes)


def srpm_handlers(kojid: Any, buildroot_class: type, log_watcher: Any) -> tuple[Any, Any]:
    """Subclasses of kojid's ``RebuildSRPM`` and ``BuildSRPMFromSCMTask`` (or their
    stand-ins in :mod:`compat`, with koji.daemon's ``SCM``)."""
    from koji_adjutant.kojid.srpm import BuildSRPMFromSCMMixin, RebuildSRPMMixin

    made = []
    for mixin, base_name, method in (
        (RebuildSRPMMixin, "RebuildSRPM", "rebuildSRPM"),
        (BuildSRPMFromSCMMixin, "BuildSRPMFromSCMTask", "buildSRPMFromSCM"),
    ):
        base = _lookup(kojid, base_name) or getattr(compat, f"{base_name}Base")
        _check_base(base, method)
        made.append(
            type(
                f"Adjutant{base_name}",
                (mixin, base),
                {
                    "__module__": __name__,
                    "__doc__": mixin.__doc__,
                    "Methods": list(base.Methods),
                    "buildroot_class": buildroot_class,
                    "log_watcher_class": log_watcher,
                    "scm_class": _lookup(kojid, "SCM") or koji.daemon.SCM,
                },
            )
        )
    return made[0], made[1]
