"""``koji-adjutant doctor``: check that this builder can run koji-adjutant's tasks.

Checks, each printed as ``ok``, ``PROBLEM`` or ``warning`` with what was found, and for a
problem the fix: adjutant.conf is valid; the Podman service answers on ``podman_socket``;
its OCI runtime works with this host's cgroups (crun fails on cgroup v1, runc works); which
resource limits the cgroups then enforce; the nofile/nproc rlimits containers get fit under
the service's hard limits; the user namespace range (``userns_base``) is free of host users
and of subordinate id ranges; podman's init (catatonit) is installed; the task image and any
``--image`` are present, for this host's arch; a container starts (``--no-run`` skips it);
kojid's Python imports the plugin's package, and kojid.conf loads the plugin (or kojid is
patched); podman's storage and kojid's workdir have ``--min-free`` free.

Exit status: 0 no problem (warnings allowed), 1 at least one problem, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from koji_adjutant.cli._common import LABEL_ROLE, PodmanAPI, PodmanAPIError, human_bytes
from koji_adjutant.config import AdjutantConfig, ConfigError, load_config, parse_size

#: Mirrors src/core/spec.rs: containers get min(the calling process's hard limit, ceiling).
NOFILE_CEILING = 16_384
NPROC_CEILING = 16_384
USERNS_SIZE = 65_536
DEFAULT_KOJID = "/usr/sbin/kojid"
DEFAULT_KOJID_CONF = "/etc/kojid/kojid.conf"
DEFAULT_PLUGINPATH = "/usr/lib/koji-builder-plugins"
DEFAULT_WORKDIR = "/var/tmp/koji"
#: Where podman 4 looks for its init binary (containers.conf ``init_path`` and the
#: distributions' packages).
CATATONIT_PATHS = (
    "/usr/libexec/podman/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/local/libexec/podman/catatonit",
    "/usr/bin/catatonit",
    "/usr/local/bin/catatonit",
)
#: podman's arch names for the host's machine names.
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # "ok", "PROBLEM" or "warning"
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        out = [f"{self.status:<7}  {self.check}: {self.detail}"]
        if self.fix and self.status != "ok":
            out.append(f"         fix: {self.fix}")
        return out


def ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "PROBLEM", detail, fix)


def warning(check: str, detail: str, fix: str | None = None) -> Finding:
    return Finding(check, "warning", detail, fix)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check this builder and say how to fix each problem",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="adjutant.conf to check (default: $KOJI_ADJUTANT_CONFIG or the plugin's)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--kojid-python",
        metavar="PATH",
        help="kojid's interpreter (default: the running kojid's, else the first line of"
        " /usr/sbin/kojid, else /usr/bin/python3)",
    )
    parser.add_argument(
        "--kojid-conf", default=DEFAULT_KOJID_CONF, metavar="PATH", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--kojid", default=DEFAULT_KOJID, metavar="PATH", help="kojid (default: %(default)s)"
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="kojid's workdir (default: kojid.conf's, else /var/tmp/koji)",
    )
    parser.add_argument(
        "--min-free",
        default="8G",
        metavar="SIZE",
        help="free space podman's storage and the workdir need (default: %(default)s, kojid's"
        " minspace)",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="also check this image (a tag's bootstrap image); repeatable",
    )
    parser.add_argument("--no-run", action="store_true", help="do not start a test container")
    parser.set_defaults(func=run)


# -- the checks -------------------------------------------------------------------------------


class Context:
    """What the checks share: the config, the Podman service and what it said about itself."""

    def __init__(self, args: argparse.Namespace, config: AdjutantConfig, min_free: int) -> None:
        self.args = args
        self.config = config
        self.min_free = min_free
        self.api = PodmanAPI(config.podman_socket, timeout=20)
        self.info: dict[str, Any] | None = None
        self.kojid_conf: dict[str, str] | None = None


def check_config(args: argparse.Namespace) -> tuple[AdjutantConfig, Finding]:
    from koji_adjutant.config import CONFIG_ENV, DEFAULT_CONFIG_PATH

    path = args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return AdjutantConfig(), problem(
            "adjutant.conf",
            f"{exc} (the other checks use the defaults)",
            f"correct {path} (every key: docs/config.md); until then this builder refuses"
            " buildArch and createrepo tasks",
        )
    where = path if os.path.exists(path) else f"{path} (absent: all defaults)"
    overrides = sorted(k for k in os.environ if k.startswith("KOJI_ADJUTANT_") and k != CONFIG_ENV)
    extra = f", environment {', '.join(overrides)}" if overrides else ""
    return config, ok("adjutant.conf", f"valid: {where}{extra}")


def check_socket(ctx: Context) -> Finding:
    import koji_adjutant

    socket = ctx.config.podman_socket
    try:
        koji_adjutant.PodmanManager(socket, worker_id=ctx.config.worker_id).ping()
        ctx.info = ctx.api.info()
    except (koji_adjutant.AdjutantError, PodmanAPIError) as exc:
        return problem(
            "podman socket",
            str(exc),
            "start root's Podman service: `systemctl enable --now podman.socket` (Fedora/EL,"
            " Debian), or set podman_socket in adjutant.conf to the socket it listens on",
        )
    version = (ctx.info.get("version") or {}).get("Version", "?")
    return ok("podman socket", f"podman {version} answers on {socket}")


def _host(ctx: Context) -> dict[str, Any]:
    return (ctx.info or {}).get("host") or {}


def check_runtime(ctx: Context) -> Finding:
    host = _host(ctx)
    runtime = (host.get("ociRuntime") or {}).get("name", "?")
    cgroups = host.get("cgroupVersion", "?")
    rootless = (host.get("security") or {}).get("rootless", False)
    if rootless:
        return problem(
            "podman runtime",
            f"the service runs rootless ({runtime}, cgroup {cgroups}): it cannot map the"
            " buildroots' user namespaces, and on cgroup v1 it drops memory and CPU limits",
            "point podman_socket at root's service (/run/podman/podman.sock)",
        )
    if runtime == "crun" and cgroups == "v1":
        return problem(
            "podman runtime",
            "crun on cgroup v1: every container fails to start (crun: cgroups in hybrid mode"
            " not supported)",
            'run the service with runc: install runc and set runtime = "runc" under [engine]'
            " in /etc/containers/containers.conf, or start it as `podman --runtime runc system"
            " service`; then restart podman.socket",
        )
    return ok("podman runtime", f"{runtime} on cgroup {cgroups}, rootful")


def _local_cgroup_layout() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "v1 (hybrid: v2 mounted at /sys/fs/cgroup/unified, controllers on v1)"
    return "v1 (legacy)"


def check_cgroups(ctx: Context) -> Finding:
    host = _host(ctx)
    version = host.get("cgroupVersion", "?")
    controllers = set(host.get("cgroupControllers") or [])
    cfg = ctx.config
    wanted = {
        "memory": ("memory_limit", cfg.memory_limit),
        "cpu": ("cpus", cfg.cpus),
        "pids": ("pids_limit", cfg.pids_limit),
    }
    enforced = [name for name in ("memory", "cpu", "pids") if name in controllers]
    missing = [
        f"{key} = {value} (no {name} controller: not enforced)"
        for name, (key, value) in wanted.items()
        if value is not None and name not in controllers
    ]
    layout = _local_cgroup_layout() if version == "v1" else version
    detail = f"cgroup {layout}; limits enforced: {', '.join(enforced) or 'none'}"
    if missing:
        return problem(
            "cgroups",
            f"{detail}; set but not enforced: {'; '.join(missing)}",
            "enable the controller (cgroup v2: add it to cgroup.subtree_control; kernel"
            " command line cgroup_enable=...), or unset the key in adjutant.conf",
        )
    return ok("cgroups", detail)


def _hard_limits(pid: int | str) -> dict[str, int | None] | None:
    """Hard nofile/nproc of a process (None: unlimited), or None when unreadable."""
    try:
        with open(f"/proc/{pid}/limits", encoding="ascii") as handle:
            text = handle.read()
    except OSError:
        return None
    found: dict[str, int | None] = {}
    for name, key in (("Max open files", "nofile"), ("Max processes", "nproc")):
        for line in text.splitlines():
            if line.startswith(name):
                hard = line[len(name) :].split()[1]
                found[key] = None if hard == "unlimited" else int(hard)
    return found


def _socket_inode(path: str) -> str | None:
    try:
        with open("/proc/net/unix", encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 8 and fields[7] == path and fields[3] == "00010000":
                    return fields[6]
    except OSError:
        pass
    return None


def service_pid(socket: str) -> int | None:
    """The pid of the podman process listening on ``socket``, found through /proc."""
    from koji_adjutant.cli._common import socket_path

    inode = _socket_inode(socket_path(socket))
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as handle:
                if handle.read().strip() != "podman":
                    continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    return int(entry)
        except OSError:
            continue
    return None


def _kojid_pid() -> int | None:
    """A running kojid: ``kojid ...`` or ``python... /path/kojid ...``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [os.path.basename(a) for a in handle.read().split(b"\0")[:2]]
        except OSError:
            continue
        if argv[0] == b"kojid" or (
            len(argv) == 2 and argv[0].startswith(b"python") and argv[1] == b"kojid"
        ):
            return int(entry)
    return None


