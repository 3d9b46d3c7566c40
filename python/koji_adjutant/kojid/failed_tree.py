"""``saveFailedTree`` for container buildroots: what koji's ``save_failed_tree`` builder plugin
does for a mock root, done for a failed build's kept root.

``koji save-failed-tree <buildroot id>`` makes the hub queue a ``saveFailedTree(buildrootID,
full=False)`` task for the builder that ran the buildroot. koji's plugin tars the mock root's
``/builddir`` (or the whole root with ``full``) and uploads ``broot-<id>.tar.gz`` into the
task's upload directory. For a buildArch that ran here, the root is not a directory but the
image ``localhost/koji-adjutant-kept:<task id>`` (kept ``keep_failed_root`` hours): this handler
makes a container of it (never started), takes podman's tar of the path into the task's work
dir (its entries are never extracted on the host), leaves out the plugin's ``path_filters``
(``/etc/kojid/plugins/save_failed_tree.conf``, ``[filters] paths``), gzips it and uploads it
as the plugin does (its ``[general] volume`` too). A buildroot without a kept root on this
builder fails the task with a message saying why.

kojid registers the last handler of a method it loads: list ``adjutant`` after
``save_failed_tree`` in kojid's ``plugins`` when both are installed.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import tarfile
from typing import Any

import koji
import koji.tasks

import koji_adjutant
from koji_adjutant import labels

__all__ = ["CONFIG_FILE", "KEPT_TASK_LABEL", "KEPT_WORKER_LABEL", "SaveFailedTreeMixin"]

#: koji's save_failed_tree plugin configuration, read the same way.
CONFIG_FILE = "/etc/kojid/plugins/save_failed_tree.conf"
KEPT_TASK_LABEL = labels.KEPT_TASK
KEPT_WORKER_LABEL = labels.KEPT_WORKER


def plugin_config(path: str = CONFIG_FILE) -> dict[str, Any]:
    """The plugin's ``path_filters`` and upload ``volume`` (none when the file is absent)."""
    config: dict[str, Any] = {"path_filters": [], "volume": None}
    if not os.path.exists(path):
        return config
    parser = koji.read_config_files(path)
    if parser.has_option("filters", "paths"):
        config["path_filters"] = parser.get("filters", "paths").split()
    if parser.has_option("general", "volume"):
        config["volume"] = parser.get("general", "volume").strip()
    return config


def filtered_gzip(raw_tar: str, dest: str, path_filters: list[str]) -> int:
    """Copies the members of ``raw_tar`` (podman's tar of a path: ``builddir/...``) whose
    names, with or without a leading ``/``, match none of ``path_filters`` into the gzipped
    tar ``dest``; returns how many were kept. Nothing is extracted: hostile names, links and
    devices are only entries."""
    kept = 0
    with tarfile.open(raw_tar, "r:") as source, gzip.open(dest, "wb") as zipped:
        with tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as out:
            for member in source:
                name = member.name
                if any(fnmatch.fnmatch(n, f) for n in (name, "/" + name) for f in path_filters):
                    continue
                out.addfile(member, source.extractfile(member) if member.isreg() else None)
                kept += 1
    return kept


class SaveFailedTreeMixin:
    """``saveFailedTree(buildrootID, full=False)`` from a kept container root."""

    id: int
    workdir: str
    session: koji.ClientSession
    logger: Any

    def handler(self, buildrootID, full=False):  # type: ignore[no-untyped-def]
        from koji_adjutant.config import ConfigError, load_config

        try:
            config = load_config()
        except ConfigError as exc:
            raise koji.GenericError(f"koji-adjutant configuration error: {exc}") from None
        brinfo = self.session.getBuildroot(buildrootID)
        if brinfo is None:
            raise koji.GenericError(f"Nonexistent buildroot: {buildrootID}")
        if brinfo["host_id"] != self.session.host.getHost()["id"]:
            raise koji.GenericError("Task is run on wrong builder")
        task_id = brinfo.get("task_id")
        manager = koji_adjutant.PodmanManager(config.podman_socket, worker_id=config.worker_id)
        kept = sorted(
            manager.list_images(
                {KEPT_TASK_LABEL: str(task_id), KEPT_WORKER_LABEL: config.worker_id}
            ),
            key=lambda image: int(image["created"]),  # type: ignore[call-overload]
            reverse=True,
        )
        if not kept:
            raise koji.GenericError(
                f"koji-adjutant: buildroot {buildrootID} (task {task_id}) has no kept root on"
                f" this builder: a failed build's root is kept keep_failed_root hours"
                f" ({config.keep_failed_root:g} here)"
            )
        # a container of the kept image, never started: podman reads the archive from its
        # mounted root, no process of the build's runs
        spec = koji_adjutant.ContainerSpec(
            str(kept[0]["id"]),
            ["true"],
            task_id=self.id,
            labels={labels.ROLE: "save-failed-tree"},
        )
        top = "/" if full else "/builddir"
        raw = os.path.join(self.workdir, f"broot-{buildrootID}.tar")
        tar_path = os.path.join(self.workdir, f"broot-{buildrootID}.tar.gz")
        plugin = plugin_config()
        try:
            with manager.create(spec) as container:
                size = manager.export(container, top, raw)
            self.logger.debug("Buildroot %s: %d bytes of %s", buildrootID, size, top)
            filtered_gzip(raw, tar_path, plugin["path_filters"])
        except koji_adjutant.AdjutantError as exc:
            raise koji.GenericError(
                f"koji-adjutant: cannot save buildroot {buildrootID}: {exc}"
            ) from None
        finally:
            if os.path.exists(raw):
                os.unlink(raw)
        self.uploadFile(tar_path, volume=plugin["volume"])  # type: ignore[attr-defined]
        os.unlink(tar_path)
        self.logger.debug("Finished saving buildroot %s", buildrootID)


def make_class(base: type | None = None) -> type:
    """The handler class (``Methods = ['saveFailedTree']``)."""
    base = base or koji.tasks.BaseTaskHandler
    return type(
        "AdjutantSaveFailedTreeTask",
        (SaveFailedTreeMixin, base),
        {
            "__module__": __name__,
            "__doc__": SaveFailedTreeMixin.__doc__,
            "Methods": ["saveFailedTree"],
            "_taskWeight": 3.0,
        },
    )
