"""The sample package of koji-adjutant's README demo, shipped as data in the wheel.

``SPEC`` (koji-adjutant-hello: a C program and a noarch ``-doc`` subpackage) builds with
nothing but a Koji ``build`` group. In a buildroot made from the tag (the default) that group
comes from the dev distribution (``devdistro.spec``, the task image's own files as RPMs; see
:mod:`koji_adjutant.devdistro`). In image mode with the Debian-based task image it is met by the
RPM built from ``BUILDTOOLS_SPEC``, which declares the image's toolchain as RPM Provides.
Sources live next to the specs, so build SRPMs with ``--define "_sourcedir <SAMPLE_DIR>"``.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR: Path = Path(__file__).resolve().parent
SPEC: Path = SAMPLE_DIR / "koji-adjutant-hello.spec"
BUILDTOOLS_SPEC: Path = SAMPLE_DIR / "debian-buildtools.spec"

__all__ = ["BUILDTOOLS_SPEC", "SAMPLE_DIR", "SPEC"]