def check_rlimits(ctx: Context) -> Finding:
    pid = service_pid(ctx.config.podman_socket)
    service = _hard_limits(pid) if pid is not None else None
    kojid = _kojid_pid()
    source = f"kojid (pid {kojid})" if kojid is not None else "this process (kojid not running)"
    caller = _hard_limits(kojid if kojid is not None else "self") or {}
    ceilings = {"nofile": NOFILE_CEILING, "nproc": NPROC_CEILING}
    requested = {key: min(ceiling, caller.get(key) or ceiling) for key, ceiling in ceilings.items()}
    asked = ", ".join(f"{k} {v}" for k, v in requested.items())
    if service is None:
        return warning(
            "rlimits",
            f"containers get {asked} (from {source}); the podman service's own hard limits are"
            " unknown (its process was not found through /proc)",
            "compare with `grep -E 'open files|processes' /proc/$(pgrep -f 'podman.*system"
            " service')/limits`",
        )
    over = [
        f"{key} {requested[key]} > the service's {service[key]}"
        for key in ceilings
        if service.get(key) is not None and requested[key] > (service[key] or 0)
    ]
    limits = ", ".join(f"{k} {service.get(k) or 'unlimited'}" for k in ceilings)
    if over:
        return problem(
            "rlimits",
            f"containers would fail to start (setrlimit: operation not permitted): "
            f"{'; '.join(over)} (service pid {pid}: {limits})",
            "raise the service's limits (`systemctl edit podman.service`: LimitNOFILE=,"
            " LimitNPROC=) or lower kojid's hard limits (RLIMIT_NOFILE/RLIMIT_NPROC in"
            " kojid.conf, or LimitNOFILE= in kojid.service) to at most the service's",
        )
    return ok("rlimits", f"containers get {asked} (from {source}); service pid {pid}: {limits}")


