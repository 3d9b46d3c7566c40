"""What the subcommands share: reading the builder's configuration and connecting to Podman."""

from __future__ import annotations

import argparse
import http.client
import json
import socket as _socket
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from koji_adjutant import labels
from koji_adjutant.config import AdjutantConfig, ConfigError, load_config

__all__ = [
    "LABEL_CACHE",
    "LABEL_CACHE_KEY",
    "LABEL_ROLE",
    "LABEL_TASK",
    "LABEL_WORKER",
    "PodmanAPI",
    "PodmanAPIError",
    "add_config_argument",
    "builder_config",
    "manager",
    "parse_duration",
]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="adjutant.conf to read (default: $KOJI_ADJUTANT_CONFIG or the plugin's)"
    )


def builder_config(args: argparse.Namespace) -> AdjutantConfig | None:
    """The configuration, or None after printing why it is invalid."""
    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def manager(config: AdjutantConfig) -> Any:
    import koji_adjutant

    return koji_adjutant.PodmanManager(config.podman_socket, worker_id=config.worker_id)


# -- Podman's REST API over its unix socket, for what the extension does not offer (the
#    service's info, container stats, image lists and removal). Read-mostly and synchronous:
#    one connection per request, so a command or the status server never holds a socket open.

#: Podman's libpod API, as the Rust core addresses it (any podman 4.x or 5.x answers it).
API_PREFIX = "/v4.0.0/libpod"

#: Labels the core puts on containers and cache images (src/core/spec.rs, buildroot/cache.rs).
LABEL_TASK = labels.TASK
LABEL_WORKER = labels.WORKER
LABEL_ROLE = labels.ROLE
LABEL_CACHE = labels.CACHE
LABEL_CACHE_KEY = labels.CACHE_KEY


class PodmanAPIError(Exception):
    """Podman's API answered with an error, or could not be reached (``status`` is None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def socket_path(socket: str) -> str:
    """The filesystem path of a podman socket given as a path or a ``unix://`` URL."""
    return socket[len("unix://") :] if socket.startswith("unix://") else socket


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class PodmanAPI:
    """A small client of Podman's libpod REST API on a unix socket."""

    def __init__(self, socket: str, *, timeout: float = 30.0) -> None:
        self.socket = socket
        self.path = socket_path(socket)
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """``(status, body)`` of one request; PodmanAPIError when the service cannot be reached."""
        url = API_PREFIX + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        conn = _UnixConnection(self.path, self.timeout)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise PodmanAPIError(f"cannot reach podman at {self.socket}: {exc}") from None
        finally:
            conn.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
    ) -> Any:
        """The decoded JSON answer; PodmanAPIError with podman's message on an error status."""
        data = None if body is None else json.dumps(body).encode()
        status, raw = self.request(method, path, query=query, body=data)
        if status >= 400:
            raise PodmanAPIError(f"{method} {path}: {_podman_message(raw)}", status)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise PodmanAPIError(f"{method} {path}: not JSON: {raw[:200]!r}", status) from None

    def info(self) -> dict[str, Any]:
        """``/libpod/info``: the host (runtime, cgroups, security) and the store (graphRoot)."""
        info: dict[str, Any] = self.call("GET", "/info")
        return info

    def containers(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every container (any state) carrying all of ``labels``."""
        query: list[tuple[str, str]] = [("all", "true")]
        if labels:
            filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
            query.append(("filters", json.dumps(filters)))
        return list(self.call("GET", "/containers/json", query=query) or [])

    def images(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Local images carrying all of ``labels``."""
        query: list[tuple[str, str]] = []
        if labels:
            filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
            query.append(("filters", json.dumps(filters)))
        return list(self.call("GET", "/images/json", query=query) or [])

    def stats(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One-shot stats of the containers ``ids`` by id (those podman has no stats for are
        left out: stopped containers report zeros, removed ones nothing)."""
        if not ids:
            return {}
        query = [("stream", "false"), *(("containers", i) for i in ids)]
        answer = self.call("GET", "/containers/stats", query=query) or {}
        if answer.get("Error") is not None and len(ids) > 1:
            # one of them went away between the listing and now: ask for each on its own
            found: dict[str, dict[str, Any]] = {}
            for container_id in ids:
                found.update(self.stats([container_id]))
            return found
        return {s["ContainerID"]: s for s in answer.get("Stats") or [] if "ContainerID" in s}

    def remove_image(self, image_id: str) -> tuple[bool, str]:
        """Removes an image unless something uses it: ``(removed, podman's message)``."""
        status, raw = self.request("DELETE", f"/images/{urllib.parse.quote(image_id, safe='')}")
        if status < 300 or status == 404:
            return True, ""
        if status == 409:
            return False, _podman_message(raw)
        raise PodmanAPIError(f"remove image {image_id[:12]}: {_podman_message(raw)}", status)


def _podman_message(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:500] or "(no message)"
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("cause") or answer)
    return str(answer)


def container_name(container: Mapping[str, Any]) -> str:
    names = container.get("Names") or []
    return str(names[0]) if names else ""


def labels_of(item: Mapping[str, Any]) -> dict[str, str]:
    return dict(item.get("Labels") or {})


def parse_duration(raw: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``; ValueError otherwise."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = raw.strip().lower()
    number = text.rstrip("smhdw")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in units:
        raise ValueError(f"{raw!r} is not a duration (a whole number with s, m, h, d or w)")
    return int(number) * units[unit]


def human_bytes(count: float | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"
