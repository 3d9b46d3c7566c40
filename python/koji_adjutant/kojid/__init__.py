"""The kojid integration: buildArch and createrepo handlers that run in containers.

Two ways into kojid, both ending in :func:`kojid_handlers`:

* the builder plugin ``kojid_patch/adjutant.py`` (copied into kojid's ``pluginpath`` and
  named in ``plugins``), which does ``import __main__ as kojid`` to reach kojid's classes;
* the patch ``kojid_patch/*.patch``, which adds to kojid's ``main()`` a
  ``tm.findHandlers(koji_adjutant.kojid.kojid_handlers(globals()))`` after kojid's own handlers.

kojid registers its own handlers, then ``koji.tasks``', then plugins', each replacing the
previous handler of a method; the classes made here subclass kojid's ``BuildArchTask`` and
``CreaterepoTask`` with the same ``Methods``, so they replace kojid's.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

from koji_adjutant.config import ConfigError, load_config
from koji_adjutant.kojid.handlers import Handlers, make_handlers
from koji_adjutant.kojid.images import ImageChoice, ImagePolicyError, select_image

__all__ = [
    "Handlers",
    "ImageChoice",
    "ImagePolicyError",
    "kojid_handlers",
    "make_handlers",
    "reap_at_start",
    "select_image",
]

logger = logging.getLogger("koji.build.adjutant")

#: Seconds kojid's start waits for the reaper.
REAP_TIMEOUT = 120


def _share_kojid_logging() -> None:
    """Send the Rust core's log records (logger ``koji_adjutant``) where kojid logs ``koji``."""
    ours = logging.getLogger("koji_adjutant")
    kojis = logging.getLogger("koji")
    if ours.handlers or not kojis.handlers:
        return
    for handler in kojis.handlers:
        ours.addHandler(handler)
    ours.setLevel(kojis.getEffectiveLevel())


def reap_at_start() -> int:
    """Remove every container of this worker: kojid is starting, none of its tasks runs.

    Runs ``koji-adjutant reap --all`` in a process of its own: kojid forks a child for every
    task, and its parent must hold no thread of the Rust core's runtime (nor anything else of
    Podman's) when it does. Returns the reaper's exit status. Never raises: kojid must start
    even when the config is invalid or Podman is down (each task then refuses with the
    reason).
    """
    try:
        config = load_config()
    except ConfigError as exc:
        logger.error("koji-adjutant configuration error (tasks will be refused): %s", exc)
        return 2
    if not config.enabled or not config.reap_on_start:
        return 0
    # The reaper ends itself after REAP_TIMEOUT (an alarm): a wait with a timeout here would
    # poll with time.sleep in kojid's process.
    argv = [
        sys.executable,
        "-m",
        "koji_adjutant.cli",
        "reap",
        "--all",
        f"--timeout={REAP_TIMEOUT}",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        logger.warning("koji-adjutant: could not reap leftover containers at start: %s", exc)
        return 1
    for line in (done.stdout + done.stderr).splitlines():
        if line.strip():
            (logger.info if done.returncode == 0 else logger.warning)("koji-adjutant: %s", line)
    return done.returncode


def kojid_handlers(kojid: Any) -> dict[str, type]:
    """The handler classes for the running kojid, by name (for ``TaskManager.findHandlers``).

    ``kojid`` is kojid's module (``import __main__``) or its ``globals()``. Also hooks the
    Rust core's logging into kojid's and removes this worker's leftover containers.
    """
    handlers = make_handlers(kojid)
    _share_kojid_logging()
    reap_at_start()
    logger.info(
        "koji-adjutant handles %s",
        ", ".join(m for cls in handlers.all() for m in cls.Methods),
    )
    return {cls.__name__: cls for cls in handlers.all()}
