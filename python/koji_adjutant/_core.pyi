# Hand-written stub of the Rust extension; `make lint` checks it with mypy.stubtest.
import datetime
import os
import pathlib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, final

from koji_adjutant.types import BuildrootMode, FileSinkState, Network, PullPolicy, SelinuxLabel

__version__: str
#: The capabilities of a buildArch's bootstrap container (root installing the buildroot).
INSTALL_CAPS: tuple[str, ...]

class AdjutantError(Exception): ...
class ContainerError(AdjutantError): ...
class ImageError(ContainerError): ...
class LogSinkError(AdjutantError): ...

class BuildError(AdjutantError):
    log: str | None
    exit_code: int | None

class RepoError(AdjutantError):
    log: str | None
    exit_code: int | None

class TaskRefused(AdjutantError): ...
class InvalidSpec(AdjutantError, ValueError): ...

def read_package(path: str | os.PathLike[str]) -> dict[str, object]: ...
def kojid_build_result(
    upload_path: str,
    task_id: int,
    *,
    rpms: Sequence[str | os.PathLike[str]],
    srpms: Sequence[str | os.PathLike[str]],
    logs: Sequence[str],
    brootid: int,
    keep_srpm: bool,
) -> dict[str, object]: ...

class LogSink(Protocol):
    def write_stdout(self, data: bytes, /) -> object: ...
    def write_stderr(self, data: bytes, /) -> object: ...

@final
class VolumeMount:
    @property
    def source(self) -> pathlib.Path: ...
    @property
    def target(self) -> pathlib.Path: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def selinux_label(self) -> SelinuxLabel | None: ...
    def __new__(
        cls,
        source: str | os.PathLike[str],
        target: str | os.PathLike[str],
        *,
        read_only: bool = True,
        selinux_label: SelinuxLabel | None = None,
    ) -> VolumeMount: ...

@final
class ResourceLimits:
    @property
    def memory_bytes(self) -> int | None: ...
    @property
    def cpus(self) -> float | None: ...
    @property
    def pids(self) -> int | None: ...
    def __new__(
        cls, memory_bytes: int | None = None, cpus: float | None = None, pids: int | None = 4096
    ) -> ResourceLimits: ...

@final
class ContainerSpec:
    @property
    def image(self) -> str: ...
    @property
    def command(self) -> list[str]: ...
    @property
    def environment(self) -> dict[str, str]: ...
    @property
    def workdir(self) -> str | None: ...
    @property
    def mounts(self) -> list[VolumeMount]: ...
    @property
    def user(self) -> str | None: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def network(self) -> Network: ...
    @property
    def limits(self) -> ResourceLimits: ...
    @property
    def timeout(self) -> int | None: ...
    @property
    def remove_after_exit(self) -> bool: ...
    @property
    def cap_add(self) -> list[str]: ...
    @property
    def task_id(self) -> int | None: ...
    def __new__(
        cls,
        image: str,
        command: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        mounts: Sequence[VolumeMount] = ...,
        user: str | None = None,
        labels: Mapping[str, str] | None = None,
        network: Network = "none",
        limits: ResourceLimits | None = None,
        timeout: int | None = None,
        remove_after_exit: bool = True,
        cap_add: Sequence[str] = ...,
        task_id: int | None = None,
    ) -> ContainerSpec: ...

