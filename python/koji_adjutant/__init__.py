"""koji-adjutant: run Koji's buildArch, rebuildSRPM, buildSRPMFromSCM and createrepo tasks in
Podman containers.

The container lifecycle, buildroot initialisation, createrepo and log sinks are implemented
in Rust (``koji_adjutant._core``); this package re-exports them and adds the kojid glue.
"""

from koji_adjutant._core import (
    AdjutantError,
    BuildArchAdapter,
    BuildArchResult,
    BuildError,
    CallbackSink,
    ContainerError,
    ContainerHandle,
    ContainerRunResult,
    ContainerSpec,
    CreaterepoAdapter,
    CreaterepoResult,
    FileSink,
    ImageError,
    InvalidSpec,
    LoggingSink,
    LogSinkError,
    PodmanManager,
    RepoError,
    ResourceLimits,
    TaskContext,
    TaskRefused,
    TeeSink,
    VolumeMount,
    __version__,
    read_package,
)

__all__ = [
    "AdjutantError",
    "BuildArchAdapter",
    "BuildArchResult",
    "BuildError",
    "CallbackSink",
    "ContainerError",
    "ContainerHandle",
    "ContainerRunResult",
    "ContainerSpec",
    "CreaterepoAdapter",
    "CreaterepoResult",
    "FileSink",
    "ImageError",
    "InvalidSpec",
    "LogSinkError",
    "LoggingSink",
    "PodmanManager",
    "RepoError",
    "ResourceLimits",
    "TaskContext",
    "TaskRefused",
    "TeeSink",
    "VolumeMount",
    "__version__",
    "read_package",
]
