"""The labels koji-adjutant puts on containers and images, for every Python reader.

The Rust core sets them (``src/core/spec.rs`` on every container, ``buildroot/cache.rs`` on
cache images, ``buildroot/kept.rs`` on kept failed roots); this module names them once for the
glue, the reaper and the operator's commands.
"""

from __future__ import annotations

#: Every container: the Koji task it runs for.
TASK = "io.koji.adjutant.task_id"
#: Every container: the worker (kojid) that made it; the reaper removes containers by it.
WORKER = "io.koji.adjutant.worker_id"
#: buildroot containers: ``build``, ``bootstrap`` or ``source`` (others name their purpose).
ROLE = "io.koji.adjutant.role"
#: buildroot containers: the kojid method (buildArch, rebuildSRPM, buildSRPMFromSCM).
METHOD = "io.koji.adjutant.method"
#: Buildroot cache images (value ``1``) and their key.
CACHE = "io.koji.adjutant.buildroot"
CACHE_KEY = "io.koji.adjutant.buildroot.key"
#: Kept failed roots (images ``localhost/koji-adjutant-kept:<task id>``): the task, the
#: worker, when they may be removed (Unix seconds) and the host id their ids map to.
KEPT_TASK = "io.koji.adjutant.kept.task_id"
KEPT_WORKER = "io.koji.adjutant.kept.worker_id"
KEPT_UNTIL = "io.koji.adjutant.kept.until"
KEPT_USERNS = "io.koji.adjutant.kept.userns_base"

__all__ = [
    "CACHE",
    "CACHE_KEY",
    "KEPT_TASK",
    "KEPT_UNTIL",
    "KEPT_USERNS",
    "KEPT_WORKER",
    "METHOD",
    "ROLE",
    "TASK",
    "WORKER",
]
