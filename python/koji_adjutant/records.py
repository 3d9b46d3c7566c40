"""What happened to this builder's tasks, for the operator's tools: a small append-only store.

kojid runs every task in a process of its own, so no process sees all of them; each task
process appends one JSON line here when it is done (:func:`record_finished`), and whoever
removes an orphaned container appends one (:func:`record_reaped`). ``koji-adjutant serve``
reads the lines back for its metrics (finished and refused tasks, their peak memory and CPU
seconds, reaped orphans) and ``/tasks/<id>``.

The store is ``records.jsonl`` in a state directory: ``$KOJI_ADJUTANT_STATE_DIR`` or
:data:`DEFAULT_STATE_DIR` (the commands take ``--state-dir``). Its rules:

* Many processes append at once: each line goes out in one ``write(2)`` on a descriptor
  opened with ``O_APPEND``, so lines never interleave (on a local filesystem; not on NFS).
* Bounded: when the file grows past ``max_bytes`` (default 4 MiB, some ten thousand tasks) it
  becomes ``records.jsonl.1``, replacing the previous one, under an ``flock`` on
  ``records.lock`` so two processes never rotate twice. At most about twice ``max_bytes`` is
  kept; the oldest records go first.
* Never in a task's way: a full disk, a read-only or missing directory, anything that fails
  is logged as a warning and the writer returns False. A task's result never depends on it.
* No symlink is followed: the state directory and the files are opened ``O_NOFOLLOW`` (the
  files relative to the directory's descriptor), so a link planted there is refused.
* Every line starts with ``{"kind":``; a line cut short by a full disk is skipped, and a
  record appended after it on the same line is still found.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Union

__all__ = [
    "DEFAULT_STATE_DIR",
    "MAX_BYTES",
    "OUTCOMES",
    "RECORDS_NAME",
    "ROTATED_NAME",
    "STATE_DIR_ENV",
    "read_records",
    "record_finished",
    "record_reaped",
    "state_dir",
]

STATE_DIR_ENV = "KOJI_ADJUTANT_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/koji-adjutant"
RECORDS_NAME = "records.jsonl"
ROTATED_NAME = "records.jsonl.1"
LOCK_NAME = "records.lock"
#: Size past which the records file is rotated.
MAX_BYTES = 4 * 1024 * 1024
#: What a finished task's ``outcome`` may be (``refused``: the builder refused the task).
OUTCOMES = ("ok", "failed", "refused")
#: Longest ``reason`` kept (a line must stay small enough for one write).
MAX_REASON = 2000
_LINE_START = '{"kind":'

logger = logging.getLogger("koji.build.adjutant.records")

Timestamp = Union[float, int, datetime.datetime, None]


def state_dir(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The state directory: ``explicit``, else ``$KOJI_ADJUTANT_STATE_DIR``, else the default."""
    if explicit:
        return explicit
    env = os.environ if environ is None else environ
    return env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def _seconds(value: Timestamp) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def _count(value: int | None) -> int | None:
    return None if value is None else int(value)


def record_finished(
    state_dir: str,
    *,
    task_id: int,
    method: str,
    arch: str | None,
    outcome: str,
    started: Timestamp,
    finished: Timestamp,
    peak_memory_bytes: int | None = None,
    cpu_seconds: float | None = None,
    bytes_written: int | None = None,
    reason: str | None = None,
    max_bytes: int = MAX_BYTES,
) -> bool:
    """Appends that task ``task_id`` ended with ``outcome`` (``ok``, ``failed`` or ``refused``).

    ``started``/``finished`` are Unix seconds or datetimes (naive ones are UTC); the resource
    figures are the task's containers' (None: not measured). Returns whether the line was
    written; never raises (a failure is logged).
    """
    try:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        record: dict[str, Any] = {
            "kind": "finished",
            "task_id": int(task_id),
            "method": str(method),
            "arch": None if arch is None else str(arch),
            "outcome": outcome,
            "started": _seconds(started),
            "finished": _seconds(finished),
            "peak_memory_bytes": _count(peak_memory_bytes),
            "cpu_seconds": _number(cpu_seconds),
            "bytes_written": _count(bytes_written),
            "reason": None if reason is None else str(reason)[:MAX_REASON],
        }
    except (TypeError, ValueError, OverflowError) as exc:
        logger.warning("koji-adjutant: task %s not recorded: %s", task_id, exc)
        return False
    return _append(state_dir, record, max_bytes)