@final
class TaskContext:
    task_id: int
    work_dir: pathlib.Path
    worker_id: str | None
    log_dir: pathlib.Path | None
    def __new__(
        cls,
        task_id: int,
        work_dir: str | os.PathLike[str],
        *,
        worker_id: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> TaskContext: ...

@final
class ContainerHandle:
    def __new__(cls, manager: PodmanManager, container_id: str) -> ContainerHandle: ...
    @property
    def container_id(self) -> str: ...
    def __enter__(self) -> ContainerHandle: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool: ...

@final
class ContainerRunResult:
    @property
    def exit_code(self) -> int: ...
    @property
    def started_at(self) -> datetime.datetime: ...
    @property
    def finished_at(self) -> datetime.datetime: ...
    @property
    def container_id(self) -> str: ...

@final
class PodmanManager:
    def __new__(
        cls,
        socket: str | None = None,
        *,
        worker_id: str | None = None,
        timeout: float | None = None,
    ) -> PodmanManager: ...
    @property
    def socket(self) -> str: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    def ping(self) -> str: ...
    def inspect_image(self, image: str) -> dict[str, object]: ...
    def ensure_image_available(
        self, image: str, *, pull_policy: PullPolicy = "if-not-present"
    ) -> str: ...
    def run(self, spec: ContainerSpec, sink: LogSink | None = None) -> ContainerRunResult: ...
    def create(self, spec: ContainerSpec) -> ContainerHandle: ...
    def start(self, handle: ContainerHandle, sink: LogSink | None = None) -> None: ...
    def wait(self, handle: ContainerHandle) -> int: ...
    def exec(
        self,
        handle: ContainerHandle,
        argv: Sequence[str],
        *,
        sink: LogSink | None = None,
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> int: ...
    def copy_to(
        self, handle: ContainerHandle, host_path: str | os.PathLike[str], container_path: str
    ) -> None: ...
    def export(self, handle: ContainerHandle, path: str, dest: str | os.PathLike[str]) -> int: ...
    def stop(self, handle: ContainerHandle, *, grace_seconds: int = 10) -> None: ...
    def remove(self, handle: ContainerHandle, *, force: bool = True) -> None: ...
    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, object]]: ...
    def reap(self, labels: Mapping[str, str]) -> int: ...
    def list_images(self, labels: Mapping[str, str]) -> list[dict[str, object]]: ...
    def remove_image(self, image: str) -> bool: ...
    def remove_expired_kept_roots(self) -> int: ...

@final
class CreaterepoResult:
    repodata_dir: pathlib.Path
    files: list[str]
    empty: bool
    logs: list[pathlib.Path]
    upload_path: str
    state_log: pathlib.Path
    usage: dict[str, object]
    def kojid_result(self, upload_path: str | None = None) -> list[object]: ...

@final
class CreaterepoAdapter:
    def __new__(
        cls,
        manager: PodmanManager,
        image: str,
        *,
        pull_policy: PullPolicy = "if-not-present",
        createrepo_update: bool = True,
        createrepo_skip_stat: bool = False,
        limits: ResourceLimits | None = None,
        selinux_label: SelinuxLabel | None = None,
        log_cap_bytes: int | None = None,
        timeout: int | None = None,
    ) -> CreaterepoAdapter: ...
    @property
    def image(self) -> str: ...
    def run(
        self,
        ctx: TaskContext,
        *,
        repo_dir: str | os.PathLike[str],
        topdir: str | os.PathLike[str] | None = None,
        groups: str | os.PathLike[str] | None = None,
        pkglist: str | os.PathLike[str] | None = None,
        old_repodata: str | os.PathLike[str] | None = None,
        external_repos: Iterable[Mapping[str, object]] | None = None,
        sink: LogSink | None = None,
        on_usage: Callable[[dict[str, object]], object] | None = None,
    ) -> CreaterepoResult: ...

