"""Run kojid task handlers in a test process the way kojid runs them, with or without kojid.

kojid is a script (``builder/kojid`` in koji's source), not part of PyPI's koji. These helpers
give tests what kojid gives a task:

* :func:`kojid_options`: kojid's option object with kojid 1.35.3's defaults (``get_options``).
* :func:`run_task`: what ``TaskManager.takeTask``/``runTask`` do with a handler class: make the
  handler from the task's request, run it, and report ``host.closeTask`` with the result or
  ``host.failTask`` with the fault, or ``host.refuseTask`` on ``RefuseTask`` — the real
  ``koji.daemon.TaskManager.runTask`` does the reporting.
* :func:`load_kojid`: the real kojid module from a koji source checkout, for tests that run
  the glue on kojid's own classes (``KOJI_SRC`` points at the checkout). kojid imports dnf,
  Cheetah, librepo and multilib at the top; they are stubbed, since the code paths the glue
  uses do not need them (librepo only serves markExternalRPMs with external repos).
* :func:`load_plugin`: the builder plugin loaded by ``koji.plugin.PluginTracker`` as kojid
  loads it, with ``__main__`` standing for kojid.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import optparse
import os
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import koji
import koji.daemon
import koji.plugin
import koji.tasks

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "kojid_patch"

#: kojid 1.35.3 get_options() defaults, the ones task handlers read.
KOJID_DEFAULTS: dict[str, Any] = {
    "topdir": "/mnt/koji",
    "topurl": None,
    "workdir": "/var/tmp/koji",
    "chroot_tmpdir": "/chroot_tmpdir",
    "mockdir": "/var/lib/mock",
    "mockuser": "kojibuilder",
    "packager": "Koji",
    "vendor": "Koji",
    "distribution": "Koji",
    "mockhost": "koji-linux-gnu",
    "log_timestamps": False,
    "use_fast_upload": True,
    "use_createrepo_c": True,
    "createrepo_skip_stat": True,
    "createrepo_update": True,
    "rpmbuild_timeout": 3600 * 24,
    "pluginpath": "/usr/lib/koji-builder-plugins",
    "plugin": [],
    "allowed_scms": "",
    "allowed_scms_use_config": True,
    "allowed_scms_use_policy": False,
    "allow_password_in_scm_url": False,
    "scm_credentials_dir": None,
    "support_rpm_source_layout": True,
}


def kojid_options(**overrides: Any) -> optparse.Values:
    """kojid's ``options`` (an optparse.Values) with its defaults and ``overrides``."""
    values = dict(KOJID_DEFAULTS)
    values.update(overrides)
    if values.get("topurl"):
        values["topurls"] = values["topurl"].split()
    return optparse.Values(values)


def task_manager(session: koji.ClientSession) -> koji.daemon.TaskManager:
    """A TaskManager that can report task results (its __init__ would query the hub)."""
    tm = koji.daemon.TaskManager.__new__(koji.daemon.TaskManager)
    tm.session = session
    tm.options = None
    tm.handlers = {}
    tm.logger = logging.getLogger("koji.TaskManager")
    return tm


def make_handler(
    handler_cls: type[koji.tasks.BaseTaskHandler],
    session: koji.ClientSession,
    options: optparse.Values,
    task_id: int,
) -> koji.tasks.BaseTaskHandler:
    """``takeTask``: the handler for a task, from its request as the hub returns it."""
    info = session.getTaskInfo(task_id, request=True)
    return handler_cls(info["id"], info["method"], info["request"], session, options)


def run_task(
    handler_cls: type[koji.tasks.BaseTaskHandler],
    session: koji.ClientSession,
    options: optparse.Values,
    task_id: int,
) -> koji.tasks.BaseTaskHandler:
    """Run a task as a forked kojid task does (minus the fork); return its handler."""
    handler = make_handler(handler_cls, session, options, task_id)
    task_manager(session).runTask(handler)
    return handler


_STUBBED = ("dnf", "Cheetah", "Cheetah.Template", "librepo", "multilib", "multilib.multilib")


@contextmanager
def _stub_modules() -> Iterator[None]:
    added = []
    for name in _STUBBED:
        if name in sys.modules:
            continue
        try:
            __import__(name)
            continue
        except ImportError:
            pass
        module = types.ModuleType(name)
        sys.modules[name] = module
        added.append(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    sys.modules["multilib"].multilib = sys.modules["multilib.multilib"]  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def load_kojid(path: str | os.PathLike[str]) -> types.ModuleType:
    """The kojid script at ``path`` as a module (never run as __main__)."""
    path = str(path)
    name = f"koji_kojid_{abs(hash(path))}"
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    with _stub_modules():
        loader.exec_module(module)
    return module


def kojid_source() -> Path | None:
    """builder/kojid of the koji checkout named by KOJI_SRC (a dir or the kojid file)."""
    src = os.environ.get("KOJI_SRC")
    if not src:
        return None
    path = Path(src)
    if path.is_dir():
        path = path / "builder" / "kojid"
    return path if path.is_file() else None


def load_plugin(kojid: types.ModuleType | Mapping[str, Any] | None) -> types.ModuleType:
    """Load kojid_patch/adjutant.py as kojid's PluginTracker does, ``kojid`` as __main__."""
    fake_main = kojid
    if isinstance(kojid, Mapping):
        fake_main = types.ModuleType("__main__")
        fake_main.__dict__.update(kojid)
    saved = sys.modules["__main__"]
    if fake_main is not None:
        sys.modules["__main__"] = fake_main  # type: ignore[assignment]
    try:
        tracker = koji.plugin.PluginTracker(path=[str(PLUGIN_DIR)])
        tracker.prefix = f"_koji_plugin_test_{id(tracker)}__"
        return tracker.load("adjutant")  # type: ignore[no-any-return]
    finally:
        sys.modules["__main__"] = saved