def record_reaped(
    state_dir: str, *, container_id: str, task_id: int | None, max_bytes: int = MAX_BYTES
) -> bool:
    """Appends that an orphaned container of task ``task_id`` was removed. Never raises."""
    try:
        record: dict[str, Any] = {
            "kind": "reaped",
            "container_id": str(container_id),
            "task_id": None if task_id is None else int(task_id),
        }
    except (TypeError, ValueError) as exc:
        logger.warning("koji-adjutant: reaped container %s not recorded: %s", container_id, exc)
        return False
    return _append(state_dir, record, max_bytes)


def _open_dir(path: str, *, create: bool) -> int:
    if create:
        os.makedirs(path, mode=0o755, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _append(directory: str, record: dict[str, Any], max_bytes: int) -> bool:
    record["id"] = uuid.uuid4().hex
    record["time"] = datetime.datetime.now(datetime.timezone.utc).timestamp()
    data = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    try:
        dir_fd = _open_dir(directory, create=True)
    except OSError as exc:
        logger.warning("koji-adjutant: cannot record to %s: %s", directory, _why(exc, directory))
        return False
    try:
        fd = os.open(
            RECORDS_NAME,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=dir_fd,
        )
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            written = os.write(fd, data)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")
        if size > max_bytes:
            _rotate(dir_fd, max_bytes)
        return True
    except OSError as exc:
        path = os.path.join(directory, RECORDS_NAME)
        logger.warning("koji-adjutant: cannot record to %s: %s", path, _why(exc, path))
        return False
    finally:
        os.close(dir_fd)


def _why(exc: OSError, path: str) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
        return "a symlink, which is never followed"
    return str(exc.strerror or exc)


def _rotate(dir_fd: int, max_bytes: int) -> None:
    """``records.jsonl`` becomes ``records.jsonl.1`` (once, however many writers see it big)."""
    lock = os.open(
        LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
    )
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = os.stat(RECORDS_NAME, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # another writer rotated it and nobody wrote since
        if stat.S_ISREG(current.st_mode) and current.st_size > max_bytes:
            os.rename(RECORDS_NAME, ROTATED_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(lock)  # releases the lock


def _parse_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.strip()
        if not line:
            continue
        for candidate in (line, line[line.rfind(_LINE_START) :] if _LINE_START in line else ""):
            if not candidate:
                continue
            try:
                record = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(record, dict) and "kind" in record:
                yield record
            break


def read_records(state_dir: str, *, kind: str | None = None) -> list[dict[str, Any]]:
    """Every record kept (the rotated file's first, oldest first), or those of ``kind``
    (``finished`` or ``reaped``). A missing store is empty; lines that do not parse are
    skipped; an unreadable file is logged and skipped."""
    try:
        dir_fd = _open_dir(state_dir, create=False)
    except FileNotFoundError:
        return []
    except OSError as exc:
        why = _why(exc, state_dir)
        logger.warning("koji-adjutant: cannot read records in %s: %s", state_dir, why)
        return []
    records: list[dict[str, Any]] = []
    try:
        for name in (ROTATED_NAME, RECORDS_NAME):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                path = os.path.join(state_dir, name)
                logger.warning("koji-adjutant: cannot read %s: %s", path, _why(exc, path))
                continue
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    continue
                data = handle.read()
            records.extend(r for r in _parse_lines(data) if kind is None or r.get("kind") == kind)
    finally:
        os.close(dir_fd)
    return records