@final
class FileSink:
    def __new__(
        cls,
        path: str | os.PathLike[str],
        *,
        cap_bytes: int | None = None,
        timestamps: bool = False,
        stream_markers: bool = False,
    ) -> FileSink: ...
    @property
    def path(self) -> pathlib.Path: ...
    def write_stdout(self, data: bytes) -> None: ...
    def write_stderr(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def state(self) -> FileSinkState: ...

@final
class LoggingSink:
    def __new__(
        cls,
        logger: str = "koji_adjutant.container",
        *,
        stdout_level: int = 20,
        stderr_level: int = 30,
    ) -> LoggingSink: ...
    def write_stdout(self, data: bytes) -> None: ...
    def write_stderr(self, data: bytes) -> None: ...
    def flush(self) -> None: ...

@final
class CallbackSink:
    def __new__(cls, callback: Callable[[str, bytes], object]) -> CallbackSink: ...
    def write_stdout(self, data: bytes) -> None: ...
    def write_stderr(self, data: bytes) -> None: ...

@final
class TeeSink:
    def __new__(cls, *sinks: LogSink) -> TeeSink: ...
    def write_stdout(self, data: bytes) -> None: ...
    def write_stderr(self, data: bytes) -> None: ...

@final
class BuildArchResult:
    task_id: int
    keep_srpm: bool
    result_dir: pathlib.Path
    rpms: list[pathlib.Path]
    srpms: list[pathlib.Path]
    logs: list[pathlib.Path]
    buildroot: list[dict[str, object]]
    lock_rpms: list[dict[str, object]]
    unknown_rpms: list[dict[str, object]]
    buildroot_arch: str
    cache_hit: bool
    image_id: str
    image_digest: str
    usage: dict[str, object]
    def kojid_result(
        self,
        brootid: int,
        *,
        upload_path: str | None = None,
        logs: Sequence[str] | None = None,
        extra_logs: Sequence[str] = ...,
    ) -> dict[str, object]: ...

@final
class BuildArchAdapter:
    def __new__(
        cls,
        manager: PodmanManager,
        image: str,
        *,
        buildroot_mode: BuildrootMode = "tag",
        pull_policy: PullPolicy = "if-not-present",
        vendor: str = "Koji",
        packager: str = "Koji",
        distribution: str = "Koji",
        mockhost: str = "koji-linux-gnu",
        rpmbuild_timeout: int = 86400,
        install_group: str = "build",
        buildhost: str | None = None,
        rpmdb_path: str | None = None,
        limits: ResourceLimits | None = None,
        selinux_label: SelinuxLabel | None = None,
        image_external_repo: str | None = None,
        cache: bool = True,
        cache_max_images: int = 8,
        cache_max_bytes: int = ...,
        cache_dir: str | os.PathLike[str] | None = None,
        log_cap_bytes: int | None = None,
        image_arches: Sequence[str] | None = None,
        userns_base: int | None = None,
        keep_failed_root: int = 0,
        yum_proxy: str | None = None,
        dnf_timeout: int = 7200,
        container_timeout: int | None = None,
    ) -> BuildArchAdapter: ...
    @property
    def image(self) -> str: ...
    @property
    def buildroot_mode(self) -> BuildrootMode: ...
    def check(
        self,
        arch: str,
        *,
        build_config: Mapping[str, object],
        buildroot_arch: str | None = None,
    ) -> str: ...
    def run(
        self,
        ctx: TaskContext,
        srpm_path: str | os.PathLike[str],
        arch: str,
        *,
        repo: str,
        repo_id: int,
        tag_name: str,
        build_config: Mapping[str, object],
        keep_srpm: bool = False,
        topdir: str | os.PathLike[str] | None = None,
        buildroot_arch: str | None = None,
        repomd_sha256: str | None = None,
        sink: LogSink | None = None,
        on_buildroot_ready: Callable[[list[dict[str, object]]], object] | None = None,
        on_buildroot_final: Callable[[list[dict[str, object]]], object] | None = None,
        on_usage: Callable[[dict[str, object]], object] | None = None,
    ) -> BuildArchResult: ...
    def build_srpm(
        self,
        ctx: TaskContext,
        *,
        build_config: Mapping[str, object],
        srpm_path: str | os.PathLike[str] | None = None,
        checkout: str | os.PathLike[str] | None = None,
        workdir: str = "",
        spec: str | None = None,
        sources: str | None = None,
        source_cmd: Sequence[str] | None = None,
        source_network: bool = False,
        scm_credentials_dir: str | os.PathLike[str] | None = None,
        repo: str,
        repo_id: int,
        tag_name: str,
        arch: str = "noarch",
        topdir: str | os.PathLike[str] | None = None,
        buildroot_arch: str | None = None,
        repomd_sha256: str | None = None,
        sink: LogSink | None = None,
        on_buildroot_ready: Callable[[list[dict[str, object]]], object] | None = None,
        on_usage: Callable[[dict[str, object]], object] | None = None,
    ) -> BuildArchResult: ...
