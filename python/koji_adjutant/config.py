"""The kojid plugin's configuration: ``/etc/kojid/plugins/adjutant.conf``, section ``[adjutant]``.

kojid refuses to start on any section but ``[kojid]`` or any key it does not know in its own
config file, so, like kojid's runroot plugin, koji-adjutant keeps its settings in a file of its
own under ``/etc/kojid/plugins/``. The path can be moved with ``KOJI_ADJUTANT_CONFIG`` and
every key can be overridden with ``KOJI_ADJUTANT_<KEY>`` (upper case), which is what tests and
container deployments use.

Every value is parsed and checked here, once, into a frozen :class:`AdjutantConfig`. A bad
value raises :class:`ConfigError` whose message names the key, the value and what is allowed;
the kojid glue turns that into a refused task (kojid itself keeps running), so an admin finds
the message in kojid's log and in the hub's scheduler log. ``docs/config.md`` lists every key
with its default; keep the two in step.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, TypeVar

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "SECTION",
    "AdjutantConfig",
    "ConfigError",
    "check_image_reference",
    "image_allowed",
    "load_config",
    "parse_size",
]

#: Where kojid builder plugins keep their configuration (runroot uses the same directory).
DEFAULT_CONFIG_PATH = "/etc/kojid/plugins/adjutant.conf"
#: Environment variable naming another config file.
CONFIG_ENV = "KOJI_ADJUTANT_CONFIG"
#: Prefix of the per-key environment overrides (``KOJI_ADJUTANT_TASK_IMAGE`` ...).
ENV_PREFIX = "KOJI_ADJUTANT_"
SECTION = "adjutant"

PULL_POLICIES = ("always", "if-not-present", "never")
SELINUX_LABELS = ("z", "Z")
NETWORK_POLICIES = ("auto", "none", "repo")
BUILDROOT_MODES = ("tag", "image")
#: Container ids 0-65535 map to host ids from here: far above any host's own users and below
#: the ranges podman's auto user namespaces hand out (2147483647 and up).
USERNS_BASE = 1_000_000_000
#: The share of the builder's memory a task container may use unless memory_limit says
#: otherwise (the core's ResourceLimits.task_defaults uses the same numbers).
DEFAULT_MEMORY_PERCENT = 75
#: The CPUs a task container leaves to kojid, Podman and log uploads unless cpus says otherwise.
DEFAULT_CPUS_HELD_BACK = 0.5
_USERNS_SIZE = 65536
_NONE_WORDS = ("", "none")
_TRUE_WORDS = ("1", "yes", "true", "on")
_FALSE_WORDS = ("0", "no", "false", "off")
_SIZE_RE = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# A podman label value is free text, but the worker id also names things in logs and docs:
# keep it to what a host name or a systemd instance name may contain.
_WORKER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and the rule."""


def _default_worker_id() -> str:
    """The host name, which is also what the Rust PodmanManager defaults to."""
    return socket.gethostname() or "localhost"


