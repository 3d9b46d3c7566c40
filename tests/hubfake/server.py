"""A Koji hub fake that speaks the real wire protocol, for kojid-style task code.

What upstream Koji does (read in koji-project/koji at koji-1.35.3 and at the
newest snapshot, 2025-07, whose builder/ and kojihub/ match 1.35.3 on every
path below; client side is PyPI koji 1.36.1, whose ClientSession, koji.tasks
and koji.daemon match the snapshot except where noted):

Wire protocol (koji/__init__.py ClientSession, kojihub/kojixmlrpc.py)
    * Every call is an XML-RPC POST to the hub URL. Keyword arguments travel as
      a trailing struct carrying ``'__starstar': True`` (koji.encode_args); the
      hub splits it off (koji.decode_args) and calls the handler, turning a
      signature mismatch into ParameterError (koji.util.call_with_argcheck).
    * Faults: a koji.GenericError subclass becomes Fault(cls.faultCode, str(e))
      and the client maps faultCode back to the class (koji.convertFault);
      any other exception becomes Fault(1, "<class ...>: msg"), which the client
      raises as a bare xmlrpc Fault. An unknown method is
      GenericError("Invalid method: NAME").
    * Multicall: the client sends ``multiCall(calls)`` with calls =
      [{'methodName', 'params'}]; the hub ('multiCall' or 'system.multicall')
      answers one entry per call: ``[result]`` on success, else
      ``{'faultCode', 'faultString'[, 'traceback']}``; each call has its own
      savepoint, so one failure does not undo the others.
    * Responses carry a ``Koji-Version`` header (the client's hub_version).
    * Sessions: ``login(user, password, opts=None)`` returns
      ``{'session-id', 'session-key', 'header-auth': True}``; afterwards every
      request carries Koji-Session-Id / Koji-Session-Key / Koji-Session-Callnum
      headers (old hubs: the same values in the query string). callnum must
      not go backwards (SequenceError); repeating it is a RetryError unless
      the method is retry-safe. kojid logs in, then calls
      ``exclusiveSession(force=...)`` and ``echo("OK")`` (expects ["OK"]);
      TaskManager.forkTask runs each task on a ``subsession()`` which
      inherits the master's exclusivity.
    * Every ``host.*`` call starts with Host().verify(): the session's user
      must be a host ("User N is not a host" / "Not logged-in", AuthError)
      and the session exclusive ("This method requires an exclusive session").

Uploads
    * ``ClientSession.uploadWrapper(localfile, path, name=None, blocksize,
      overwrite=True)``: with opts['use_fast_upload'] (kojid's default: True)
      it goes straight to fastUpload; otherwise it first calls
      ``checkUpload(path, name)`` and uses fastUpload if that does not fault,
      else the legacy loop of ``uploadFile(path, name, size, ('sha256', hex),
      offset, base64)`` ending with offset -1 (whole-file size and digest).
    * fastUpload = one ``rawUpload`` per block (at least one, even for an empty
      file): a POST with Content-Type application/octet-stream, the raw bytes
      as body and query args filename, filepath, fileverify=adler32,
      offset, [overwrite=1], [volume]. The hub answers {'size', 'fileverify',
      'offset', 'hexdigest'}; the client checks size and adler32 per block,
      then calls ``checkUpload(path, name[, verify='adler32'])`` and compares
      the size.
    * koji.daemon.incremental_upload(session, fname, fd, path): sends what was
      appended to fd since its last position, in 64 KiB pieces: with
      use_fast_upload via ``rawUpload(chunk, offset, path, fname,
      overwrite=True)`` (adler32 compared, no checkUpload), else via
      ``uploadFile(path, fname, size, ('sha256', hex), offset, base64)``. It is
      called every second by log_output (createrepo.log, mergerepos.log) and
      by BuildRootLogs.sync_log (mock logs), so one log arrives as many
      requests at increasing offsets; nothing is sent when nothing was added.
    * Hub rules (kojihub.get_upload_path, handle_upload, uploadFile):
      destination ``<topdir>/work/<path>/<name>``; name must not contain '/'
      or start with '.'; path normalised, not empty, not '..'; for
      ``tasks/...`` the third component is the task id and only the host
      running that OPEN task may write (ActionNotAllowed otherwise); other
      paths belong to the first user who wrote there. rawUpload: offset 0 on
      an existing file without overwrite fails ("upload path exists");
      overwrite truncates the file at offset then writes (1.35.3 truncates
      always); without overwrite (newest) the file end must equal
      offset+size afterwards; a gap past EOF is silently zero-filled;
      fileverify '' makes the hub fault. uploadFile: size/digest mismatch
      returns False (the client retries), offset 0 on an existing non-.log
      file fails ("file already exists"), offset 0 truncates, offset -1
      truncates to size and verifies the whole-file digest.
      koji.pathinfo.taskrelpath(id) = ``tasks/<id % 10000>/<id>``.

BuildArchTask.handler(pkg, root, arch, keep_srpm, opts={'repo_id': R})
(builder/kojid; 1.35.3 and newest identical here) makes, in order:
     1. repoInfo(R, strict=True)                       -> create_event E
        (then reads ``work/<pkg>`` via topdir or GET topurl; no hub call)
     2. getAverageBuildDuration(name, age=6)  [ParameterError -> retried
        without age]; if it returns > 0: host.setTaskWeight(task_id, w)
     3. only if arch == 'noarch': getTaskInfo(task_id) for the preferred arch
     4. host.getHost()
     5. getBuildConfig(root, event=E)                  (find_arch)
     BuildRoot._new:
     6. repoInfo(R, strict=True); repo must be READY (EXPIRED tolerated)
     7. getBuildConfig(root, event=E); config['id'] must equal repo tag_id
     8. host.newBuildRoot(R, br_arch, task_id=task_id)  -> buildroot id B
     9. uploadWrapper(<mock cfg>, tasks/../<id>, name='mock_config.log')
     BuildRoot.init:
    10. mock --init, mock --chroot 'uname -r': each mock run streams
        ``<resultdir>/*.log``, ``root/var/log/dnf*.log`` and
        ``mock_output.log`` through incremental_upload (names made unique
        with .DUPnn); on failure host.setBuildRootState(B, 'EXPIRED') and
        BuildrootError
    11. getExternalRepoList(tag_id, event=E)            (markExternalRPMs)
        then rpmlist.jsonl of ``repos/<tag>/<R>/<arch>/`` (mapInternalRPMs;
        over topurl a 404 falls back to listTaggedRPMS(tag=tag_id, event=E,
        latest=True, draft=True))
    12. host.setBuildRootList(B, rpmlist)
     BuildRoot.build:
    13. host.setBuildRootState(B, 'BUILDING')
    14. mock --rebuild (log uploads as in 10)
    15. getExternalRepoList(tag_id, event=E); host.updateBuildRootList(B, rpmlist)
        (always, also when the build failed; then 'EXPIRED' and BuildError)
     results:
    16. for noarch rpms: uploadWrapper(noarch_rpmdiff.json)
    17. uploadWrapper(<resultdir>/<rpm>) for every rpm, then the srpm if keep_srpm
    18. host.setBuildRootState(B, 'EXPIRED')
    returns {'rpms': [tasks/.../x.rpm], 'srpms': [...] or [], 'logs':
    [tasks/.../name, ...], 'brootid': B}; the parent build task maps each
    rpm/srpm to brootid for host.completeBuild / moveBuildToScratch.
    rpmlist entries (getPackageList): name, version, release, epoch, arch,
    payloadhash (hex sigmd5), size, buildtime; internal ones also 'id' (from
    rpmlist.jsonl, payloadhash checked first); external ones 'external_repo'
    (the getExternalRepoList dict) and 'location' (its external_repo_id).
    Around the handler TaskManager calls getTaskInfo(id, request=True),
    checkHost -> getBuildConfig(root), host.openTask(id),
    host.setTaskWeight(id, 1.5), subsession(), then host.closeTask(id,
    <methodResponse XML>) or host.failTask(id, <fault XML>).

CreaterepoTask.handler(repo_id, arch, oldrepo)
     1. repoInfo(repo_id, strict=True); state must be REPO_INIT (GenericError)
        (reads repos/<tag>/<repo_id>/<arch>/pkglist and groups/comps.xml)
     2. if pkglist non-empty, oldrepo and createrepo_update:
        repoInfo(oldrepo['id'], strict=True)
     3. createrepo_c under log_output: createrepo.log via incremental_upload
     4. getExternalRepoList(tag_id, event=create_event); if any: mergerepo_c,
        mergerepos.log via incremental_upload; else with an empty pkglist an
        EMPTY_REPO file is written into repodata
     5. getTag(tag_id, event=create_event, strict=True)
     6. run_callbacks('postCreateRepo') -> getTaskInfo(id, request=True,
        strict=True) (the taskinfo property)
     7. uploadWrapper(repodata/<f>, tasks/<id%10000>/<id>, f) per file
    returns [uploadpath, [file names]]; newRepo later calls
    host.repoDone(repo_id, {arch: [uploadpath, files]}), which moves each file
    from work/<uploadpath>/ into the repo's <arch>/repodata (pkglist files to
    <arch>/) and fails on a missing one.

Buildroot rules (kojihub.BuildRoot, HostExports)
    * newBuildRoot(repo, arch, task_id=None): task must be OPEN on this host;
      arch must match [a-zA-Z0-9_-]; task_id and an existing repo are required
      by the schema (NOT NULL / foreign key: fault code 1). State INIT.
    * setBuildRootState(brootid, state, task_id=None): state by name or
      number; host must own the buildroot (and task, if given); never back
      to INIT; once EXPIRED only EXPIRED again, which is silently ignored;
      every other transition (e.g. INIT->BUILDING, BUILDING->BUILDING) is
      allowed.
    * setBuildRootList only in INIT, updateBuildRootList only in BUILDING
      ("buildroot B in wrong state S"). Each entry is a dict; with a truthy
      'location' it is an external rpm: name/version/release/arch/payloadhash
      strings, epoch int|None, size/buildtime ints, and location a known
      external repo (id or name); it is added if new, reused if the hash
      matches, else "hash changed". Without location it must resolve via
      get_rpm(strict=True): by 'id' if present, else by
      name+version+release+arch ("No such rpm: {...}"). update skips rpms
      already listed; a duplicate is a unique violation (fault code 1).

The fake implements the calls above (plus getTag, getRepo, getRPM, getHost,
getBuildroot, getBuildrootListing, host.getID, host.refuseTask, host.repoInit,
logout, logoutChild, sharedSession, hello, getKojiVersion, getAPIVersion,
getLoggedInUser, getLastEvent); anything else is "Invalid method". It is
stricter than the hub in one place: task upload directories must be exactly
``tasks/<id % 10000>/<id>[/...]``. It does not model tag inheritance, events
(every event sees the current tags) or permissions.
"""