def _id_ranges(path: str) -> list[tuple[str, int, int]]:
    """``/etc/subuid``-style entries: (owner, first id, count)."""
    ranges = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    ranges.append((parts[0], int(parts[1]), int(parts[2])))
    except OSError:
        pass
    return ranges


def _ids_in(path: str, first: int, last: int) -> list[str]:
    """Names in a passwd/group file whose id is in [first, last]."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit() and first <= int(parts[2]) <= last:
                    found.append(f"{parts[0]} ({parts[2]})")
    except OSError:
        pass
    return found


def check_userns(
    base: int | None,
    *,
    etc: str = "/etc",
    max_namespaces_path: str = "/proc/sys/user/max_user_namespaces",
) -> Finding:
    """The fixed mapping ``userns_base`` .. +65535 (docs/security.md) needs no subordinate ids
    but must not overlap the host's users or any subordinate range."""
    if base is None:
        return warning(
            "user namespaces",
            "userns_base = none: buildArch containers run without a user namespace (container"
            " root is host root, confined by its capabilities)",
            "set userns_base (default 1000000000) unless this host cannot (docs/security.md)",
        )
    last = base + USERNS_SIZE - 1
    span = f"{base}-{last}"
    try:
        with open(max_namespaces_path, encoding="ascii") as handle:
            allowed = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        allowed = None
    if allowed == 0:
        return problem(
            "user namespaces",
            f"user namespaces are disabled ({max_namespaces_path} is 0)",
            "`sysctl -w user.max_user_namespaces=15000` (and in /etc/sysctl.d/), or set"
            " userns_base = none",
        )
    clashes = [f"user {n}" for n in _ids_in(os.path.join(etc, "passwd"), base, last)]
    clashes += [f"group {n}" for n in _ids_in(os.path.join(etc, "group"), base, last)]
    entries = []
    for name in ("subuid", "subgid"):
        for owner, first, count in _id_ranges(os.path.join(etc, name)):
            entries.append(f"{name} {owner}:{first}:{count}")
            if first <= last and first + count - 1 >= base:
                clashes.append(f"/etc/{name} range {owner}:{first}:{count}")
    if clashes:
        return problem(
            "user namespaces",
            f"host ids {span} (userns_base) are not free: {', '.join(clashes[:8])}"
            + (" ..." if len(clashes) > 8 else ""),
            "set userns_base in adjutant.conf to a range of 65536 ids no user, group or"
            " /etc/subuid, /etc/subgid entry uses",
        )
    subids = "; ".join(entries) if entries else "/etc/subuid and /etc/subgid have no entries"
    return ok(
        "user namespaces",
        f"containers map to host ids {span}, used by nothing else (a fixed mapping needs no"
        f" subordinate ids; {subids})",
    )


