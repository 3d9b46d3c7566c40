"""Which task image a task runs in: the tag's ``adjutant.image*`` extra, else the builder's default.

A Koji admin picks images per build tag with tag extra (``koji edit-tag --extra``), which the
hub inherits along the tag hierarchy and hands to kojid in ``getBuildConfig``'s ``extra``:

* for a buildArch, rebuildSRPM or buildSRPMFromSCM task in tag mode, where the image is the
  *bootstrap* (its dnf installs the buildroot from the tag's repo), first Koji's own
  ``mock.bootstrap_image``, as mock uses it, unless ``mock.use_bootstrap_image`` is set and
  false;
* ``adjutant.image.<method>`` (``adjutant.image.buildArch``, ``adjutant.image.createrepo``,
  ``adjutant.image.rebuildSRPM``, ``adjutant.image.buildSRPMFromSCM``)
* ``adjutant.image.<arch>`` (``adjutant.image.x86_64``, ``adjutant.image.aarch64`` ...; the
  canonical Koji arch of the buildroot or repo)
* ``adjutant.image``
* the builder's ``task_image`` (``adjutant.conf``)

The first one set wins, in that order. A method key beats an arch key because it is the more
deliberate choice: createrepo needs only createrepo_c, so a tag typically names one small tools
image for it while its buildArch images differ per arch. Resolution happens once per task,
from the build config the task already fetched; a value that is not a string naming a
well-formed image, or an ``adjutant.image.<suffix>`` whose suffix is neither a known method
nor a known arch (a typo would otherwise be ignored silently), fails the task with a message
that names the tag, the key and the value.

With ``image_allowlist`` in ``adjutant.conf``, the chosen image, wherever it came from, must
be covered by it (:func:`koji_adjutant.config.image_allowed`); otherwise the task fails,
naming the image, where it came from and the allowlist. A tag (anyone who may edit its extra)
then cannot make this builder pull and run an image from a registry the admin did not choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import koji

from koji_adjutant.config import check_image_reference, image_allowed

__all__ = [
    "BOOTSTRAP_IMAGE_KEY",
    "IMAGE_KEY",
    "METHODS",
    "ImageChoice",
    "ImagePolicyError",
    "select_image",
]

IMAGE_KEY = "adjutant.image"
#: Koji's tag extra for mock's bootstrap image, and its switch.
BOOTSTRAP_IMAGE_KEY = "mock.bootstrap_image"
USE_BOOTSTRAP_IMAGE_KEY = "mock.use_bootstrap_image"
#: The task methods koji-adjutant runs; the only method suffixes ``adjutant.image.`` accepts.
METHODS = ("buildArch", "createrepo", "rebuildSRPM", "buildSRPMFromSCM")


class ImagePolicyError(koji.ConfigurationError):
    """A tag's ``adjutant.image*`` extra is invalid, or no image is configured at all."""


@dataclass(frozen=True)
class ImageChoice:
    """The image for one task and where it came from (for the task's log)."""

    image: str
    #: The tag extra key that chose it, or ``"task_image"`` for the builder's default.
    source: str


#: Arch names an ``adjutant.image.<arch>`` key may use: rpm's arches (koji.arch's table, which
#: koji.arch computes by reading /proc at import, so it is not imported here) and the canonical
#: names Koji gives them.
_ARCHES = frozenset(
    """
    alpha alphaev4 alphaev45 alphaev5 alphaev56 alphaev6 alphaev67 alphaev68 alphaev7
    alphapca56 amd64 arm arm64 armhfp armv5tejl armv5tel armv6hl armv6l armv7hl armv7hnl
    armv7l athlon aarch64 geode i386 i486 i586 i686 ia32e ia64 loongarch64 mips mips64
    mips64el mipsel ppc ppc64 ppc64iseries ppc64le ppc64p7 ppc64pseries riscv64 s390 s390x
    sh3 sh4 sh4a sparc sparc64 sparc64v sparcv8 sparcv9 sparcv9v x86_64
    """.split()
)


