"""Names for the values the extension takes and returns, for type checkers and readers.

The extension (``koji_adjutant._core``) checks each value at run time and raises
``InvalidSpec`` for anything outside these sets.
"""

from __future__ import annotations

import pathlib
from typing import Literal, TypedDict

#: A container's network: none at all, or podman's default bridge.
Network = Literal["none", "bridge"]

#: When an image is pulled: every time, only when absent, or never (absent is an ImageError).
PullPolicy = Literal["always", "if-not-present", "never"]

#: SELinux relabelling of a bind mount: podman's ``:z`` (shared) or ``:Z`` (private).
SelinuxLabel = Literal["z", "Z"]

#: Where a buildArch buildroot comes from: the tag's repo (mock's bootstrap model) or the image.
BuildrootMode = Literal["tag", "image"]


class FileSinkState(TypedDict):
    """What ``FileSink.state()`` returns."""

    path: pathlib.Path
    bytes_written: int
    bytes_dropped: int
    generation: int
    finished: bool


__all__ = ["BuildrootMode", "FileSinkState", "Network", "PullPolicy", "SelinuxLabel"]