def check_catatonit() -> Finding:
    for path in CATATONIT_PATHS:
        if os.access(path, os.X_OK):
            return ok("init", f"catatonit at {path}")
    return problem(
        "init",
        "catatonit (podman's --init) not found: buildArch containers cannot start",
        "install it: `dnf install catatonit` or `apt-get install catatonit`",
    )


def check_images(ctx: Context) -> list[Finding]:
    import koji_adjutant

    images = []
    if ctx.config.task_image:
        images.append((ctx.config.task_image, "task_image"))
    images += [(image, "--image") for image in ctx.args.image]
    findings = []
    if not ctx.config.task_image:
        findings.append(
            warning(
                "images",
                "task_image = none: every build tag must name its image (mock.bootstrap_image"
                " or adjutant.image*); check those with --image",
            )
        )
    host_arch = _host(ctx).get("arch") or _ARCHES.get(platform.machine(), platform.machine())
    manager = koji_adjutant.PodmanManager(ctx.config.podman_socket)
    for image, origin in images:
        check = f"image {image}"
        try:
            found = manager.inspect_image(image)
        except koji_adjutant.AdjutantError as exc:
            findings.append(
                problem(
                    check,
                    f"not present ({origin}): {exc}",
                    f"`podman pull {image}` (or `podman load` it) before tasks need it; with"
                    f" pull_policy = {ctx.config.pull_policy} a task"
                    + (" fails" if ctx.config.pull_policy == "never" else " tries to pull it"),
                )
            )
            continue
        arch = found.get("Architecture")
        short = str(found.get("Id", ""))[:12]
        if arch and arch != host_arch:
            findings.append(
                problem(
                    check,
                    f"{short} is for {arch}, this host is {host_arch}",
                    "use an image built for this host's arch (docs/images.md)",
                )
            )
        else:
            findings.append(ok(check, f"present ({origin}): {short}, {arch or '?'}"))
    return findings


def check_container(ctx: Context) -> Finding:
    import koji_adjutant

    cfg = ctx.config
    assert cfg.task_image is not None
    spec = koji_adjutant.ContainerSpec(
        cfg.task_image,
        ["true"],
        labels={LABEL_ROLE: "doctor"},
        limits=koji_adjutant.ResourceLimits(
            memory_bytes=cfg.memory_limit, cpus=cfg.cpus, pids=cfg.pids_limit
        ),
        timeout=60,
    )
    manager = koji_adjutant.PodmanManager(cfg.podman_socket, worker_id=cfg.worker_id)
    try:
        result = manager.run(spec)
    except koji_adjutant.AdjutantError as exc:
        return problem(
            "container start",
            f"`true` in {cfg.task_image} with this builder's limits failed: {exc}",
            "see the runtime and rlimits checks above, and docs/operations.md (troubleshooting)",
        )
    if result.exit_code != 0:
        return problem(
            "container start",
            f"`true` in {cfg.task_image} exited {result.exit_code}",
            "the image cannot run `true`: check it with `podman run --rm IMAGE true`",
        )
    took = (result.finished_at - result.started_at).total_seconds()
    return ok("container start", f"`true` ran in {cfg.task_image} ({took:.2f} s), removed")


