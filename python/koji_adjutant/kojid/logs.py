"""Streaming a running task's logs to the hub, as kojid does for mock and createrepo.

kojid uploads logs while the tool runs: every second ``BuildRoot.mock`` calls
``BuildRootLogs.sync_logs`` (and ``log_output`` does the same for createrepo.log), which sends
what was appended to each log since the last pass through ``koji.daemon.incremental_upload``.
A user watching the task sees build.log grow; a task that dies still has its logs on the hub.

The adapters run the container from one blocking call that releases the GIL, and write the
logs as growing files. :class:`LiveUpload` therefore runs the same once-a-second pass in a
thread while the task's main thread waits in the adapter, then one last pass. Python signal
handlers only ever run in the main thread, so kojid's SIGINT/SIGTERM still reach the adapter.

A ``koji.ClientSession`` is not thread-safe (each request carries a call number the hub
requires to increase), so every use of the task's session while the thread runs, including
the buildroot callbacks the adapter makes from the main thread, holds :attr:`LiveUpload.lock`.

:class:`LogWatcher` is used when kojid's own ``BuildRootLogs`` is not available (outside
kojid); it follows the same rules: files matching the patterns are picked up as they appear,
a clashing base name is uploaded as ``name.DUPnn.ext``, and a file that was rewritten or
truncated is read again from the start. It also watches logs in directories a container can
write (createrepo's work dir), so it never follows a symlink and takes regular files only: a
link planted in a log's place (to a host file) or a FIFO is reported and skipped, never read,
and never blocks.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any, Callable, Protocol

import koji
from koji.daemon import incremental_upload

__all__ = ["LiveUpload", "LogWatcher", "TaskLogUploads"]


class LogSink(Protocol):
    """What a log watcher uploads through (kojid's BuildRoot has the same two attributes)."""

    logger: logging.Logger

    def incremental_log(self, fname: str, fd: IO[bytes]) -> None: ...


class TaskLogUploads:
    """Incremental uploads into a task's upload directory, remembering the names uploaded."""

    def __init__(self, session: koji.ClientSession, upload_path: str, logger: logging.Logger):
        self.session = session
        self.upload_path = upload_path
        self.logger = logger
        self.logs: set[str] = set()

    def incremental_log(self, fname: str, fd: IO[bytes]) -> None:
        incremental_upload(self.session, fname, fd, self.upload_path, logger=self.logger)
        self.logs.add(fname)


class LogWatcher:
    """Follows the log files matching ``patterns`` and uploads what they gain (see module doc).

    The interface is kojid's ``BuildRootLogs``: ``sync_logs()`` once per pass,
    ``close_logs()`` at the end.
    """

    def __init__(self, sink: LogSink, patterns: Sequence[str], with_ts: bool = False):
        self.sink = sink
        self.patterns = list(patterns)
        self.logger = sink.logger
        self._by_path: dict[str, dict[str, Any]] = {}
        self._names: set[str] = set()
        self._ignored: set[str] = set()
        if with_ts:
            self.logger.warning("log_timestamps needs kojid's BuildRootLogs; not writing -ts.log")

    def _upload_name(self, path: str) -> str | None:
        name = os.path.basename(path)
        if name not in self._names:
            return name
        base, ext = os.path.splitext(name)
        for n in range(99):
            alias = f"{base}.DUP{n:02d}{ext}"
            if alias not in self._names:
                return alias
        return None

    def _discover(self) -> None:
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern)):
                if path in self._by_path or path in self._ignored:
                    continue
                name = self._upload_name(path)
                if name is None:
                    self.logger.error("No unique upload name left for log %s", path)
                    self._ignored.add(path)
                    continue
                self._names.add(name)
                self._by_path[path] = {"name": name, "path": path}

    def sync_logs(self) -> None:
        self._discover()
        for info in self._by_path.values():
            try:
                self._sync(info)
            except OSError as exc:
                self.logger.error("Error reading log %s: %s", info["path"], exc)

    def _sync(self, info: dict[str, Any]) -> None:
        path = info["path"]
        try:
            st = os.lstat(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            if not info.get("missing"):
                self.logger.error("Log disappeared: %s", path)
                info["missing"] = True
            return
        info.pop("missing", None)
        if not stat.S_ISREG(st.st_mode):
            if not info.get("refused"):
                self.logger.error("Not uploading %s: not a regular file", path)
                info["refused"] = True
            return
        info.pop("refused", None)
        fd = info.get("fd")
        last = info.get("st")
        if (
            fd is not None
            and last is not None
            and (st.st_ino != last.st_ino or st.st_size < last.st_size)
        ):
            self.logger.info("Rereading %s (rewritten or truncated)", path)
            fd.close()
            fd = None
        if fd is None:
            fd = _open_regular(path)
            if fd is None:
                self.logger.error("Not uploading %s: not a regular file", path)
                return
            info["fd"] = fd
        info["st"] = st
        self.sink.incremental_log(info["name"], fd)

    def close_logs(self) -> None:
        for info in self._by_path.values():
            fd = info.pop("fd", None)
            if fd is not None:
                fd.close()


def _open_regular(path: str) -> IO[bytes] | None:
    """``path`` opened for reading if it is a regular file: no symlink followed (the last
    component; a log's directory is the task's own), a FIFO opened without blocking and
    refused. None when it is not a regular file (a link makes the open fail with ELOOP)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class LiveUpload:
    """Calls ``sync()`` every ``interval`` seconds in a thread between ``start`` and ``stop``.

    Use as a context manager around the blocking adapter call; hold :attr:`lock` for any other
    use of the session meanwhile. On leaving normally or with an ordinary exception, the thread
    is stopped and one final ``sync()`` runs in the caller's thread; on a signal
    (KeyboardInterrupt, SystemExit) the final pass is skipped, as kojid does when a task is
    killed. An exception raised by ``sync()`` in the thread ends the uploads and is re-raised
    from ``__exit__`` (kojid's own loop would have failed the task with it).
    """

    def __init__(
        self,
        sync: Callable[[], None],
        close: Callable[[], None],
        *,
        interval: float = 1.0,
        logger: logging.Logger | None = None,
    ):
        self._sync = sync
        self._close = close
        self.interval = interval
        self.lock = threading.Lock()
        self.logger = logger or logging.getLogger("koji.build.adjutant")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @contextmanager
    def session(self) -> Iterator[None]:
        """Exclusive use of the session (for hub calls made while the uploads run)."""
        with self.lock:
            yield

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.lock:
                    self._sync()
            except Exception as exc:
                self.logger.error("Log upload failed: %s", exc)
                self._error = exc
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="adjutant-log-upload", daemon=True)
        self._thread.start()

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if final and self._error is None:
                self._sync()
        finally:
            self._close()
        if final and self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> LiveUpload:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ordinary = exc_type is None or issubclass(exc_type, Exception)
        if exc_type is None:
            self.stop(final=True)
            return
        try:
            self.stop(final=ordinary)
        except Exception as upload_error:
            # the task already failed; its own error is the one to report
            self.logger.error("Final log upload failed: %s", upload_error)