def _host_memory() -> int:
    """This builder's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _host_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _default_memory_limit() -> int:
    return _host_memory() // 100 * DEFAULT_MEMORY_PERCENT


def _default_cpus() -> float:
    return max(1.0, _host_cpus() - DEFAULT_CPUS_HELD_BACK)


@dataclass(frozen=True)
class AdjutantConfig:
    """The ``[adjutant]`` settings, typed. Field names are the config keys."""

    #: Run buildArch, rebuildSRPM, buildSRPMFromSCM and createrepo in containers; ``False``:
    #: kojid's own handlers (mock, host
    #: createrepo_c), unchanged. A tag's ``adjutant.enabled`` extra overrides it per tag.
    enabled: bool = True
    #: Podman's REST API socket (a path or a ``unix://`` URL).
    podman_socket: str = "unix:///run/podman/podman.sock"
    #: ``tag``: buildroots installed from the tag's repo alone by the bootstrap image (mock's
    #: bootstrap model); ``image``: the image itself is the buildroot (not equivalent to mock).
    buildroot_mode: str = "tag"
    #: Label ``io.koji.adjutant.worker_id`` on every container; unique per kojid.
    worker_id: str = dataclasses.field(default_factory=_default_worker_id)
    #: Image for tasks whose tag names none (tag extra ``adjutant.image*`` wins); ``None`` means
    #: every tag must name its image.
    task_image: str | None = None
    pull_policy: str = "if-not-present"
    #: SELinux relabel option for bind mounts (``z`` shared, ``Z`` private), or ``None``.
    selinux_label: str | None = None
    #: Memory of each task container in bytes (``75%`` of the builder's by default).
    memory_limit: int | None = dataclasses.field(default_factory=_default_memory_limit)
    #: CPUs of each task container (all the builder's but half of one by default).
    cpus: float | None = dataclasses.field(default_factory=_default_cpus)
    pids_limit: int | None = 4096
    #: How buildArch reaches its repo, and so which steps get a network (see docs/config.md).
    network: str = "auto"
    #: kojid's topurl as task containers reach it; ``None``: kojid's own ``topurl``.
    buildroot_topurl: str | None = None
    #: Where each task's ``<task_id>/container.log`` is kept after the task; ``None``: nowhere.
    log_dir: str | None = None
    #: Cap on the bytes kept per log file; ``None``: no cap.
    log_cap_bytes: int | None = None
    buildroot_cache: bool = True
    #: Cached buildroot images kept (least recently used removed first).
    buildroot_cache_max_entries: int = 8
    #: Total size of the cached buildroot images.
    buildroot_cache_max_bytes: int = 20 * 1024**3
    #: Where the cache records last use per entry; ``None``: the oldest-created go first.
    buildroot_cache_dir: str | None = "/var/lib/koji-adjutant/buildroot-cache"
    #: Seconds a createrepo task's container may run; ``None``: no limit.
    createrepo_timeout: int | None = None
    #: Image mode: Koji external repo (name or id) the image's own RPMs are recorded against.
    image_external_repo: str | None = None
    #: Remove this worker's leftover containers when kojid starts.
    reap_on_start: bool = True
    #: First host uid/gid of the 65536 ids that container ids 0-65535 map to in every buildArch
    #: container (a user namespace: container root is not host root); ``None``: no mapping.
    userns_base: int | None = USERNS_BASE
    #: PEM (PKCS#8) private key that signs each buildArch's ``provenance.intoto.json`` (a DSSE
    #: envelope); ``None``: the envelope carries no signature (docs/provenance.md).
    provenance_signing_key: str | None = None
    #: Hours a failed buildArch's root is kept for ``koji-adjutant shell`` (kojid keeps failed
    #: mock roots 4 hours); 0: not kept.
    keep_failed_root: float = 4.0
    #: Where the operator's records of finished tasks and reaped containers are kept.
    state_dir: str = "/var/lib/koji-adjutant"
    #: The images a task may use (registries, namespaces, repositories or exact references);
    #: ``None``: any.
    image_allowlist: tuple[str, ...] | None = None
    #: Seconds one Podman call may take (and Podman may leave a ping unanswered while a long
    #: one is pending) before the task fails.
    podman_timeout: int = 60
    #: Seconds each root step of a buildroot (dnf's installs) and each query may run.
    dnf_timeout: int = 7200
    #: buildSRPMFromSCM: ``source_cmd`` (from ``allowed_scms``) runs with a network, in a
    #: container of its own on the buildroot, as under mock; ``no``: without one. A tag's
    #: ``adjutant.source_cmd_network`` false turns it off for that tag.
    source_cmd_network: bool = True


# -- value parsers: each takes the raw string and returns the typed value or raises ValueError
#    with the rule, which _parse() prefixes with the key and the value.


def _optional(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    def parse_optional(raw: str) -> T | None:
        if raw.strip().lower() in _NONE_WORDS:
            return None
        return parse(raw)

    parse_optional.__doc__ = parse.__doc__
    return parse_optional


def _text(raw: str) -> str:
    """a non-empty string"""
    value = raw.strip()
    if not value:
        raise ValueError("expected a non-empty string")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse_choice(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse_choice


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean ({'/'.join(_TRUE_WORDS)} or {'/'.join(_FALSE_WORDS)})")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number greater than 0") from None
    if value < 1:
        raise ValueError("expected a whole number greater than 0")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number greater than 0") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("expected a number greater than 0")
    return value


def _non_negative_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of 0 or more") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a number of 0 or more")
    return value


def _percent(raw: str) -> float | None:
    """The number before a trailing ``%``, a share of the builder's (0-100), or None."""
    value = raw.strip()
    if not value.endswith("%"):
        return None
    try:
        percent = float(value[:-1])
    except ValueError:
        raise ValueError("expected a percentage such as 75%") from None
    if not math.isfinite(percent) or not 0 < percent <= 100:
        raise ValueError("expected a percentage greater than 0 and at most 100")
    return percent