def _kojid_shebang(kojid: str) -> str | None:
    try:
        with open(kojid, "rb") as handle:
            first = handle.readline(256).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0]


def _running_kojid_python() -> str | None:
    """The interpreter of the running kojid, if any (what really imports the plugin): its
    argv[0], which is the shebang's interpreter or the one a unit runs it with (a venv's
    python, which /proc/<pid>/exe would resolve to the base interpreter)."""
    pid = _kojid_pid()
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0")]
    except OSError:
        return None
    if len(argv) < 2 or os.path.basename(argv[0]) == "kojid":
        return None
    if os.sep in argv[0]:
        return argv[0]
    return shutil.which(argv[0])


def check_kojid_python(ctx: Context) -> Finding:
    from koji_adjutant import __version__

    python = (
        ctx.args.kojid_python
        or _running_kojid_python()
        or _kojid_shebang(ctx.args.kojid)
        or "/usr/bin/python3"
    )
    if os.sep in python:
        python = os.path.abspath(python)  # it runs from / (not to import from the cwd)
    code = "import koji_adjutant, koji_adjutant.kojid; print(koji_adjutant.__version__)"
    fix = (
        f"install the wheel for {python} (docs/deploy.md, 3.), then `{python} -c 'import"
        " koji_adjutant.kojid'` must work"
    )
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return problem("kojid python", f"cannot run {python}: {exc}", fix)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return problem("kojid python", f"{python} cannot import koji_adjutant.kojid: {last}", fix)
    theirs = done.stdout.strip()
    if theirs != __version__:
        return warning(
            "kojid python",
            f"{python} imports koji-adjutant {theirs}, this command is {__version__}",
            "install the same wheel for both (or run this command with that interpreter:"
            f" `{python} -m koji_adjutant.cli doctor`)",
        )
    return ok("kojid python", f"{python} imports koji_adjutant.kojid ({theirs})")


def read_kojid_conf(path: str) -> dict[str, str]:
    """kojid.conf's ``[kojid]`` section (kojid reads it with a RawConfigParser too)."""
    parser = configparser.RawConfigParser()
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle, source=path)
    return dict(parser.items("kojid")) if parser.has_section("kojid") else {}


def check_kojid_conf(ctx: Context) -> Finding:
    path = ctx.args.kojid_conf
    try:
        with open(ctx.args.kojid, encoding="utf-8", errors="replace") as handle:
            patched = "koji_adjutant" in handle.read()
    except OSError:
        patched = False
    try:
        conf = read_kojid_conf(path)
    except FileNotFoundError:
        if patched:
            return ok("kojid.conf", f"{ctx.args.kojid} is patched ({path} absent)")
        return problem(
            "kojid.conf",
            f"{path} not found",
            "install kojid (koji-builder) and configure it, or name the file with --kojid-conf",
        )
    except (OSError, configparser.Error) as exc:
        return problem("kojid.conf", f"cannot read {path}: {exc}", f"correct {path}")
    ctx.kojid_conf = conf
    if patched:
        return ok("kojid.conf", f"{ctx.args.kojid} is patched: no plugin needed")
    plugins = (conf.get("plugins") or conf.get("plugin") or "").split()
    if "adjutant" not in plugins:
        return problem(
            "kojid.conf",
            f"[kojid] plugins in {path} does not list adjutant"
            + (f" (it lists: {' '.join(plugins)})" if plugins else " (no plugins option)"),
            f"add `plugins = {' '.join([*plugins, 'adjutant'])}` under [kojid] in {path},"
            " then `systemctl restart kojid`",
        )
    pluginpath = conf.get("pluginpath") or DEFAULT_PLUGINPATH
    dirs = [d for d in pluginpath.split(":") if d]
    for directory in dirs:
        if os.path.isfile(os.path.join(directory, "adjutant.py")):
            return ok(
                "kojid.conf",
                f"plugins lists adjutant; {os.path.join(directory, 'adjutant.py')} found",
            )
    return problem(
        "kojid.conf",
        f"plugins lists adjutant but no adjutant.py in pluginpath {pluginpath}",
        f"`install -m 0644 kojid_patch/adjutant.py {dirs[0] if dirs else DEFAULT_PLUGINPATH}/`",
    )


