"""The hub's upload area (`<topdir>/work`) with kojihub's write semantics.

Three entry points mirror the hub: `raw_upload` (the octet-stream POST that
`ClientSession.fastUpload` and `fast_incremental_upload` send), `upload_file`
(the legacy base64 `uploadFile` XML-RPC call) and `check_upload`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from typing import Any, Callable

import koji
import koji.util

from .records import UploadChunk

# Called with the task id parsed from a tasks/... upload directory; must raise
# if the calling session's host does not own that OPEN task.
TaskDirCheck = Callable[[int], None]


def verify_class(verify: str | None) -> Any:
    """kojihub.get_verify_class: the hash constructor for a verify name, None for ''."""
    if verify == "md5":
        return hashlib.md5
    if verify == "adler32":
        return koji.util.adler32_constructor
    if verify == "sha256":
        return hashlib.sha256
    if verify:
        raise koji.GenericError(f"Unsupported verify type: {verify}")
    return None


class UploadArea:
    """Files uploaded under `<work>`, plus a log of every request that wrote them."""

    def __init__(self, workdir: str, strict_task_paths: bool = True) -> None:
        self.workdir = workdir
        # Stricter than the hub: also require tasks/<id % 10000>/<id>, the layout
        # koji.pathinfo.taskrelpath() produces and kojid always uses.
        self.strict_task_paths = strict_task_paths
        self.chunks: dict[str, list[UploadChunk]] = {}
        self._dir_owner: dict[str, int] = {}

    # -- path rules (kojihub.get_upload_path) ---------------------------------

    def resolve(
        self,
        reldir: str,
        name: str,
        create: bool,
        volume: str | None,
        user_id: int | None,
        check_task_dir: TaskDirCheck,
    ) -> str:
        """Return the absolute destination, enforcing the hub's sanity checks."""
        orig_reldir, orig_name = reldir, name
        head, name = os.path.split(name)
        if head or name.startswith("."):
            raise koji.GenericError(f"Invalid upload filename: {orig_name}")
        reldir = os.path.normpath(reldir)
        if not reldir or reldir.startswith(".."):
            raise koji.GenericError(f"Invalid upload directory: {orig_reldir}")
        if volume is not None and volume != "DEFAULT":
            raise koji.GenericError(f"No such entry in table volume: {volume}")
        parts = reldir.split("/")
        check_user = True
        if create and parts[0] == "tasks":
            if len(parts) < 3:
                raise koji.GenericError(f"Invalid task upload directory: {orig_reldir}")
            try:
                task_id = int(parts[2])
            except ValueError:
                raise koji.GenericError(f"Invalid task upload directory: {orig_reldir}") from None
            if self.strict_task_paths and parts[1] != str(task_id % 10000):
                expected = koji.pathinfo.taskrelpath(task_id)
                raise koji.GenericError(
                    f"Invalid task upload directory: {orig_reldir} (hubfake expects {expected})"
                )
            check_task_dir(task_id)
            check_user = False
        udir = os.path.join(self.workdir, reldir)
        if create:
            koji.ensuredir(udir)
            if check_user:
                # the hub keeps the owner in a '.user' file; we keep it in memory
                owner = self._dir_owner.setdefault(reldir, user_id or 0)
                if owner != user_id:
                    raise koji.GenericError(f"Invalid upload directory, not owner: {orig_reldir}")
        return os.path.join(udir, name)

    def relpath(self, fn: str) -> str:
        return os.path.relpath(fn, self.workdir)

    def _record(self, fn: str, chunk: UploadChunk) -> None:
        self.chunks.setdefault(self.relpath(fn), []).append(chunk)

    # -- rawUpload (kojihub.handle_upload, newest hub) ------------------------

    def raw_upload(
        self,
        fn: str,
        body: bytes,
        offset: int,
        overwrite: bool,
        verify: str,
    ) -> dict[str, Any]:
        st = _lstat(fn)
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise koji.GenericError(f"destination is a symlink: {fn}")
            if not stat.S_ISREG(st.st_mode):
                raise koji.GenericError(f"destination not a file: {fn}")
            if offset == 0 and not overwrite:
                raise koji.GenericError(f"upload path exists: {fn}")
        # like the hub, an empty fileverify fails here ('NoneType' not callable)
        chksum = verify_class(verify)()
        size_before = st.st_size if st is not None else 0
        fd = os.open(fn, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if offset == -1:
                offset = os.lseek(fd, 0, os.SEEK_END)
            elif overwrite:
                # rewriting a log from this offset on: drop everything after it
                os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
            else:
                os.lseek(fd, offset, os.SEEK_SET)
            os.write(fd, body)
            chksum.update(body)
            if not overwrite:
                flen = os.lseek(fd, 0, os.SEEK_END)
                expected = offset + len(body)
                if flen != expected:
                    raise koji.GenericError(
                        f"Incorrect upload length for {fn} - Expected {expected}, actual {flen}"
                    )
        finally:
            os.close(fd)
        self._record(fn, UploadChunk("rawUpload", offset, len(body), overwrite, size_before))
        return {
            "size": len(body),
            "fileverify": verify,
            "offset": offset,
            "hexdigest": chksum.hexdigest(),
        }

    # -- uploadFile (kojihub.RootExports.uploadFile) --------------------------

    def upload_file(
        self,
        resolve: Callable[[], str],
        size: Any,
        checksum: Any,
        offset: Any,
        data: str,
    ) -> bool:
        """Write one base64 chunk; False (not a fault) on a size/digest mismatch."""
        contents = base64.b64decode(data)
        offset = koji.decode_int(offset)
        size = koji.decode_int(size)
        if isinstance(checksum, str):
            verify: str | None = "md5"
            digest = checksum
        elif checksum is None:
            verify, digest = None, ""
        else:
            verify, digest = checksum
        sum_cls = verify_class(verify)
        if offset != -1:
            if size is not None and size != len(contents):
                return False
            if sum_cls is not None and digest != sum_cls(contents).hexdigest():
                return False
        fn = resolve()
        st = _lstat(fn)
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                raise koji.GenericError(f"destination not a file: {fn}")
            if offset == 0 and not fn.endswith(".log"):
                # only .log files may be re-sent from the start (live log viewing)
                raise koji.GenericError(f"file already exists: {fn}")
        size_before = st.st_size if st is not None else 0
        ok = True
        fd = os.open(fn, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if offset == 0 or (offset == -1 and size == len(contents)):
                os.ftruncate(fd, 0)
            if offset == -1:
                os.lseek(fd, 0, os.SEEK_END)
            else:
                os.lseek(fd, offset, os.SEEK_SET)
            os.write(fd, contents)
            if offset == -1:
                if size is not None:
                    os.ftruncate(fd, size)
                if sum_cls is not None:
                    os.lseek(fd, 0, os.SEEK_SET)
                    whole = sum_cls()
                    while True:
                        block = os.read(fd, 819200)
                        if not block:
                            break
                        whole.update(block)
                    ok = digest == whole.hexdigest()
        finally:
            os.close(fd)
        self._record(fn, UploadChunk("uploadFile", offset, len(contents), False, size_before))
        return ok

    # -- checkUpload ----------------------------------------------------------

    @staticmethod
    def check_upload(fn: str, verify: str | None, tail: int | None) -> dict[str, Any] | None:
        try:
            fd = os.open(fn, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise koji.GenericError(f"Not a regular file: {fn}")
            data: dict[str, Any] = {"size": st.st_size, "mtime": st.st_mtime}
            if verify:
                chksum = verify_class(verify)()
                if tail is not None:
                    if tail < 0:
                        raise koji.GenericError(f"Invalid tail value: {tail!r}")
                    os.lseek(fd, max(st.st_size - tail, 0), os.SEEK_SET)
                length = 0
                while True:
                    chunk = os.read(fd, 8192)
                    if not chunk:
                        break
                    length += len(chunk)
                    chksum.update(chunk)
                data["sumlength"] = length
                data["hexdigest"] = chksum.hexdigest()
            return data
        finally:
            os.close(fd)

    # -- inspection -----------------------------------------------------------

    def files(self) -> dict[str, bytes]:
        """Every regular file under work/, keyed by its path relative to work/."""
        out: dict[str, bytes] = {}
        for dirpath, _dirs, names in os.walk(self.workdir):
            for name in names:
                fn = os.path.join(dirpath, name)
                if os.path.isfile(fn) and not os.path.islink(fn):
                    with open(fn, "rb") as fo:
                        out[self.relpath(fn)] = fo.read()
        return out


def _lstat(fn: str) -> os.stat_result | None:
    try:
        return os.lstat(fn)
    except FileNotFoundError:
        return None