from __future__ import annotations

import copy
import inspect
import os
import shutil
import socket
import tempfile
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import koji
import koji.xmlrpcplus
from koji.xmlrpcplus import Fault

from .hub import Hub
from .records import Buildroot, CallRecord, Task, UploadChunk

HUB_PATH = "/kojihub"
FILES_PATH = "/kojifiles"
_MULTICALL_NAMES = ("multiCall", "system.multicall")


class BadRequest(Exception):
    """Answered with HTTP 400, like kojixmlrpc's BadRequest."""


def _fault_for(exc: BaseException) -> Fault:
    """kojixmlrpc._log_exception without KojiDebug: what a top-level fault carries."""
    code = getattr(type(exc), "faultCode", 1)
    if isinstance(exc, koji.GenericError):
        return Fault(code, str(exc))
    return Fault(code, f"{type(exc)}: {exc}")


def _multicall_fault(exc: BaseException) -> dict[str, Any]:
    """kojixmlrpc.multiCall's entry for a failed member call."""
    if isinstance(exc, Fault):
        return {"faultCode": exc.faultCode, "faultString": exc.faultString}
    return {
        "faultCode": getattr(type(exc), "faultCode", 1),
        "faultString": ", ".join(str(arg) for arg in exc.args),
        "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }


def _response(value: Any) -> bytes:
    """Encode a methodResponse: a Fault, or the singleton tuple around a result."""
    if isinstance(value, Fault):
        xml: str = koji.xmlrpcplus.dumps(value)
    else:
        xml = koji.xmlrpcplus.dumps((value,), methodresponse=1)
    return xml.encode()


def _int_or_none(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise koji.AuthError(f"Invalid {what}: {value!r}") from None


class _Dispatcher:
    """Turns one HTTP request into hub calls, under one lock (calls are serialised)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.lock = threading.RLock()

    def handle_post(self, headers: dict[str, str], query: str, body: bytes) -> bytes:
        with self.lock:
            if headers.get("content-type") == "application/octet-stream":
                return self._handle_upload(headers, query, body)
            return self._handle_rpc(headers, query, body)

    def _open_session(self, headers: dict[str, str], query: str, method: str | None) -> None:
        """kojihub.auth.Session: header credentials first, then the legacy query string."""
        if "koji-session-id" in headers:
            sid = _int_or_none(headers["koji-session-id"], "session id")
            key = headers.get("koji-session-key")
            callnum = headers.get("koji-session-callnum", headers.get("koji-callnum"))
        else:
            args = parse_qs(query, strict_parsing=True) if query else {}
            if "session-id" not in args:
                self.hub.open_session(None, None, None, method)
                return
            sid = _int_or_none(args["session-id"][0], "session id")
            key = args.get("session-key", [None])[0]
            callnum = args.get("callnum", [None])[0]
        self.hub.open_session(sid, key, _int_or_none(callnum, "callnum"), method)

    def _handle_rpc(self, headers: dict[str, str], query: str, body: bytes) -> bytes:
        if not body:
            raise BadRequest("Empty request")
        try:
            params, method = koji.xmlrpcplus.loads(body)
        except Exception as exc:
            raise BadRequest(f"Invalid request: {exc}") from exc
        try:
            try:
                self._open_session(headers, query, method)
            except Exception as exc:
                fault = _fault_for(exc)
                self.hub.calls.append(
                    CallRecord(
                        method, tuple(params), {}, None, fault=(fault.faultCode, fault.faultString)
                    )
                )
                raise
            result = self._dispatch(method, params, in_multicall=False)
            return _response(result)
        except Fault as fault:
            return _response(fault)
        except Exception as exc:
            return _response(_fault_for(exc))

    def _handle_upload(self, headers: dict[str, str], query: str, body: bytes) -> bytes:
        try:
            self._open_session(headers, query, None)
            self.hub.check_lock()
            upload_args = parse_qs(query, strict_parsing=True) if query else {}
            saved = self.hub.snapshot()
            try:
                result = self.hub.raw_upload(upload_args, body)
            except Exception as exc:
                self.hub.restore(saved)
                if self.hub.calls and self.hub.calls[-1].method == "rawUpload":
                    self.hub.calls[-1].fault = (_fault_for(exc).faultCode, str(exc))
                raise
            return _response(result)
        except Exception as exc:
            return _response(_fault_for(exc))

    def _dispatch(self, method: str, params: tuple[Any, ...], in_multicall: bool) -> Any:
        hub = self.hub
        hub.ctx.method = method
        args, kwargs = koji.decode_args(*params)
        session_id = hub.ctx.session.id if hub.ctx.session else None
        record = CallRecord(method, tuple(args), dict(kwargs), session_id, in_multicall)
        if method in _MULTICALL_NAMES:
            # the multicall itself is not recorded, its members are
            return self._multicall(*args, **kwargs)
        hub.calls.append(record)
        saved = hub.snapshot()
        try:
            hub.check_lock()
            func = hub.handlers.get(method)
            if func is None:
                raise koji.GenericError(f"Invalid method: {method}")
            try:
                bound = inspect.signature(func).bind(*args, **kwargs)
            except TypeError as exc:
                raise koji.ParameterError(str(exc)) from exc
            return func(*bound.args, **bound.kwargs)
        except Exception as exc:
            hub.restore(saved)
            fault = exc if isinstance(exc, Fault) else _fault_for(exc)
            record.fault = (fault.faultCode, fault.faultString)
            raise

    def _multicall(self, calls: list[dict[str, Any]]) -> list[Any]:
        results: list[Any] = []
        for call in calls:
            try:
                result = self._dispatch(
                    call["methodName"], tuple(call["params"]), in_multicall=True
                )
            except Exception as exc:
                results.append(_multicall_fault(exc))
            else:
                results.append([result])
        return results


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Koji-Version", self.server.hub.hub_version)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if url.path not in (HUB_PATH, HUB_PATH + "/ssllogin"):
            self._reply(404, b"Not Found\n", "text/plain")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = self.server.dispatcher.handle_post(headers, url.query, body)
        except BadRequest as exc:
            self._reply(400, (f"{exc}\n").encode(), "text/plain")
            return
        self._reply(200, payload, "text/xml")

    def do_GET(self) -> None:
        """Serve topdir under /kojifiles, as kojid's topurl (localPath, openRemoteFile)."""
        url = urlsplit(self.path)
        if url.path.startswith(FILES_PATH + "/"):
            rel = os.path.normpath(unquote(url.path[len(FILES_PATH) + 1 :]))
            path = os.path.join(self.server.hub.topdir, rel)
            if not rel.startswith("..") and not os.path.isabs(rel) and os.path.isfile(path):
                with open(path, "rb") as fo:
                    self._reply(200, fo.read(), "application/octet-stream")
                return
        self._reply(404, b"Not Found\n", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: Hub, dispatcher: _Dispatcher) -> None:
        self.hub = hub
        self.dispatcher = dispatcher
        super().__init__(("127.0.0.1", 0), _RequestHandler)


class HubFake:
    """A running fake hub on 127.0.0.1 plus the API tests use to load and inspect it.

    ``with HubFake() as hub:`` starts it; point ``koji.ClientSession(hub.url,
    hub.client_opts('builder1'))`` at it. State is loaded with the add_*
    methods, which return the dicts the hub's own getters would return.
    """

    def __init__(
        self,
        topdir: str | None = None,
        hub_version: str = "1.35.3",
        strict_task_paths: bool = True,
    ) -> None:
        self._tmp: str | None = None
        if topdir is None:
            topdir = self._tmp = tempfile.mkdtemp(prefix="hubfake-")
        koji.ensuredir(os.path.join(topdir, "work"))
        self.hub = Hub(topdir, hub_version, strict_task_paths)
        self._dispatcher = _Dispatcher(self.hub)
        self._server = _Server(self.hub, self._dispatcher)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="hubfake", daemon=True
        )
        self._thread.start()
        self._closed = False

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> HubFake:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses ----------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The hub URL for koji.ClientSession (kojid's `server` option)."""
        return f"http://127.0.0.1:{self.port}{HUB_PATH}"

    @property
    def topurl(self) -> str:
        """kojid's `topurl`: topdir served over HTTP."""
        return f"http://127.0.0.1:{self.port}{FILES_PATH}"

    @property
    def topdir(self) -> str:
        return self.hub.topdir

    @property
    def workdir(self) -> str:
        return self.hub.uploads.workdir

    def client_opts(self, user: str, password: str = "hubfake", **extra: Any) -> dict[str, Any]:
        """ClientSession options: password login, and no retry loop (a fault should fail fast)."""
        opts: dict[str, Any] = {
            "user": user,
            "password": password,
            "max_retries": 0,
            "retry_interval": 0,
            "anon_retry": False,
            "timeout": 60,
        }
        opts.update(extra)
        return opts

    def host_session(self, host: str, **extra: Any) -> koji.ClientSession:
        """Log in as kojid does: login(), exclusiveSession(force=True)."""
        session = koji.ClientSession(self.url, self.client_opts(host, **extra))
        session.login()
        session.exclusiveSession(force=True)
        return session

    # -- loading state ------------------------------------------------------------

    def add_host(
        self, name: str, arches: str = "x86_64 noarch", capacity: float = 2.0
    ) -> dict[str, Any]:
        """A build host; its user (same name) may log in and make host.* calls."""
        with self._dispatcher.lock:
            return self.hub.add_host(name, arches, capacity).as_info()

    def add_external_repo(
        self, name: str, url: str, merge_mode: str = "koji", arches: str | None = None
    ) -> dict[str, Any]:
        with self._dispatcher.lock:
            erepo = self.hub.add_external_repo(name, url, merge_mode, arches)
            return {"id": erepo.id, "name": erepo.name, "url": erepo.url}

    def add_tag(
        self,
        name: str,
        arches: str | None = "x86_64",
        extra: dict[str, Any] | None = None,
        external_repos: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A tag with build config; `extra` carries e.g. {'rpm.macro.dist': '.fc40'}."""
        with self._dispatcher.lock:
            return self.hub.add_tag(name, arches, extra, external_repos).as_info()

    def add_rpm(
        self, name: str, version: str, release: str, arch: str, **kw: Any
    ) -> dict[str, Any]:
        """A known rpm (getRPM shape). kw: epoch, payloadhash, size, buildtime,
        external_repo (name), build_name, tags (names whose repos list it)."""
        with self._dispatcher.lock:
            rpm = self.hub.add_rpm(name, version, release, arch, **kw)
            return self.hub._rpm_info(rpm)

    def add_repo(
        self,
        tag: str,
        state: int = koji.REPO_READY,
        write_layout: bool = True,
        opts: dict[str, bool] | None = None,
    ) -> dict[str, Any]:
        """A repo (repoInfo shape); write_layout writes repos/<tag>/<id>/ like repoInit."""
        with self._dispatcher.lock:
            repo = self.hub.add_repo(tag, state, write_layout, opts)
            return self.hub._repo_info(repo)

    def add_task(self, method: str, request: list[Any], **kw: Any) -> dict[str, Any]:
        """A task (getTaskInfo shape). kw: arch, host (name), state ('OPEN' by
        default, so host calls for it work at once), parent, label, task_id."""
        with self._dispatcher.lock:
            return self.hub.add_task(method, request, **kw).as_info()

    def set_average_build_duration(self, package: str, seconds: float | None) -> None:
        with self._dispatcher.lock:
            if seconds is None:
                self.hub.db.build_durations.pop(package, None)
            else:
                self.hub.db.build_durations[package] = seconds

    # -- inspection ---------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        """Every call received, in order (multiCall members individually; rawUpload too)."""
        with self._dispatcher.lock:
            return copy.deepcopy(self.hub.calls)

    def call_names(self, skip: tuple[str, ...] = ()) -> list[str]:
        return [c.method for c in self.calls if c.method not in skip]

    def clear_calls(self) -> None:
        with self._dispatcher.lock:
            self.hub.calls.clear()

    def buildroot(self, brootid: int) -> Buildroot:
        """The buildroot with its state history and listing (a copy)."""
        with self._dispatcher.lock:
            return copy.deepcopy(self.hub.db.buildroots[brootid])

    @property
    def buildroots(self) -> list[Buildroot]:
        with self._dispatcher.lock:
            return copy.deepcopy(list(self.hub.db.buildroots.values()))

    def buildroot_rpms(self, brootid: int) -> list[dict[str, Any]]:
        """getBuildrootListing(brootid): rpm_id, is_update, name, ..., external_repo_name."""
        with self._dispatcher.lock:
            return self.hub.buildroot_listing(self.hub.db.buildroots[brootid])

    def task(self, task_id: int) -> Task:
        """The task row; result/fault are set once host.closeTask/failTask arrived."""
        with self._dispatcher.lock:
            return copy.deepcopy(self.hub.db.tasks[task_id])

    def repo(self, repo_id: int) -> dict[str, Any]:
        with self._dispatcher.lock:
            return self.hub._repo_info(self.hub.db.repos[repo_id])

    def repo_dir(self, repo_id: int) -> str:
        info = self.repo(repo_id)
        path: str = koji.PathInfo(topdir=self.topdir).repo(info["id"], info["tag_name"])
        return path

    def rpm_path(self, rpm_id: int) -> str:
        """Absolute path where an internal rpm's file belongs (for createrepo tests)."""
        with self._dispatcher.lock:
            # PathInfo joins its topdir and "/packages/...": pass the real topdir, not "".
            return self.hub.rpm_relpath(self.hub.db.rpms[rpm_id], self.topdir)

    def uploads(self) -> dict[str, bytes]:
        """Every file under work/, keyed by path relative to work/ (e.g. tasks/1/1/x.log)."""
        with self._dispatcher.lock:
            return self.hub.uploads.files()

    def upload_bytes(self, relpath: str) -> bytes:
        with open(os.path.join(self.workdir, relpath), "rb") as fo:
            return fo.read()

    def upload_chunks(self, relpath: str) -> list[UploadChunk]:
        """Every request that wrote to work/<relpath>, in order."""
        with self._dispatcher.lock:
            return copy.deepcopy(self.hub.uploads.chunks.get(relpath, []))

    def upload_requests(self, relpath: str) -> int:
        return len(self.upload_chunks(relpath))
