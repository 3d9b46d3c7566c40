"""The fake hub's state and its exported calls, with kojihub's rules.

`Hub` owns an in-memory "database" (`Db`) and the upload area. Every exported
call has the real hub's Python signature, so the dispatcher's argument binding
rejects the same calls kojihub rejects (koji.ParameterError). Each call runs
against a snapshot of the database that is thrown away if the call faults,
which mirrors the hub's transaction rollback (uploaded files, like on the real
hub, are not rolled back).

See server.py's docstring for the call sequences this models.
"""

from __future__ import annotations

import copy
import json
import os
import random
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import koji
import koji.xmlrpcplus

from .records import (
    Buildroot,
    CallRecord,
    ExternalRepo,
    Host,
    ListingEntry,
    Repo,
    Rpm,
    Session,
    Tag,
    Task,
    User,
)
from .uploads import UploadArea

# Methods the hub lets through although the user is locked by another exclusive session.
_LOCK_EXEMPT = ("exclusiveSession", "login", "logout")
# kojihub.auth.RetryWhitelist: calls that may be repeated with the same callnum.
_RETRY_WHITELIST = (
    "host.taskWait",
    "host.taskUnwait",
    "host.taskSetWait",
    "host.updateHost",
    "host.setBuildRootState",
    "repoExpire",
    "repoDelete",
    "repoProblem",
)
_REPO_OPTS = ("src", "debuginfo", "separate_src", "maven")


class DatabaseError(Exception):
    """Stands for a psycopg2 error: not a koji.GenericError, so its faultCode is 1."""


class UniqueViolation(DatabaseError):
    pass


class NotNullViolation(DatabaseError):
    pass


class ForeignKeyViolation(DatabaseError):
    pass


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def exported(name: str) -> Callable[[_Handler], _Handler]:
    """Mark a Hub method as the handler of hub call `name`."""

    def mark(func: _Handler) -> _Handler:
        func.hub_name = name  # type: ignore[attr-defined]
        return func

    return mark


@dataclass
class Db:
    """Everything a faulting call must not change."""

    users: dict[int, User] = field(default_factory=dict)
    sessions: dict[int, Session] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)
    tags: dict[int, Tag] = field(default_factory=dict)
    external_repos: dict[int, ExternalRepo] = field(default_factory=dict)
    repos: dict[int, Repo] = field(default_factory=dict)
    rpms: dict[int, Rpm] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    buildroots: dict[int, Buildroot] = field(default_factory=dict)
    build_durations: dict[str, float] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    event: int = 1000

    def nextval(self, seq: str) -> int:
        value = self.sequences.get(seq, 0) + 1
        self.sequences[seq] = value
        return value

    def new_event(self) -> int:
        self.event += 1
        return self.event


@dataclass
class CallContext:
    """What kojihub keeps in `context` for one request."""

    method: str | None
    session: Session | None
    lockerror: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.session is not None