def _known_arches() -> frozenset[str]:
    return _ARCHES


def _check_keys(extra: Mapping[str, Any], tag_name: str) -> None:
    """Reject ``adjutant.image.<suffix>`` keys that no method or arch would ever read."""
    known = _known_arches()
    prefix = IMAGE_KEY + "."
    for key in extra:
        if not key.startswith(prefix):
            continue
        suffix = key[len(prefix) :]
        if suffix not in METHODS and suffix not in known:
            raise ImagePolicyError(
                f"tag {tag_name}: unknown extra key {key!r}: the suffix must be a task method"
                f" ({', '.join(METHODS)}) or a Koji arch (e.g. x86_64, aarch64)"
            )


def _value(extra: Mapping[str, Any], key: str, tag_name: str) -> str | None:
    if key not in extra:
        return None
    value = extra[key]
    if not isinstance(value, str):
        raise ImagePolicyError(
            f"tag {tag_name}: extra {key} = {value!r}: expected a string naming an image"
        )
    try:
        return check_image_reference(value.strip())
    except ValueError as exc:
        raise ImagePolicyError(f"tag {tag_name}: extra {key} = {value!r}: {exc}") from None


def _enabled(value: Any) -> bool:
    """A tag flag as mock reads it: Python truth, and the words an admin may type for false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "none")
    return bool(value)


def select_image(
    extra: Mapping[str, Any] | None,
    *,
    tag_name: str,
    method: str,
    arch: str,
    default: str | None,
    bootstrap: bool = False,
    allowlist: Sequence[str] | None = None,
) -> ImageChoice:
    """The image for a ``method`` task on canonical ``arch`` of tag ``tag_name``.

    ``extra`` is the tag extra of ``getBuildConfig`` (inherited); ``default`` the builder's
    ``task_image``; ``bootstrap`` says the image is a bootstrap (tag mode buildArch), for
    which Koji's ``mock.bootstrap_image`` comes first; ``allowlist`` the builder's
    ``image_allowlist`` (None: any image). Raises :class:`ImagePolicyError` (a
    ``koji.ConfigurationError``, so kojid reports its message as the task's failure) when a
    value is invalid, nothing is set, or the image is not allowed.
    """
    choice = _choose(
        extra, tag_name=tag_name, method=method, arch=arch, default=default, bootstrap=bootstrap
    )
    if allowlist is not None and not image_allowed(choice.image, tuple(allowlist)):
        origin = (
            "task_image of adjutant.conf"
            if choice.source == "task_image"
            else f"tag extra {choice.source} of tag {tag_name}"
        )
        raise ImagePolicyError(
            f"image {choice.image} (from {origin}) is not in this builder's image_allowlist"
            f" ({' '.join(allowlist)}); a fully qualified reference on an allowed registry is"
            " needed"
        )
    return choice


def _choose(
    extra: Mapping[str, Any] | None,
    *,
    tag_name: str,
    method: str,
    arch: str,
    default: str | None,
    bootstrap: bool,
) -> ImageChoice:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    extra = extra or {}
    _check_keys(extra, tag_name)
    keys = [f"{IMAGE_KEY}.{method}", f"{IMAGE_KEY}.{arch}", IMAGE_KEY]
    if bootstrap and _enabled(extra.get(USE_BOOTSTRAP_IMAGE_KEY, True)):
        keys.insert(0, BOOTSTRAP_IMAGE_KEY)
    for key in keys:
        image = _value(extra, key, tag_name)
        if image is not None:
            return ImageChoice(image, key)
    if default:
        return ImageChoice(default, "task_image")
    raise ImagePolicyError(
        f"no task image for {method} on {arch} in tag {tag_name}: set the tag extra"
        f" {IMAGE_KEY} (or {IMAGE_KEY}.{method} / {IMAGE_KEY}.{arch}) or task_image in"
        " adjutant.conf"
    )