def _memory(raw: str) -> int:
    """a size, or a percentage of the builder's memory"""
    percent = _percent(raw)
    if percent is None:
        return parse_size(raw)
    return int(_host_memory() * percent / 100)


def _cpus(raw: str) -> float:
    """a number of CPUs, or a percentage of the builder's"""
    percent = _percent(raw)
    if percent is None:
        return _positive_float(raw)
    return round(_host_cpus() * percent / 100, 2) or 0.01


def parse_size(raw: str) -> int:
    """A byte count: a whole number with an optional binary unit (``512M``, ``4G``, ``4GiB``)."""
    match = _SIZE_RE.fullmatch(raw.strip())
    if match is None:
        raise ValueError("expected a size in bytes, optionally with a unit K, M, G or T (binary)")
    value = int(match.group("number")) * _SIZE_UNITS[match.group("unit").lower()]
    if value < 1:
        raise ValueError("expected a size greater than 0")
    return value


def _socket(raw: str) -> str:
    value = raw.strip()
    path = value[len("unix://") :] if value.startswith("unix://") else value
    if not path.startswith("/"):
        raise ValueError("expected an absolute socket path or a unix:// URL")
    return value


def _abs_path(raw: str) -> str:
    value = raw.strip()
    if not os.path.isabs(value):
        raise ValueError("expected an absolute path")
    return os.path.normpath(value)


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("expected an http:// or https:// URL")
    return value


def _worker_id(raw: str) -> str:
    value = raw.strip()
    if not _WORKER_ID_RE.fullmatch(value):
        raise ValueError(
            "expected 1-128 characters of letters, digits and . _ @ : - (starting with a"
            " letter or digit)"
        )
    return value


# An image reference as podman parses it (containers/image's docker reference grammar):
# [domain[:port]/]path[:tag][@digest], path components lower case.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)


def check_image_reference(value: str) -> str:
    """``value`` if it is a well-formed image reference, else ValueError saying what is allowed."""
    if len(value) > 255 or not _IMAGE_RE.fullmatch(value):
        raise ValueError(
            "expected an image reference [registry[:port]/]name[:tag][@digest] (name in"
            " lower case, no spaces)"
        )
    return value


def _userns_base(raw: str) -> int:
    """a host uid with room for 65536 ids above it"""
    value = _positive_int(raw)
    if value + _USERNS_SIZE > 2**32 - 1:
        raise ValueError(f"expected a host uid up to {2**32 - 1 - _USERNS_SIZE}")
    return value


def _image(raw: str) -> str:
    return check_image_reference(raw.strip())


def _registry_of(reference: str) -> str | None:
    """The registry a reference names (its first component when that is a host, as podman
    reads it), or None for a short name that podman resolves through registries.conf."""
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def _allow_entry(raw: str) -> str:
    """One image_allowlist entry: a registry, ``registry/namespace/``, a repository or an
    exact reference; always naming its registry."""
    entry = raw.strip()
    if re.fullmatch(rf"{_DOMAIN}", entry) and (
        "." in entry or ":" in entry or entry == "localhost"
    ):
        return entry
    body = entry[:-1] if entry.endswith("/") else entry
    try:
        check_image_reference(body)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not a registry, registry/namespace/, repository or image reference"
        ) from None
    if _registry_of(body) is None:
        raise ValueError(f"{entry!r} names no registry (e.g. registry.example.com/{body})")
    return entry


def _allowlist(raw: str) -> tuple[str, ...]:
    """registries or references, separated by spaces or commas"""
    entries = tuple(_allow_entry(e) for e in re.split(r"[\s,]+", raw.strip()) if e)
    if not entries:
        raise ValueError("expected registries or image references")
    return entries