class Hub:
    def __init__(self, topdir: str, hub_version: str, strict_task_paths: bool = True) -> None:
        self.topdir = topdir
        self.hub_version = hub_version
        self.pathinfo = koji.PathInfo(topdir=topdir)
        self.uploads = UploadArea(os.path.join(topdir, "work"), strict_task_paths)
        self.db = Db()
        # koji's schema ships external repo 0, 'INTERNAL', for rpms built in koji
        self.db.external_repos[0] = ExternalRepo(0, "INTERNAL", "")
        self.calls: list[CallRecord] = []
        self.ctx = CallContext(None, None)
        self.handlers: dict[str, Callable[..., Any]] = {}
        for attr in dir(self):
            func = getattr(self, attr)
            name = getattr(func, "hub_name", None)
            if name:
                self.handlers[name] = func

    # ======================================================================
    # request plumbing (used by the server)
    # ======================================================================

    def open_session(
        self, session_id: int | None, key: str | None, callnum: int | None, method: str | None
    ) -> None:
        """kojihub.auth.Session.__init__: validate the caller's session, if any."""
        self.ctx = CallContext(method, None)
        if session_id is None:
            return
        sess = self.db.sessions.get(session_id)
        if sess is None or sess.key != key or sess.closed:
            raise koji.AuthError("Invalid session or bad credentials")
        if callnum is not None:
            last = sess.callnum
            if last is not None:
                if last > callnum:
                    raise koji.SequenceError(f"{last} > {callnum} (session {sess.id})")
                if last == callnum and method not in _RETRY_WHITELIST:
                    raise koji.RetryError(
                        f"unable to retry call {callnum} (method {method}) for session {sess.id}"
                    )
            sess.callnum = callnum
        if not self._is_exclusive(sess):
            for other in self.db.sessions.values():
                if other.user_id == sess.user_id and other.exclusive and not other.closed:
                    self.ctx.lockerror = "User locked by another session"
        self.ctx.session = sess

    def check_lock(self) -> None:
        """kojixmlrpc.check_session: a lock error only fails calls that need the lock."""
        if self.ctx.lockerror and self.ctx.method not in _LOCK_EXEMPT:
            raise koji.AuthLockError(self.ctx.lockerror)

    def snapshot(self) -> Db:
        return copy.deepcopy(self.db)

    def restore(self, saved: Db) -> None:
        self.db = saved
        if self.ctx.session is not None:
            self.ctx.session = self.db.sessions.get(self.ctx.session.id)

    # ======================================================================
    # loading state (Python API for tests; see HubFake for the public face)
    # ======================================================================

    def add_user(self, name: str, usertype: int = koji.USERTYPES["NORMAL"]) -> User:
        for user in self.db.users.values():
            if user.name == name:
                return user
        user = User(self.db.nextval("users"), name, usertype)
        self.db.users[user.id] = user
        return user

    def add_host(self, name: str, arches: str, capacity: float = 2.0) -> Host:
        user = self.add_user(name, koji.USERTYPES["HOST"])
        host = Host(self.db.nextval("host"), user.id, name, arches, capacity)
        self.db.hosts[host.id] = host
        return host

    def add_external_repo(
        self, name: str, url: str, merge_mode: str = "koji", arches: str | None = None
    ) -> ExternalRepo:
        if not url.endswith("/"):
            url += "/"
        erepo = ExternalRepo(self.db.nextval("external_repo"), name, url, merge_mode, arches)
        self.db.external_repos[erepo.id] = erepo
        return erepo

    def add_tag(
        self,
        name: str,
        arches: str | None,
        extra: dict[str, Any] | None = None,
        external_repos: Iterable[str] = (),
    ) -> Tag:
        tag = Tag(self.db.nextval("tag"), name, arches, dict(extra or {}))
        for priority, ename in enumerate(external_repos):
            erepo = self._lookup_external_repo(ename)
            tag.external_repos.append((erepo.id, (priority + 1) * 5))
        self.db.tags[tag.id] = tag
        return tag

    def add_rpm(
        self,
        name: str,
        version: str,
        release: str,
        arch: str,
        epoch: int | None = None,
        payloadhash: str | None = None,
        size: int = 1024,
        buildtime: int = 1700000000,
        external_repo: str | None = None,
        build_name: str | None = None,
        tags: Iterable[str] = (),
    ) -> Rpm:
        ext_id = self._lookup_external_repo(external_repo).id if external_repo else 0
        if payloadhash is None:
            payloadhash = f"{random.getrandbits(128):032x}"
        rpm = Rpm(
            self.db.nextval("rpminfo"),
            name,
            version,
            release,
            epoch,
            arch,
            payloadhash,
            size,
            buildtime,
            external_repo_id=ext_id,
            build_name=build_name or name,
        )
        if not ext_id:
            rpm.build_id = self.db.nextval("build")
        self.db.rpms[rpm.id] = rpm
        for tag_name in tags:
            self._lookup_tag(tag_name).rpm_ids.append(rpm.id)
        return rpm

    def add_repo(
        self,
        tag: str,
        state: int = koji.REPO_READY,
        write_layout: bool = True,
        opts: dict[str, bool] | None = None,
    ) -> Repo:
        taginfo = self._lookup_tag(tag)
        repo = Repo(self.db.nextval("repo"), taginfo.id, state, self.db.new_event())
        if opts:
            repo.opts.update(opts)
        self.db.repos[repo.id] = repo
        if write_layout:
            self._write_repo_layout(repo, taginfo)
        return repo

    def add_task(
        self,
        method: str,
        request: list[Any],
        arch: str = "noarch",
        host: str | None = None,
        state: str = "OPEN",
        parent: int | None = None,
        label: str | None = None,
        task_id: int | None = None,
    ) -> Task:
        if task_id is None:
            task_id = self.db.nextval("task")
        host_id = self._lookup_host(host).id if host else None
        task = Task(
            task_id,
            method,
            list(request),
            arch=arch,
            state=koji.TASK_STATES[state],
            host_id=host_id,
            parent=parent,
            label=label,
        )
        self.db.tasks[task.id] = task
        return task

    # ======================================================================
    # auth (kojihub.auth)
    # ======================================================================

    def _create_session(self, user_id: int, authtype: int, master: int | None) -> Session:
        alnum = string.ascii_letters + string.digits
        key = "{}-{}".format(user_id, "".join(random.choice(alnum) for _ in range(19)))
        sess = Session(self.db.nextval("sessions"), key, user_id, authtype, master)
        self.db.sessions[sess.id] = sess
        return sess

    def _is_exclusive(self, sess: Session) -> bool:
        if sess.exclusive:
            return True
        master = self.db.sessions.get(sess.master) if sess.master is not None else None
        return bool(master and master.exclusive and not master.closed)

    def _assert_login(self) -> Session:
        if self.ctx.session is None:
            raise koji.ActionNotAllowed("you must be logged in for this operation")
        return self.ctx.session

    @exported("login")
    def login(
        self,
        user: str,
        password: str,
        opts: dict[str, Any] | None = None,
        renew: bool = False,
        exclusive: bool = False,
    ) -> dict[str, Any]:
        """Password login; any user name with a non-empty password is accepted."""
        if not isinstance(password, str) or len(password) == 0:
            raise koji.AuthError("invalid username or password")
        if self.ctx.session is not None and not renew:
            raise koji.AuthError("Already logged in")
        account = self.add_user(user)
        sess = self._create_session(account.id, koji.AUTHTYPES["NORMAL"], None)
        if exclusive:
            self._make_exclusive(sess, force=False)
        return sess.as_sinfo()

    @exported("logout")
    def logout(self, session_id: int | None = None) -> None:
        sess = self.ctx.session
        if sess is None:
            raise koji.AuthError("Not logged in")
        target = session_id or sess.id
        other_sess = self.db.sessions.get(target)
        if other_sess is None or other_sess.user_id != sess.user_id:
            raise koji.ActionNotAllowed("only admins or owner may logout other session")
        for other in self.db.sessions.values():
            if other.id == target or other.master == target:
                other.closed = True
                other.exclusive = False

    @exported("logoutChild")
    def logoutChild(self, session_id: int) -> None:
        sess = self._assert_logged_in_auth()
        child = self.db.sessions.get(session_id)
        if child is not None and child.master == sess.id:
            child.closed = True
            child.exclusive = False

    @exported("subsession")
    def subsession(self) -> dict[str, Any]:
        sess = self._assert_logged_in_auth()
        master = sess.master if sess.master is not None else sess.id
        return self._create_session(sess.user_id, sess.authtype, master).as_sinfo()

    @exported("exclusiveSession")
    def exclusiveSession(self, force: bool = False) -> None:
        self._make_exclusive(self._assert_logged_in_auth(), force)

    @exported("sharedSession")
    def sharedSession(self) -> None:
        sess = self._assert_logged_in_auth()
        if sess.master is not None:
            raise koji.GenericError("subsessions cannot become shared")
        if not sess.exclusive:
            raise koji.GenericError("session is not exclusive")
        sess.exclusive = False

    def _assert_logged_in_auth(self) -> Session:
        if self.ctx.session is None:
            raise koji.AuthError("Not logged in")
        return self.ctx.session

    def _make_exclusive(self, sess: Session, force: bool) -> None:
        if sess.master is not None:
            raise koji.GenericError("subsessions cannot become exclusive")
        if sess.exclusive:
            raise koji.GenericError("session is already exclusive")
        for other in self.db.sessions.values():
            if other.user_id == sess.user_id and other.exclusive and not other.closed:
                if not force:
                    raise koji.AuthLockError("Cannot get exclusive session")
                other.exclusive = False
                other.closed = True
        sess.exclusive = True
        self.ctx.lockerror = None

    # ======================================================================
    # plain calls
    # ======================================================================

    @exported("echo")
    def echo(self, *args: Any) -> tuple[Any, ...]:
        return args

    @exported("hello")
    def hello(self, *args: Any) -> str:
        return "Hello World"

    @exported("getKojiVersion")
    def getKojiVersion(self) -> str:
        return self.hub_version

    @exported("getAPIVersion")
    def getAPIVersion(self) -> int:
        return int(koji.API_VERSION)

    @exported("getLoggedInUser")
    def getLoggedInUser(self) -> dict[str, Any] | None:
        if self.ctx.session is None:
            return None
        return self.db.users[self.ctx.session.user_id].as_info()

    @exported("getLastEvent")
    def getLastEvent(self, before: float | None = None, strict: bool = True) -> dict[str, Any]:
        return {"id": self.db.event, "ts": time.time()}

    # -- tags, repos, rpms, hosts, tasks (read side) --------------------------

    @exported("getTag")
    def getTag(
        self, tagInfo: Any, strict: bool = False, event: int | None = None, blocked: bool = False
    ) -> dict[str, Any] | None:
        tag = self._find_tag(tagInfo)
        if tag is None:
            if strict:
                raise koji.GenericError(f"No such tagInfo: {tagInfo!r}")
            return None
        return tag.as_info(event)

    @exported("getBuildConfig")
    def getBuildConfig(self, tag: Any, event: int | None = None) -> dict[str, Any]:
        info = self.getTag(tag, strict=True, event=event, blocked=True)
        assert info is not None
        info["config_inheritance"] = {"extra": {}, "arches": None}
        return info

    @exported("getExternalRepoList")
    def getExternalRepoList(self, tag_info: Any, event: int | None = None) -> list[dict[str, Any]]:
        tag = self._find_tag(tag_info)
        if tag is None:
            raise koji.GenericError(f"No such tagInfo: {tag_info!r}")
        out = []
        for erepo_id, priority in tag.external_repos:
            erepo = self.db.external_repos[erepo_id]
            out.append(
                {
                    "external_repo_id": erepo.id,
                    "external_repo_name": erepo.name,
                    "priority": priority,
                    "tag_id": tag.id,
                    "tag_name": tag.name,
                    "url": erepo.url,
                    "merge_mode": erepo.merge_mode,
                    "arches": erepo.arches,
                }
            )
        return out

    @exported("getExternalRepo")
    def getExternalRepo(
        self, info: Any, strict: bool = False, event: int | None = None
    ) -> dict[str, Any] | None:
        """kojihub.get_external_repo: id, name and url of one external repo (repo 0, Koji's
        own 'INTERNAL' pseudo repo, included as in kojihub's table)."""
        for erepo in self.db.external_repos.values():
            if _matches_name_or_id(info, erepo.id, erepo.name):
                return {"id": erepo.id, "name": erepo.name, "url": erepo.url}
        if strict:
            raise koji.GenericError(f"No such repo: {info}")
        return None

    @exported("repoInfo")
    def repoInfo(self, repo_id: Any, strict: bool = False) -> dict[str, Any] | None:
        repo_id = _convert(repo_id, int, none_allowed=True)
        repo = self.db.repos.get(repo_id)
        if repo is None:
            if strict:
                raise koji.GenericError("query returned no rows")
            return None
        return self._repo_info(repo)

    @exported("getRepo")
    def getRepo(
        self,
        tag: Any,
        state: int | None = None,
        event: int | None = None,
        dist: bool = False,
        min_event: int | None = None,
    ) -> dict[str, Any] | None:
        taginfo = self._find_tag(tag)
        if taginfo is None:
            raise koji.GenericError(f"No such entry in table tag: {tag}")
        if state is None and not event:
            state = koji.REPO_READY
        found = [
            r
            for r in self.db.repos.values()
            if r.tag_id == taginfo.id
            and r.dist == bool(dist)
            and (event or r.state == state)
            and (not event or r.create_event <= event)
            and (min_event is None or r.create_event >= min_event)
        ]
        if not found:
            return None
        return self._repo_info(max(found, key=lambda r: (r.creation_ts, r.id)))

    @exported("getRPM")
    def getRPM(self, rpminfo: Any, strict: bool = False, multi: bool = False) -> Any:
        return self._get_rpm(rpminfo, strict=strict, multi=multi)

    @exported("getHost")
    def getHost(
        self, hostInfo: Any, strict: bool = False, event: int | None = None
    ) -> dict[str, Any] | None:
        host = self._find_host(hostInfo)
        if host is None:
            if strict:
                raise koji.GenericError(f"Invalid hostInfo: {hostInfo}")
            return None
        return host.as_info()

    @exported("getChannel")
    def getChannel(self, channelInfo: Any, strict: bool = False) -> dict[str, Any] | None:
        """kojihub's getChannel for the one channel the fake has: ``default`` (id 1), which
        every task is in (buildSRPMFromSCM's policy data names it)."""
        if channelInfo in (1, "default"):
            return {
                "id": 1,
                "name": "default",
                "description": None,
                "enabled": True,
                "comment": None,
            }
        if strict:
            raise koji.GenericError(f"No such channel: {channelInfo}")
        return None

    @exported("getTaskInfo")
    def getTaskInfo(self, task_id: Any, request: bool = False, strict: bool = False) -> Any:
        if isinstance(task_id, (list, tuple)):
            return [self._task_info(t, request, strict) for t in task_id]
        return self._task_info(task_id, request, strict)

    @exported("getAverageBuildDuration")
    def getAverageBuildDuration(self, package: Any, age: int | None = None) -> float | None:
        return self.db.build_durations.get(str(package))

    @exported("getBuildroot")
    def getBuildroot(self, buildrootID: Any, strict: bool = False) -> dict[str, Any] | None:
        br = self.db.buildroots.get(_convert(buildrootID, int))
        if br is None:
            if strict:
                raise koji.GenericError(f"No such buildroot: {buildrootID!r}")
            return None
        repo = self.db.repos[br.repo_id]
        tag = self.db.tags[repo.tag_id]
        return {
            "id": br.id,
            "br_type": koji.BR_TYPES["STANDARD"],
            "container_type": "chroot",
            "container_arch": br.arch,
            "arch": br.arch,
            "host_id": br.host_id,
            "host_name": self.db.hosts[br.host_id].name,
            "repo_id": br.repo_id,
            "repo_state": repo.state,
            "repo_create_event_id": repo.create_event,
            "tag_id": tag.id,
            "tag_name": tag.name,
            "task_id": br.task_id,
            "state": br.state,
            "create_event_id": br.create_event,
            "retire_event_id": br.retire_event,
        }

    @exported("getBuildrootListing")
    def getBuildrootListing(self, id: int) -> list[dict[str, Any]]:
        return self.buildroot_listing(self._load_buildroot(id))

    # -- uploads ----------------------------------------------------------------

    def raw_upload(self, query: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        """kojihub.handle_upload for the octet-stream POST (ClientSession rawUpload)."""
        if self.ctx.session is None:
            raise koji.ActionNotAllowed("you must be logged-in to upload a file")
        name = query["filename"][0]
        path = query.get("filepath", [""])[0]
        verify = query.get("fileverify", [""])[0]
        overwrite = bool(query.get("overwrite", [""])[0])
        offset = int(query.get("offset", ["0"])[0])
        volume = query.get("volume", ["DEFAULT"])[0]
        self.calls.append(
            CallRecord(
                "rawUpload",
                (path, name, offset, len(body)),
                {"overwrite": overwrite, "verify": verify, "volume": volume},
                self.ctx.session.id,
            )
        )
        fn = self._upload_path(path, name, create=True, volume=volume)
        return self.uploads.raw_upload(fn, body, offset, overwrite, verify)

    @exported("uploadFile")
    def uploadFile(
        self,
        path: str,
        name: str,
        size: Any,
        md5sum: Any,
        offset: Any,
        data: str,
        volume: str | None = None,
        checksum: Any = None,
    ) -> bool:
        self._assert_login()
        if checksum is None and md5sum is not None:
            checksum = md5sum
        return self.uploads.upload_file(
            lambda: self._upload_path(path, name, create=True, volume=volume),
            size,
            checksum,
            offset,
            data,
        )

    @exported("checkUpload")
    def checkUpload(
        self,
        path: str,
        name: str,
        verify: str | None = None,
        tail: int | None = None,
        volume: str | None = None,
    ) -> dict[str, Any] | None:
        fn = self._upload_path(path, name, create=False, volume=volume)
        return self.uploads.check_upload(fn, verify, tail)

    def _upload_path(self, path: str, name: str, create: bool, volume: str | None) -> str:
        user_id = self.ctx.session.user_id if self.ctx.session else None
        return self.uploads.resolve(path, name, create, volume, user_id, self._check_task_dir)

    def _check_task_dir(self, task_id: int) -> None:
        """Only the host running an OPEN task may write to its upload directory."""
        host = self._verified_host()
        self._assert_task_host(task_id, host)

    # ======================================================================
    # host.* calls (kojihub.HostExports)
    # ======================================================================

    def _host(self) -> Host:
        """kojihub.Host(): the host whose user owns the calling session."""
        sess = self.ctx.session
        if sess is None:
            raise koji.AuthError("Not logged-in")
        for host in self.db.hosts.values():
            if host.user_id == sess.user_id:
                return host
        raise koji.AuthError(f"User {sess.user_id} is not a host")

    def _verified_host(self) -> Host:
        """Host().verify(): host calls need the exclusive session kojid takes at startup."""
        host = self._host()
        assert self.ctx.session is not None
        if not self._is_exclusive(self.ctx.session):
            raise koji.AuthError("This method requires an exclusive session")
        return host

    def _assert_task_host(self, task_id: Any, host: Host) -> Task:
        """kojihub.Task.assertHost: task must be OPEN and held by this host."""
        task = self.db.tasks.get(_convert(task_id, int))
        if task is None:
            raise koji.GenericError(f"No such task: {task_id}")
        if task.state != koji.TASK_STATES["OPEN"] or task.host_id != host.id:
            raise koji.ActionNotAllowed(f"host {host.id} does not own task {task.id}")
        return task

    @exported("host.getID")
    def host_getID(self) -> int:
        return self._verified_host().id

    @exported("host.getHost")
    def host_getHost(self) -> dict[str, Any]:
        return self._verified_host().as_info()

    @exported("host.openTask")
    def host_openTask(self, task_id: int) -> dict[str, Any] | None:
        host = self._verified_host()
        task = self.db.tasks.get(_convert(task_id, int))
        if task is None:
            raise koji.GenericError(f"No such task: {task_id}")
        free = task.state == koji.TASK_STATES["FREE"] and task.host_id is None
        assigned = task.state == koji.TASK_STATES["ASSIGNED"] and task.host_id == host.id
        if not (free or assigned):
            return None
        task.state = koji.TASK_STATES["OPEN"]
        task.host_id = host.id
        info = task.as_info()
        info["request"] = koji.xmlrpcplus.dumps(tuple(task.request), task.method)
        return info

    @exported("host.closeTask")
    def host_closeTask(self, task_id: int, response: str) -> None:
        task = self._assert_task_host(task_id, self._verified_host())
        task.result_xml = response
        (task.result,), _ = koji.xmlrpcplus.loads(response)
        task.state = koji.TASK_STATES["CLOSED"]

    @exported("host.failTask")
    def host_failTask(self, task_id: int, response: str) -> None:
        task = self._assert_task_host(task_id, self._verified_host())
        task.result_xml = response
        try:
            koji.xmlrpcplus.loads(response)
        except koji.xmlrpcplus.Fault as fault:
            task.fault = (fault.faultCode, fault.faultString)
        task.state = koji.TASK_STATES["FAILED"]

    @exported("host.setTaskWeight")
    def host_setTaskWeight(self, task_id: int, weight: Any) -> None:
        task = self._assert_task_host(task_id, self._verified_host())
        task.weight = _convert(weight, float)

    @exported("host.refuseTask")
    def host_refuseTask(self, task_id: int, soft: bool = True, msg: str = "") -> None:
        host = self._verified_host()
        task = self.db.tasks.get(_convert(task_id, int))
        if task is None:
            raise koji.GenericError("query returned no rows")
        if task.host_id != host.id:
            return
        if task.state in (koji.TASK_STATES[s] for s in ("CLOSED", "CANCELED", "FAILED")):
            raise koji.GenericError(
                f"Cannot free task {task.id}, state is {koji.TASK_STATES[task.state]}"
            )
        task.state = koji.TASK_STATES["FREE"]
        task.host_id = None

    # -- buildroots -------------------------------------------------------------

    @exported("host.newBuildRoot")
    def host_newBuildRoot(self, repo: Any, arch: Any, task_id: int | None = None) -> int:
        host = self._verified_host()
        if task_id is not None:
            self._assert_task_host(task_id, host)
        arch = koji.parse_arches(arch, strict=True, allow_none=True)
        if task_id is None:
            raise NotNullViolation(
                'null value in column "task_id" of relation "standard_buildroot" '
                "violates not-null constraint"
            )
        if repo not in self.db.repos:
            raise ForeignKeyViolation(
                'insert or update on table "standard_buildroot" violates foreign key '
                f'constraint "standard_buildroot_repo_id_fkey": Key (repo_id)=({repo}) is not '
                'present in table "repo".'
            )
        br = Buildroot(
            self.db.nextval("buildroot"),
            host.id,
            repo,
            task_id,
            arch,
            create_event=self.db.new_event(),
        )
        self.db.buildroots[br.id] = br
        return br.id

    def _owned_buildroot(self, brootid: Any, task_id: int | None) -> Buildroot:
        """The checks shared by the three host buildroot calls."""
        host = self._verified_host()
        if task_id is not None:
            self._assert_task_host(task_id, host)
        br = self._load_buildroot(brootid)
        if br.host_id != host.id:
            raise koji.ActionNotAllowed(f"Host {host.id} not owner of buildroot {br.id}")
        if task_id is not None and task_id != br.task_id:
            raise koji.ActionNotAllowed(f"Task {task_id} does not have lock on buildroot {br.id}")
        return br

    def _load_buildroot(self, brootid: Any) -> Buildroot:
        br = self.db.buildroots.get(brootid)
        if br is None:
            raise koji.GenericError(f"no buildroot with ID: {brootid}")
        return br

    @exported("host.setBuildRootState")
    def host_setBuildRootState(self, brootid: Any, state: Any, task_id: int | None = None) -> None:
        """kojihub.BuildRoot.setState: never back to INIT, nothing after EXPIRED."""
        br = self._owned_buildroot(brootid, task_id)
        if isinstance(state, str):
            state = koji.BR_STATES[state]
        if state == koji.BR_STATES["INIT"]:
            raise koji.GenericError("Cannot change buildroot state to INIT")
        if br.state == koji.BR_STATES["EXPIRED"]:
            if koji.BR_STATES[state] == "EXPIRED":
                return  # quietly ignored, and not recorded
            raise koji.GenericError(f"buildroot {br.id} is EXPIRED")
        name = koji.BR_STATES[state]  # KeyError (a fault) for an unknown state number
        if name == "EXPIRED":
            br.retire_event = self.db.new_event()
        br.state = state
        br.state_history.append(name)

    @exported("host.setBuildRootList")
    def host_setBuildRootList(
        self, brootid: Any, rpmlist: list[Any], task_id: int | None = None
    ) -> None:
        br = self._owned_buildroot(brootid, task_id)
        if br.state != koji.BR_STATES["INIT"]:
            raise koji.GenericError(f"buildroot {br.id} in wrong state {br.state}")
        self._set_list(br, rpmlist, update=False)

    @exported("host.updateBuildRootList")
    def host_updateBuildRootList(
        self, brootid: Any, rpmlist: list[Any], task_id: int | None = None
    ) -> None:
        br = self._owned_buildroot(brootid, task_id)
        if br.state != koji.BR_STATES["BUILDING"]:
            raise koji.GenericError(f"buildroot {br.id} in wrong state {br.state}")
        self._set_list(br, rpmlist, update=True)

    def _set_list(self, br: Buildroot, rpmlist: list[Any], update: bool) -> None:
        """kojihub.BuildRoot._setList: every entry must resolve to a known rpm."""
        current = {e.rpm_id for e in br.listing}
        rpm_ids = []
        for an_rpm in rpmlist:
            location = an_rpm.get("location")
            if location:
                rpm_id = self._add_external_rpm(an_rpm, location)
            else:
                found = self._get_rpm(an_rpm, strict=True)
                rpm_id = found["id"]
            if update and rpm_id in current:
                continue
            rpm_ids.append(rpm_id)
        rpm_ids.sort()
        for i, rpm_id in enumerate(rpm_ids):
            if rpm_id in current or (i and rpm_ids[i - 1] == rpm_id):
                raise UniqueViolation(
                    'duplicate key value violates unique constraint "buildroot_listing_'
                    'buildroot_id_rpm_id_key": Key (buildroot_id, rpm_id)='
                    f"({br.id}, {rpm_id}) already exists."
                )
        br.listing.extend(ListingEntry(rpm_id, update) for rpm_id in rpm_ids)

    def buildroot_listing(self, br: Buildroot) -> list[dict[str, Any]]:
        out = []
        for entry in br.listing:
            rpm = self.db.rpms[entry.rpm_id]
            out.append(
                {
                    "rpm_id": rpm.id,
                    "is_update": entry.is_update,
                    "name": rpm.name,
                    "version": rpm.version,
                    "release": rpm.release,
                    "epoch": rpm.epoch,
                    "arch": rpm.arch,
                    "build_id": rpm.build_id,
                    "draft": rpm.draft,
                    "external_repo_id": rpm.external_repo_id,
                    "external_repo_name": self.db.external_repos[rpm.external_repo_id].name,
                }
            )
        return out

    # -- repos -------------------------------------------------------------------

    @exported("host.repoInit")
    def host_repoInit(
        self,
        tag: Any,
        task_id: int | None = None,
        event: int | None = None,
        opts: dict[str, Any] | None = None,
    ) -> list[int]:
        self._verified_host()
        task_id = _convert(task_id, int, none_allowed=True)
        event = _convert(event, int, none_allowed=True)
        taginfo = self._find_tag(tag)
        if taginfo is None:
            raise koji.GenericError(f"No such tagInfo: {tag!r}")
        repo_opts = {k: False for k in _REPO_OPTS}
        repo_opts.update(taginfo.extra.get("repo.opts", {}))
        for key, value in (opts or {}).items():
            if key not in repo_opts:
                raise koji.ParameterError(f"Invalid repo option: {key}")
            repo_opts[key] = bool(value)
        if repo_opts["maven"]:
            raise koji.GenericError("Maven support not enabled")
        event_id = self.db.new_event() if event is None else event
        repo = Repo(
            self.db.nextval("repo"),
            taginfo.id,
            koji.REPO_INIT,
            event_id,
            task_id=task_id,
            opts=repo_opts,
        )
        self.db.repos[repo.id] = repo
        self._write_repo_layout(repo, taginfo)
        return [repo.id, event_id]

    @exported("host.repoDone")
    def host_repoDone(
        self,
        repo_id: Any,
        data: Any,
        expire: bool = False,
        repo_json_updates: dict[str, Any] | None = None,
    ) -> None:
        """Move each arch's uploaded repodata into the repo and mark it READY."""
        self._verified_host()
        info = self.repoInfo(repo_id, strict=True)
        assert info is not None
        if not isinstance(data, dict):
            raise koji.ParameterError(
                f"Invalid type for value '{data}': {type(data)}, expected type dict"
            )
        if info["state"] != koji.REPO_INIT:
            raise koji.GenericError("Repo {id} not in INIT state (got {state})".format(**info))
        repodir = self.pathinfo.repo(info["id"], info["tag_name"])
        if repo_json_updates:
            repo_json = koji.load_json(f"{repodir}/repo.json")
            repo_json.update(repo_json_updates)
            koji.dump_json(f"{repodir}/repo.json", repo_json, indent=2)
        if not info["dist"]:
            for arch, (uploadpath, files) in data.items():
                archdir = f"{repodir}/{koji.canonArch(arch)}"
                if not os.path.isdir(archdir):
                    raise koji.GenericError(f"Repo arch directory missing: {archdir}")
                datadir = f"{archdir}/repodata"
                koji.ensuredir(datadir)
                for fn in files:
                    src = f"{self.uploads.workdir}/{uploadpath}/{fn}"
                    dst = "{}/{}".format(archdir if fn.endswith("pkglist") else datadir, fn)
                    if not os.path.exists(src):
                        raise koji.GenericError(f"uploaded file missing: {src}")
                    os.rename(src, dst)
        repo = self.db.repos[info["id"]]
        repo.state = koji.REPO_EXPIRED if expire else koji.REPO_READY
        repo.state_ts = time.time()

    def _write_repo_layout(self, repo: Repo, tag: Tag) -> None:
        """What kojihub.repo_init writes under repos/<tag>/<id>/ for kojid to read."""
        repodir = self.pathinfo.repo(repo.id, tag.name)
        os.makedirs(repodir)
        koji.ensuredir(os.path.join(repodir, "groups"))
        with open(os.path.join(repodir, "groups", "comps.xml"), "w", encoding="utf-8") as fo:
            fo.write(koji.generate_comps([], expand_groups=True))
        opts = repo.opts
        with open(os.path.join(repodir, "repo.json"), "w", encoding="utf-8") as fo:
            json.dump(
                {
                    "id": repo.id,
                    "tag": tag.name,
                    "tag_id": tag.id,
                    "task_id": repo.task_id,
                    "event_id": repo.create_event,
                    "opts": opts,
                    "custom_opts": {},
                    "with_src": opts["src"],
                    "with_separate_src": opts["separate_src"],
                    "with_debuginfo": opts["debuginfo"],
                },
                fo,
                indent=2,
            )
        arches = ["src"] if opts["separate_src"] else []
        for arch in (tag.arches or "").split():
            arch = koji.canonArch(arch)
            if arch not in ("src", "noarch") and arch not in arches:
                arches.append(arch)
        lines: dict[str, list[tuple[str, str]]] = {a: [] for a in arches}
        for rpm_id in tag.rpm_ids:
            rpm = self.db.rpms[rpm_id]
            if not opts["debuginfo"] and koji.is_debuginfo(rpm.name):
                continue
            entry = (self.rpm_relpath(rpm, "toplink"), json.dumps(self._rpmlist_row(rpm)))
            for target in self._repo_arches_for(rpm.arch, arches, opts):
                lines[target].append(entry)
        for arch in arches:
            archdir = os.path.join(repodir, arch)
            koji.ensuredir(archdir)
            os.symlink(os.path.relpath(self.topdir, archdir), os.path.join(archdir, "toplink"))
            with open(os.path.join(archdir, "pkglist"), "w", encoding="utf-8") as pkglist:
                pkglist.writelines(path + "\n" for path, _ in lines[arch])
            with open(os.path.join(archdir, "rpmlist.jsonl"), "w", encoding="utf-8") as rpmlist:
                rpmlist.writelines(row + "\n" for _, row in lines[arch])
            with open(os.path.join(archdir, "blocklist"), "w", encoding="utf-8"):
                pass

    @staticmethod
    def _repo_arches_for(arch: str, arches: list[str], opts: dict[str, bool]) -> list[str]:
        if arch == "src":
            out = [a for a in arches if a != "src"] if opts["src"] else []
            return out + (["src"] if opts["separate_src"] else [])
        if arch == "noarch":
            return [a for a in arches if a != "src"]
        canon = koji.canonArch(arch)
        return [canon] if canon in arches else []

    def rpm_relpath(self, rpm: Rpm, top: str) -> str:
        """Where an internal rpm lives under topdir: packages/<build>/<v>/<r>/<arch>/<nvra>.rpm"""
        build = {"name": rpm.build_name or rpm.name, "version": rpm.version, "release": rpm.release}
        pathinfo = koji.PathInfo(topdir=top)
        return "{}/{}".format(pathinfo.build(build), pathinfo.rpm(rpm.as_info("INTERNAL")))

    def _rpmlist_row(self, rpm: Rpm) -> dict[str, Any]:
        row = rpm.as_info("INTERNAL")
        for key in ("external_repo_id", "external_repo_name"):
            del row[key]
        return row

    # ======================================================================
    # lookups
    # ======================================================================

    def _find_tag(self, info: Any) -> Tag | None:
        for tag in self.db.tags.values():
            if _matches_name_or_id(info, tag.id, tag.name):
                return tag
        return None

    def _lookup_tag(self, info: Any) -> Tag:
        tag = self._find_tag(info)
        if tag is None:
            raise koji.GenericError(f"No such entry in table tag: {info}")
        return tag

    def _find_host(self, info: Any) -> Host | None:
        for host in self.db.hosts.values():
            if _matches_name_or_id(info, host.id, host.name):
                return host
        return None

    def _lookup_host(self, info: Any) -> Host:
        host = self._find_host(info)
        if host is None:
            raise koji.GenericError(f"Invalid hostInfo: {info}")
        return host

    def _lookup_external_repo(self, info: Any) -> ExternalRepo:
        """lookup_name('external_repo', info, strict=True)"""
        for erepo in self.db.external_repos.values():
            if _matches_name_or_id(info, erepo.id, erepo.name):
                return erepo
        raise koji.GenericError(f"No such entry in table external_repo: {info}")

    def _repo_info(self, repo: Repo) -> dict[str, Any]:
        task_state = None
        if repo.task_id is not None and repo.task_id in self.db.tasks:
            task_state = self.db.tasks[repo.task_id].state
        return repo.as_info(self.db.tags[repo.tag_id].name, task_state)

    def _task_info(self, task_id: Any, request: bool, strict: bool) -> dict[str, Any] | None:
        task = self.db.tasks.get(_convert(task_id, int))
        if task is None:
            if strict:
                raise koji.GenericError("query returned no rows")
            return None
        info = task.as_info()
        if request:
            info["request"] = copy.deepcopy(task.request)
        return info

    def _rpm_info(self, rpm: Rpm) -> dict[str, Any]:
        return rpm.as_info(self.db.external_repos[rpm.external_repo_id].name)

    def _get_rpm(self, rpminfo: Any, strict: bool = False, multi: bool = False) -> Any:
        """kojihub.get_rpm: by id, by N-V-R.A(@location) or by a dict of those fields."""
        if isinstance(rpminfo, int):
            data: dict[str, Any] = {"id": rpminfo}
        elif isinstance(rpminfo, str):
            try:
                data = {"id": int(rpminfo)}
            except ValueError:
                data = koji.parse_NVRA(rpminfo)
        elif isinstance(rpminfo, dict):
            data = dict(rpminfo)
        else:
            raise koji.GenericError(f"Invalid type for rpminfo: {type(rpminfo)!r}")
        if "id" in data:
            found = [r for r in self.db.rpms.values() if r.id == data["id"]]
        else:
            # the hub's SQL needs all four; a missing one is a KeyError (fault code 1)
            key = (data["name"], data["version"], data["release"], data["arch"])
            found = [
                r for r in self.db.rpms.values() if (r.name, r.version, r.release, r.arch) == key
            ]
        if "location" in data:
            ext_id = self._lookup_external_repo(data["location"]).id
            found = [r for r in found if r.external_repo_id == ext_id]
        if multi:
            return [self._rpm_info(r) for r in found]
        if not found:
            if strict:
                raise koji.GenericError(f"No such rpm: {data!r}")
            return None
        if len(found) == 1:
            return self._rpm_info(found[0])
        # preference: internal non-draft, then internal draft, then external (highest id)
        internal = [r for r in found if not r.external_repo_id and not r.draft]
        if len(internal) > 1:
            raise koji.GenericError(f"Multiple nondraft rpm matches for: {data!r}")
        drafts = [r for r in found if not r.external_repo_id and r.draft]
        external = [r for r in found if r.external_repo_id]
        best = (
            internal
            or sorted(drafts, key=lambda r: r.id)[-1:]
            or sorted(external, key=lambda r: r.id)[-1:]
        )
        return self._rpm_info(best[0])

    def _add_external_rpm(self, rpminfo: dict[str, Any], location: Any) -> int:
        """kojihub.add_external_rpm(strict=False): add, or reuse if the hash matches."""
        dtypes = (
            ("name", str),
            ("version", str),
            ("release", str),
            ("epoch", (int, type(None))),
            ("arch", str),
            ("payloadhash", str),
            ("size", int),
            ("buildtime", int),
        )
        for fname, allowed in dtypes:
            if fname not in rpminfo:
                raise koji.GenericError(f"{fname} field missing: {rpminfo!r}")
            if not isinstance(rpminfo[fname], allowed):
                raise koji.GenericError(f"Invalid value for {fname}: {rpminfo[fname]!r}")
        lookup = {k: rpminfo[k] for k, _ in dtypes}
        lookup["location"] = location
        previous = self._get_rpm(lookup, strict=False)
        if previous:
            if previous["payloadhash"] != rpminfo["payloadhash"]:
                disp = "{name}-{version}-{release}.{arch}@{external_repo_name}".format(**previous)
                raise koji.GenericError(
                    "hash changed for external rpm: {} ({} -> {})".format(
                        disp, previous["payloadhash"], rpminfo["payloadhash"]
                    )
                )
            return int(previous["id"])
        rpm = Rpm(
            self.db.nextval("rpminfo"),
            rpminfo["name"],
            rpminfo["version"],
            rpminfo["release"],
            rpminfo["epoch"],
            rpminfo["arch"],
            rpminfo["payloadhash"],
            rpminfo["size"],
            rpminfo["buildtime"],
            external_repo_id=self._lookup_external_repo(location).id,
        )
        self.db.rpms[rpm.id] = rpm
        return rpm.id


def _matches_name_or_id(info: Any, obj_id: int, obj_name: str) -> bool:
    if isinstance(info, bool):
        return False
    if isinstance(info, int):
        return info == obj_id
    if isinstance(info, str):
        return info == obj_name
    if isinstance(info, dict):
        if "id" in info:
            return bool(info["id"] == obj_id)
        if "name" in info:
            return bool(info["name"] == obj_name)
    raise koji.GenericError(f"Invalid name or id value: {info!r}")


def _convert(value: Any, cast: Callable[[Any], Any], none_allowed: bool = False) -> Any:
    """kojihub.convert_value: ParameterError instead of a bare TypeError/ValueError."""
    if value is None:
        if none_allowed:
            return None
        raise koji.ParameterError(f"Invalid type, expected type {cast}")
    try:
        return cast(value)
    except (ValueError, TypeError):
        raise koji.ParameterError(
            f"Invalid type for value '{value}': {type(value)}, expected type {cast}"
        ) from None
