"""Rows of the fake hub's in-memory "database" and what tests can inspect.

Each record mirrors the columns the real hub returns for the same object, so
`as_info()` yields the dict shape a koji client receives from the real call.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import koji


def _timestamp(ts: float) -> str:
    """Format a time the way the hub's marshaller sends datetimes (isoformat(' '))."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(" ")


@dataclass
class User:
    id: int
    name: str
    usertype: int = koji.USERTYPES["NORMAL"]
    status: int = koji.USER_STATUS["NORMAL"]

    def as_info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "usertype": self.usertype,
            "status": self.status,
            "krb_principals": [],
        }


@dataclass
class Session:
    """One row of the hub's `sessions` table."""

    id: int
    key: str
    user_id: int
    authtype: int
    master: int | None = None
    exclusive: bool = False
    closed: bool = False
    callnum: int | None = None

    def as_sinfo(self) -> dict[str, Any]:
        # 'header-auth' tells the client (>= 1.30) to send Koji-Session-* headers.
        return {"session-id": self.id, "session-key": self.key, "header-auth": True}


@dataclass
class Host:
    id: int
    user_id: int
    name: str
    arches: str
    capacity: float = 2.0
    enabled: bool = True
    ready: bool = True
    task_load: float = 0.0
    description: str | None = None
    comment: str | None = None
    update_ts: float = field(default_factory=time.time)

    def as_info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "update_ts": self.update_ts,
            "ready": self.ready,
            "task_load": self.task_load,
            "arches": self.arches,
            "capacity": self.capacity,
            "description": self.description,
            "comment": self.comment,
            "enabled": self.enabled,
        }


@dataclass
class ExternalRepo:
    id: int
    name: str
    url: str
    merge_mode: str = "koji"
    arches: str | None = None


@dataclass
class Tag:
    id: int
    name: str
    arches: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    locked: bool = False
    maven_support: bool = False
    maven_include_all: bool = False
    # (external repo id, priority), highest priority first
    external_repos: list[tuple[int, int]] = field(default_factory=list)
    # ids of internal rpms tagged here (what repoInit writes into pkglist/rpmlist.jsonl)
    rpm_ids: list[int] = field(default_factory=list)

    def as_info(self, event: int | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "perm_id": None,
            "perm": None,
            "arches": self.arches,
            "locked": self.locked,
            "maven_support": self.maven_support,
            "maven_include_all": self.maven_include_all,
            "extra": dict(self.extra),
        }
        if event is not None:
            info["query_event"] = event
        return info


@dataclass
class Repo:
    id: int
    tag_id: int
    state: int
    create_event: int
    task_id: int | None = None
    dist: bool = False
    opts: dict[str, bool] = field(
        default_factory=lambda: {
            "src": False,
            "debuginfo": False,
            "separate_src": False,
            "maven": False,
        }
    )
    creation_ts: float = field(default_factory=time.time)
    state_ts: float = field(default_factory=time.time)

    def as_info(self, tag_name: str, task_state: int | None) -> dict[str, Any]:
        """The '**' field set repoInfo returns (kojihub.repos.RepoQuery)."""
        return {
            "id": self.id,
            "tag_id": self.tag_id,
            "tag_name": tag_name,
            "state": self.state,
            "dist": self.dist,
            "create_event": self.create_event,
            "create_ts": self.creation_ts,
            "begin_event": self.create_event,
            "begin_ts": self.creation_ts,
            "end_event": None,
            "end_ts": None,
            "creation_time": _timestamp(self.creation_ts),
            "creation_ts": self.creation_ts,
            "state_time": _timestamp(self.state_ts),
            "state_ts": self.state_ts,
            "task_id": self.task_id,
            "task_state": task_state,
            "opts": dict(self.opts),
            "custom_opts": {},
        }


@dataclass
class Rpm:
    """One `rpminfo` row. external_repo_id 0 is koji's built-in 'INTERNAL' repo."""

    id: int
    name: str
    version: str
    release: str
    epoch: int | None
    arch: str
    payloadhash: str
    size: int
    buildtime: int
    external_repo_id: int = 0
    build_id: int | None = None
    # source package name of the build this rpm belongs to (for the packages/ path)
    build_name: str | None = None
    draft: bool = False

    @property
    def nvra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"

    def as_info(self, external_repo_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "build_id": self.build_id,
            "buildroot_id": None,
            "name": self.name,
            "version": self.version,
            "release": self.release,
            "epoch": self.epoch,
            "arch": self.arch,
            "draft": self.draft,
            "external_repo_id": self.external_repo_id,
            "external_repo_name": external_repo_name,
            "payloadhash": self.payloadhash,
            "size": self.size,
            "buildtime": self.buildtime,
            "metadata_only": False,
            "extra": None,
        }


@dataclass
class Task:
    id: int
    method: str
    request: list[Any]
    arch: str = "noarch"
    state: int = koji.TASK_STATES["FREE"]
    host_id: int | None = None
    parent: int | None = None
    label: str | None = None
    owner: int = 1
    channel_id: int = 1
    priority: int = 20
    weight: float = 1.0
    create_ts: float = field(default_factory=time.time)
    # filled by host.closeTask / host.failTask: the raw XML and its decoded value
    result_xml: str | None = None
    result: Any = None
    fault: tuple[int, str] | None = None

    def as_info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "create_time": _timestamp(self.create_ts),
            "create_ts": self.create_ts,
            "start_time": None,
            "start_ts": None,
            "completion_time": None,
            "completion_ts": None,
            "channel_id": self.channel_id,
            "host_id": self.host_id,
            "parent": self.parent,
            "label": self.label,
            "waiting": None,
            "awaited": None,
            "owner": self.owner,
            "method": self.method,
            "arch": self.arch,
            "priority": self.priority,
            "weight": self.weight,
        }


@dataclass
class ListingEntry:
    """One `buildroot_listing` row."""

    rpm_id: int
    is_update: bool


@dataclass
class Buildroot:
    """A standard buildroot, plus the history tests assert on."""

    id: int
    host_id: int
    repo_id: int
    task_id: int
    arch: str
    state: int = koji.BR_STATES["INIT"]
    create_event: int = 0
    retire_event: int | None = None
    # every state the hub accepted, in order, starting with INIT
    state_history: list[str] = field(default_factory=lambda: ["INIT"])
    listing: list[ListingEntry] = field(default_factory=list)


@dataclass
class CallRecord:
    """One hub call as the fake received it (multiCall members are recorded one by one)."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    session_id: int | None
    in_multicall: bool = False
    fault: tuple[int, str] | None = None


@dataclass
class UploadChunk:
    """One upload request that wrote to a file (rawUpload POST or uploadFile call)."""

    method: str  # 'rawUpload' or 'uploadFile'
    offset: int  # as sent; -1 is uploadFile's "final chunk" marker
    size: int
    overwrite: bool
    size_before: int  # file length before this request

    @property
    def leaves_gap(self) -> bool:
        """True if the chunk starts past the end of the file (the hub zero-fills silently)."""
        return self.offset > self.size_before