def image_allowed(image: str, allowlist: tuple[str, ...] | list[str]) -> bool:
    """Whether ``image`` is covered by an entry of ``allowlist``: a registry (every image on
    it), ``registry/namespace/`` (every image under it), a repository (any of its tags and
    digests) or an exact reference. A short name (no registry) never is: podman would
    resolve it through registries.conf to whichever registry answers first."""
    registry = _registry_of(image)
    if registry is None:
        return False
    repository = re.sub(r":[^/:]*$", "", image.partition("@")[0])
    for entry in allowlist:
        if entry == registry or entry == image or entry == repository:
            return True
        if entry.endswith("/") and image.startswith(entry):
            return True
    return False


_PARSERS: dict[str, Callable[[str], object]] = {
    "enabled": _bool,
    "podman_socket": _socket,
    "buildroot_mode": _choice(*BUILDROOT_MODES),
    "worker_id": _worker_id,
    "task_image": _optional(_image),
    "pull_policy": _choice(*PULL_POLICIES),
    "selinux_label": _optional(_choice(*SELINUX_LABELS)),
    "memory_limit": _optional(_memory),
    "cpus": _optional(_cpus),
    "pids_limit": _optional(_positive_int),
    "network": _choice(*NETWORK_POLICIES),
    "buildroot_topurl": _optional(_url),
    "log_dir": _optional(_abs_path),
    "log_cap_bytes": _optional(parse_size),
    "buildroot_cache": _bool,
    "buildroot_cache_max_entries": _positive_int,
    "buildroot_cache_max_bytes": parse_size,
    "buildroot_cache_dir": _optional(_abs_path),
    "createrepo_timeout": _optional(_positive_int),
    "image_external_repo": _optional(_text),
    "reap_on_start": _bool,
    "userns_base": _optional(_userns_base),
    "provenance_signing_key": _optional(_abs_path),
    "keep_failed_root": _non_negative_float,
    "state_dir": _abs_path,
    "image_allowlist": _optional(_allowlist),
    "podman_timeout": _positive_int,
    "dnf_timeout": _positive_int,
    "source_cmd_network": _bool,
}

assert set(_PARSERS) == {f.name for f in dataclasses.fields(AdjutantConfig)}


def _parse(key: str, raw: str, origin: str) -> object:
    try:
        return _PARSERS[key](raw)
    except ValueError as exc:
        raise ConfigError(f"{origin}: invalid value for {key}: {raw!r}: {exc}") from None


def _read_file(path: str) -> dict[str, str]:
    """The ``[adjutant]`` section as raw strings; a missing file is an empty section."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0no-defaults")
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    extra = [name for name in parser.sections() if name != SECTION]
    if extra:
        raise ConfigError(f"{path}: unknown section [{extra[0]}]: only [{SECTION}] is allowed")
    if not parser.has_section(SECTION):
        return {}
    values = dict(parser.items(SECTION))
    for key in values:
        if key not in _PARSERS:
            raise ConfigError(
                f"{path}: unknown key {key!r} in [{SECTION}]; known keys: {', '.join(_PARSERS)}"
            )
    return values


def load_config(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> AdjutantConfig:
    """Read the config file and the environment overrides into an :class:`AdjutantConfig`.

    ``path`` defaults to ``$KOJI_ADJUTANT_CONFIG`` or :data:`DEFAULT_CONFIG_PATH`; a missing
    file means all defaults. ``environ`` defaults to ``os.environ``; a set
    ``KOJI_ADJUTANT_<KEY>`` wins over the file. Raises :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    values: dict[str, object] = {}
    for key, raw in _read_file(path).items():
        values[key] = _parse(key, raw, f"{path} [{SECTION}]")
    for key in _PARSERS:
        name = ENV_PREFIX + key.upper()
        if name in env:
            values[key] = _parse(key, env[name], f"environment {name}")
    config = AdjutantConfig(**values)  # type: ignore[arg-type]
    if config.task_image is not None and config.image_allowlist is not None:
        if not image_allowed(config.task_image, config.image_allowlist):
            raise ConfigError(
                f"{path} [{SECTION}]: task_image = {config.task_image!r} is not in"
                f" image_allowlist ({' '.join(config.image_allowlist)})"
            )
    if config.image_external_repo is not None and config.buildroot_mode != "image":
        raise ConfigError(
            f"{path} [{SECTION}]: image_external_repo = {config.image_external_repo!r} applies"
            " to buildroot_mode = image only: in tag mode every package of a buildroot comes"
            " from the tag's repo"
        )
    return config
