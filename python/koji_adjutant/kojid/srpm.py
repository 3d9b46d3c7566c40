"""kojid's rebuildSRPM and buildSRPMFromSCM task handlers, making the SRPM in a container.

:func:`koji_adjutant.kojid.handlers.make_handlers` builds subclasses of kojid's own
``RebuildSRPM`` and ``BuildSRPMFromSCMTask`` from these mixins, with the same ``Methods``.
Everything around the tool run is kojid's: ``checkHost``, ``find_arch``, ``localPath``,
``uploadFile``, ``getUploadDir``, the ``SCM`` class with ``assert_allowed`` (``allowed_scms``
and the hub's policy) and ``checkout`` (on the host, its ``checkout.log`` uploaded by kojid),
``get_source``, the ``preSCMCheckout``/``postSCMCheckout`` callbacks, ``patch_scm_source``,
``spec_sanity_checks``, and the buildroot record as buildArch keeps it. The handlers follow
kojid 1.35.3's bodies step by step and replace what ran mock: the buildroot is the tag's
``srpm-build`` group installed as buildArch installs ``build``, and the SRPM is made in it
(``BuildArchAdapter.build_srpm``): rebuildSRPM unpacks the SRPM and runs ``rpmbuild -bs``;
buildSRPMFromSCM mounts the checkout read-only, copies it as the build user, runs
``source_cmd`` in the copy (the one step with a network, in a container of its own, when
``source_cmd_network`` and the tag's ``adjutant.source_cmd_network`` allow it) and runs
``rpmbuild -bs`` without network.

Where the hub traffic differs from kojid's: as buildArch, no ``mock_config.log``
(``buildroot_config.log`` instead) and the task is refused before ``newBuildRoot`` when the
image cannot serve the tag; the checkout is not chowned to ``mockuser`` (nothing on the host
needs to be the build user's: the container copies it).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import koji

import koji_adjutant
from koji_adjutant.config import AdjutantConfig
from koji_adjutant.kojid.handlers import BuildArchMixin, _Runtime, tag_enabled, tag_flag
from koji_adjutant.kojid.images import select_image

__all__ = ["BuildSRPMFromSCMMixin", "RebuildSRPMMixin", "SrpmTaskMixin"]

#: kojid's install group of SRPM buildroots
SRPM_BUILD_GROUP = "srpm-build"


class SrpmTaskMixin(BuildArchMixin):
    """What both SRPM handlers share: the buildroot of ``srpm-build``, the adapter run and
    kojid's checks of the one SRPM."""

    method: str
    updates_list_after_build = False

    def handler(self, *args):  # type: ignore[no-untyped-def]
        config = self.adjutant_config()
        if not config.enabled:
            return self.kojid_handler(*args)
        return self.record_task(
            config, self.method, "noarch", lambda: self.in_container(config, *args)
        )

    def in_container(self, config: AdjutantConfig, *args: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def srpm_buildroot(self, config: AdjutantConfig, runtime: _Runtime, build_tag: Any, opts: dict):  # type: ignore[no-untyped-def]
        """kojid's steps up to ``BuildRoot(...)``: the repo, the tag at its event, the
        buildroot arch (``find_arch('noarch', ...)``, preferring this builder's own); then
        the image, whether it serves the tag, and the hub's record. Returns (tag, broot,
        adapter, repo, topdir, repomd digest), or None when the tag is not moved
        (``adjutant.enabled`` false: the caller runs kojid's own handler)."""
        repo_id = opts.get("repo_id")
        if not repo_id:
            raise koji.BuildError("A repo id must be provided")
        repo_info = self.session.repoInfo(repo_id, strict=True)
        event_id = repo_info["create_event"]
        build_tag = self.session.getTag(build_tag, strict=True, event=event_id)
        build_config = self.session.getBuildConfig(build_tag["id"], event=event_id)
        if not tag_enabled(build_config):
            self.logger.info("koji-adjutant is not enabled for tag %s", build_config["name"])
            return None
        br_arch = self.find_arch(  # type: ignore[attr-defined]
            "noarch",
            self.session.host.getHost(),
            build_config,
            preferred_arch=koji.canonArch(os.uname().machine),
        )
        arch = koji.canonArch(br_arch)
        image = select_image(
            build_config.get("extra"),
            tag_name=build_config["name"],
            method=self.method,
            arch=arch,
            default=config.task_image,
            bootstrap=config.buildroot_mode == "tag",
            allowlist=config.image_allowlist,
        )
        repo, topdir = self.buildroot_repo(config, repo_info, arch)
        digest = None if topdir else self.repomd_sha256(repo_info, arch)
        self.logger.info(
            "%s (%s mode) in image %s (from %s), repo %s",
            self.method,
            config.buildroot_mode,
            image.image,
            image.source,
            repo,
        )
        adapter = self.build_adapter(runtime, image, install_group=SRPM_BUILD_GROUP)
        self.check_task(adapter, "noarch", build_config, arch)
        broot = self.buildroot_class(
            self.session,
            self.options,
            build_tag["id"],
            br_arch,
            self.id,
            repo_id=repo_id,
            workdir=self.workdir,
        )
        return build_tag, broot, adapter, repo, topdir, digest

    def make_srpm(
        self,
        runtime: _Runtime,
        broot: Any,
        adapter: Any,
        repo: str,
        topdir: Any,
        digest: Any,
        **input: Any,
    ) -> str:  # type: ignore[no-untyped-def]
        """The adapter's SRPM run (logs streamed, buildroot recorded); kojid's checks of the
        result: one SRPM whose name is its header's N-V-R. Returns its path."""
        result = self.run_adapter(
            runtime,
            broot,
            lambda ready, final, usage: adapter.build_srpm(
                self.adjutant_context(runtime.config),
                repo=repo,
                repo_id=broot.repoid,
                tag_name=broot.tag_name,
                build_config=broot.config,
                topdir=topdir,
                buildroot_arch=koji.canonArch(broot.br_arch),
                repomd_sha256=digest,
                on_buildroot_ready=ready,
                on_usage=usage,
                **input,
            ),
        )
        srpms = [os.fspath(p) for p in result.srpms]
        if len(srpms) != 1:  # the adapter checked it; kojid's words should it not have
            raise koji.BuildError(f"Multiple srpms found: {', '.join(srpms)}")
        srpm = srpms[0]
        header = koji_adjutant.read_package(srpm)
        srpm_name = "{name}-{version}-{release}.src.rpm".format(**header)
        if srpm_name != os.path.basename(srpm):
            raise koji.BuildError(f"srpm name mismatch: {srpm_name} != {os.path.basename(srpm)}")
        return srpm

    def srpm_result(self, broot: Any, srpm: str, source: Any) -> dict[str, Any]:
        """kojid's last steps: upload the SRPM, the result dict, EXPIRED."""
        uploadpath = self.getUploadDir()  # type: ignore[attr-defined]
        self.uploadFile(srpm)  # type: ignore[attr-defined]
        log_files = list(broot.logs)
        broot.expire()
        return {
            "srpm": f"{uploadpath}/{os.path.basename(srpm)}",
            "logs": [f"{uploadpath}/{f}" for f in log_files],
            "brootid": broot.id,
            "source": source,
        }


class RebuildSRPMMixin(SrpmTaskMixin):
    """``rebuildSRPM(srpm, build_tag, opts)`` in a container (see module doc)."""

    method = "rebuildSRPM"

    def in_container(self, config, srpm, build_tag, opts=None):  # type: ignore[no-untyped-def,override]
        """kojid's RebuildSRPM.handler, step by step, with the rebuild in a container."""
        runtime = self.adjutant_runtime(config)
        if opts is None:
            opts = {}
        made = self.srpm_buildroot(config, runtime, build_tag, opts)
        if made is None:
            return self.kojid_handler(srpm, build_tag, opts)
        _tag, broot, adapter, repo, topdir, digest = made
        fn = self.localPath(f"work/{srpm}")  # type: ignore[attr-defined]
        if not os.path.exists(fn):
            raise koji.BuildError(f"Input SRPM file missing: {fn}")
        path = self.srpm_in_workdir(fn)
        made_srpm = self.make_srpm(runtime, broot, adapter, repo, topdir, digest, srpm_path=path)
        name = os.path.basename(made_srpm)
        return self.srpm_result(broot, made_srpm, {"source": name, "url": name})


class BuildSRPMFromSCMMixin(SrpmTaskMixin):
    """``buildSRPMFromSCM(url, build_tag, opts)`` in a container (see module doc)."""

    method = "buildSRPMFromSCM"
    scm_class: type[Any]

    def source_cmd_network(self, config: AdjutantConfig, broot: Any) -> bool:
        """``source_cmd`` gets a network when adjutant.conf's ``source_cmd_network`` and
        the tag's ``adjutant.source_cmd_network`` (absent: yes) allow it."""
        if not config.source_cmd_network:
            return False
        return tag_flag(broot.config, "adjutant.source_cmd_network")

    def in_container(self, config, url, build_tag, opts=None):  # type: ignore[no-untyped-def,override]
        """kojid's BuildSRPMFromSCMTask.handler, step by step, with the SRPM made in a
        container."""
        runtime = self.adjutant_runtime(config)
        if opts is None:
            opts = {}
        # the URL and allowed_scms (kojid.conf) or the hub's policy, before anything else
        scm = self.scm_class(url, allow_password=self.options.allow_password_in_scm_url)
        scm.assert_allowed(
            allowed=self.options.allowed_scms,
            session=self.session,
            by_config=self.options.allowed_scms_use_config,
            by_policy=self.options.allowed_scms_use_policy,
            policy_data={
                "user_id": self.taskinfo["owner"],  # type: ignore[attr-defined]
                "channel": self.session.getChannel(
                    self.taskinfo["channel_id"],  # type: ignore[attr-defined]
                    strict=True,
                )["name"],
                "scratch": opts.get("scratch"),
            },
        )
        made = self.srpm_buildroot(config, runtime, build_tag, opts)
        if made is None:
            return self.kojid_handler(url, build_tag, opts)
        build_tag, broot, adapter, repo, topdir, digest = made
        checkout = self.checkout(scm, build_tag, broot, opts)
        made_srpm = self.make_srpm(
            runtime,
            broot,
            adapter,
            repo,
            topdir,
            digest,
            source_network=self.source_cmd_network(config, broot),
            **checkout,
        )
        return self.srpm_result(broot, made_srpm, self.scm_source)

    def checkout(self, scm: Any, build_tag: Any, broot: Any, opts: dict) -> dict[str, Any]:  # type: ignore[type-arg]
        """kojid's checkout on the host and its spec lookup; the adapter's checkout input
        (paths relative to ``scmroot``)."""
        scmdir = os.path.join(broot.tmpdir(), "scmroot")
        koji.ensuredir(scmdir)
        logfile = os.path.join(self.workdir, "checkout.log")
        uploadpath = self.getUploadDir()  # type: ignore[attr-defined]

        def callbacks(name: str, **extra: Any) -> None:
            self.run_callbacks(  # type: ignore[attr-defined]
                name,
                scminfo=scm.get_info(),
                build_tag=build_tag,
                scratch=opts.get("scratch"),
                buildroot=broot,
                **extra,
            )

        callbacks("preSCMCheckout")
        sourcedir = scm.checkout(scmdir, self.session, uploadpath, logfile)
        callbacks("postSCMCheckout", srcdir=sourcedir)
        self.scm_source = scm.get_source()
        self.patch_scm_source(sourcedir, logfile, opts)  # type: ignore[attr-defined]
        spec_file = self.find_spec(sourcedir)
        self.spec_sanity_checks(spec_file)  # type: ignore[attr-defined]
        alt_sources_dir = os.path.join(sourcedir, "SOURCES")
        if self.options.support_rpm_source_layout and os.path.isdir(alt_sources_dir):
            sources_dir = alt_sources_dir
        else:
            sources_dir = sourcedir

        def rel(path: str) -> str:
            relative = os.path.relpath(path, scmdir)
            return "" if relative == "." else relative

        return {
            "checkout": scmdir,
            "workdir": rel(sourcedir),
            "spec": rel(spec_file),
            "sources": rel(sources_dir),
            "source_cmd": list(scm.source_cmd or ()),
            "scm_credentials_dir": self.credentials_dir(),
        }

    def credentials_dir(self) -> str | None:
        """kojid's ``scm_credentials_dir`` when it is a directory, as kojid binds it into
        the buildroot at ``/credentials``; here only ``source_cmd``'s container sees it."""
        path = getattr(self.options, "scm_credentials_dir", None)
        return path if path is not None and os.path.isdir(path) else None

    def find_spec(self, sourcedir: str) -> str:
        """kojid's spec lookup: the one ``*.spec`` of the checkout (or ``SPECS/``), or the one
        named after the checkout dir."""
        spec_files = glob.glob(f"{sourcedir}/*.spec")
        if not spec_files and self.options.support_rpm_source_layout:
            spec_files = glob.glob(f"{sourcedir}/SPECS/*.spec")
        if not spec_files:
            raise koji.BuildError("No spec file found")
        if len(spec_files) == 1:
            return spec_files[0]
        name = os.path.basename(sourcedir)
        for candidate in (f"{sourcedir}/{name}.spec", f"{sourcedir}/SPECS/{name}.spec"):
            if candidate in spec_files:
                return candidate
        raise koji.BuildError(
            f"Multiple spec files found but none is matching SCM checkout dir name: {spec_files}"
        )