def _free(path: str) -> tuple[str, int]:
    """(the existing directory measured, bytes free to unprivileged users) for ``path``."""
    probe = os.path.abspath(path)
    while not os.path.isdir(probe) and probe != "/":
        probe = os.path.dirname(probe)
    vfs = os.statvfs(probe)
    return probe, vfs.f_bavail * vfs.f_frsize


def _space(check: str, path: str, need: int, fix: str) -> Finding:
    try:
        measured, free = _free(path)
    except OSError as exc:
        return problem(check, f"cannot measure {path}: {exc}", fix)
    where = path if measured == path else f"{path} (absent, kojid creates it; measured {measured})"
    detail = f"{human_bytes(free)} free in {where}"
    if free < need:
        return problem(check, f"{detail}, less than {human_bytes(need)}", fix)
    return ok(check, detail)


def check_space(ctx: Context) -> list[Finding]:
    store = (ctx.info or {}).get("store") or {}
    graph_root = store.get("graphRoot")
    findings = []
    if graph_root:
        findings.append(
            _space(
                "podman storage space",
                graph_root,
                ctx.min_free,
                "`koji-adjutant cache prune --keep 2`, `podman image prune`, or lower"
                " buildroot_cache_max_bytes; then give graphRoot a larger filesystem",
            )
        )
    workdir = ctx.args.workdir or (ctx.kojid_conf or {}).get("workdir") or DEFAULT_WORKDIR
    findings.append(
        _space(
            "workdir space",
            workdir,
            ctx.min_free,
            f"free space on {workdir}'s filesystem (kojid's per-task work dirs, results and"
            " logs live there)",
        )
    )
    return findings


def run_checks(ctx: Context, config_finding: Finding) -> list[Finding]:
    findings = [config_finding, socket := check_socket(ctx)]
    up = socket.status == "ok"
    if up:
        findings += [check_runtime(ctx), check_cgroups(ctx), check_rlimits(ctx)]
    else:
        findings += [
            warning(name, "not checked: the podman service does not answer")
            for name in ("podman runtime", "cgroups", "rlimits")
        ]
    findings += [check_userns(ctx.config.userns_base), check_catatonit()]
    if up:
        images = check_images(ctx)
        findings += images
        task_image_ok = any(
            f.check == f"image {ctx.config.task_image}" and f.status == "ok" for f in images
        )
        runtime_ok = all(f.status == "ok" for f in findings if f.check == "podman runtime")
        if not ctx.args.no_run and task_image_ok and runtime_ok:
            findings.append(check_container(ctx))
    else:
        findings.append(warning("images", "not checked: the podman service does not answer"))
    findings += [check_kojid_python(ctx), check_kojid_conf(ctx)]
    findings += check_space(ctx)
    return findings


def report(findings: Sequence[Finding], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "ok": not any(f.status == "PROBLEM" for f in findings),
                "checks": [asdict(f) for f in findings],
            },
            indent=2,
        )
    lines = [line for f in findings for line in f.lines()]
    problems = sum(f.status == "PROBLEM" for f in findings)
    warnings = sum(f.status == "warning" for f in findings)
    lines.append(
        f"{problems} problem(s), {warnings} warning(s)"
        if problems or warnings
        else "no problems found"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        min_free = parse_size(args.min_free)
    except ValueError as exc:
        print(f"error: --min-free {args.min_free!r}: {exc}", file=sys.stderr)
        return 2
    for image in args.image:
        if not re.fullmatch(r"[^\s]+", image):
            print(f"error: --image {image!r} is not an image reference", file=sys.stderr)
            return 2
    config, config_finding = check_config(args)
    ctx = Context(args, config, min_free)
    findings = run_checks(ctx, config_finding)
    print(report(findings, as_json=args.json))
    return 1 if any(f.status == "PROBLEM" for f in findings) else 0
