"""``provenance.intoto.json``: an in-toto Statement (v1) with a SLSA provenance (v1)
predicate, in a DSSE envelope, signed when the builder has a key.

The statement's subjects are the task's outputs (binary RPMs, the kept SRPM) by file name
and SHA-256. The predicate:

* ``buildDefinition``: ``buildType`` :data:`BUILD_TYPE`; ``externalParameters`` what the
  task request says (method, SRPM, arch, tag, repo id, keep_srpm); ``internalParameters``
  what the builder decided (task id, buildroot arch and mode, the build tag's config, macros,
  kojid's options, the hub); ``resolvedDependencies`` the SRPM (SHA-256), the Koji repo (its
  ``repomd.xml`` SHA-256) and the image that installed the root (its manifest digest).
* ``runDetails``: ``builder.id`` (the hub's URL + ``/koji-adjutant/<worker id>``) with the
  koji-adjutant version and the image as ``builderDependencies``; ``metadata``
  (``invocationId`` the task id, start and end); ``byproducts`` the lockfile and the SBOM by
  SHA-256, so the buildroot is pinned by reference.

The envelope is always DSSE (``payloadType`` ``application/vnd.in-toto+json``, the statement
base64-encoded): with ``provenance_signing_key`` in adjutant.conf it carries one signature
(securesystemslib's ``CryptoSigner``, key id as securesystemslib computes it), without one its
``signatures`` list is empty. Signing and checking signatures need the ``provenance`` extra;
building and reading an unsigned envelope need nothing beyond the standard library.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from koji_adjutant.provenance.facts import BuildFacts, file_sha256, rfc3339
from koji_adjutant.provenance.lockfile import jsonable

__all__ = [
    "BUILD_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "EnvelopeError",
    "OpenedEnvelope",
    "SigningError",
    "envelope",
    "load_public_key",
    "load_signer",
    "make_statement",
    "open_envelope",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The build type: a koji-adjutant buildArch task (docs/provenance.md describes its
#: parameters). A URN, since the project has no web home to point at.
BUILD_TYPE = "urn:koji-adjutant:buildtype:buildArch:v1"

_EXTRA_HINT = "install koji-adjutant's provenance extra (securesystemslib, cryptography)"


class SigningError(Exception):
    """The signing key cannot be loaded, or the libraries to use it are missing."""


class EnvelopeError(ValueError):
    """Not a DSSE envelope holding an in-toto statement."""


def _digest(value: str) -> dict[str, str]:
    """``sha256:abc`` or ``abc`` as an in-toto DigestSet."""
    algorithm, _, hexdigest = value.rpartition(":")
    return {algorithm or "sha256": hexdigest}


def make_statement(
    facts: BuildFacts, byproducts: Mapping[str, str | os.PathLike[str]]
) -> dict[str, Any]:
    """The in-toto statement of ``facts``; ``byproducts`` maps file names (the lockfile, the
    SBOM) to the files written, whose SHA-256 it records."""
    repo = facts.repo
    image = facts.image
    image_ref = image.reference if "://" in image.reference else f"oci://{image.reference}"
    image_annotations = {"image_id": image.id, "source": image.source}
    if image.image_digest:
        image_annotations["mock_image_digest"] = image.image_digest
    image_dep: dict[str, Any] = {
        "name": "bootstrap image" if facts.buildroot_mode == "tag" else "buildroot image",
        "uri": image_ref,
        "annotations": image_annotations,
    }
    if image.pull_digest:
        image_dep["digest"] = _digest(image.pull_digest)
    repo_dep: dict[str, Any] = {
        "name": f"koji repo {repo.id} of tag {repo.tag_name} ({repo.arch})",
        "uri": repo.url,
        "annotations": {
            "repo_id": repo.id,
            "tag": repo.tag_name,
            "digest_of": "repodata/repomd.xml",
        },
    }
    if repo.repomd_sha256:
        repo_dep["digest"] = {"sha256": repo.repomd_sha256}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": rpm.filename, "digest": {"sha256": rpm.sha256}} for rpm in facts.outputs
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "method": facts.method,
                    "srpm": facts.srpm_request,
                    "arch": facts.arch,
                    "tag": facts.repo.tag_name,
                    "repo_id": repo.id,
                    "keep_srpm": facts.keep_srpm,
                },
                "internalParameters": {
                    "task_id": facts.task_id,
                    "hub": facts.hub,
                    "repo_used": repo.used or repo.url,
                    "buildroot_arch": facts.buildroot_arch,
                    "buildroot_mode": facts.buildroot_mode,
                    "install_group": facts.install_group,
                    "build_config": jsonable(facts.build_config),
                    "macros": dict(facts.macros),
                    "kojid": jsonable(facts.kojid_options),
                },
                "resolvedDependencies": [
                    {
                        "name": facts.srpm.filename,
                        "digest": {"sha256": facts.srpm.sha256},
                        "annotations": {"role": "srpm"},
                    },
                    repo_dep,
                    image_dep,
                ],
            },
            "runDetails": {
                "builder": {
                    "id": builder_id(facts),
                    "version": {"koji-adjutant": facts.version},
                    "builderDependencies": [image_dep],
                },
                "metadata": {
                    "invocationId": str(facts.task_id),
                    "startedOn": rfc3339(facts.started),
                    "finishedOn": rfc3339(facts.finished),
                },
                "byproducts": [
                    {
                        "name": name,
                        "digest": {"sha256": file_sha256(path)},
                        "mediaType": "application/spdx+json"
                        if name.endswith(".spdx.json")
                        else "application/json",
                    }
                    for name, path in byproducts.items()
                ],
            },
        },
    }


def builder_id(facts: BuildFacts) -> str:
    """The builder's id: ``<hub URL>/koji-adjutant/<worker id>`` (an identifier, not a page),
    or ``urn:koji-adjutant:worker:<worker id>`` when the hub's URL is unknown."""
    if facts.hub:
        return f"{facts.hub.rstrip('/')}/koji-adjutant/{facts.worker_id}"
    return f"urn:koji-adjutant:worker:{facts.worker_id}"


# -- DSSE ---------------------------------------------------------------------------------------


def load_signer(path: str | os.PathLike[str]) -> Any:
    """A securesystemslib ``CryptoSigner`` for the PEM (PKCS#8, unencrypted) private key at
    ``path``. Raises :class:`SigningError` saying what is wrong."""
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner
    except ImportError as exc:
        raise SigningError(f"cannot sign provenance: {exc}; {_EXTRA_HINT}") from None
    try:
        with open(path, "rb") as handle:
            pem = handle.read()
    except OSError as exc:
        raise SigningError(f"cannot read the provenance signing key {path}: {exc}") from None
    try:
        return CryptoSigner(load_pem_private_key(pem, password=None))
    except Exception as exc:  # ValueError, TypeError, UnsupportedAlgorithm
        raise SigningError(
            f"{path} is not a usable provenance signing key (PEM PKCS#8, unencrypted,"
            f" Ed25519, ECDSA or RSA): {exc}"
        ) from None


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """A securesystemslib ``SSlibKey`` from a PEM public key (what ``verify --key`` takes).
    Its key id is securesystemslib's default, the one the signer's signatures carry."""
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        from securesystemslib.signer import SSlibKey
    except ImportError as exc:
        raise SigningError(f"cannot check signatures: {exc}; {_EXTRA_HINT}") from None
    try:
        with open(path, "rb") as handle:
            pem = handle.read()
    except OSError as exc:
        raise SigningError(f"cannot read the public key {path}: {exc}") from None
    try:
        return SSlibKey.from_crypto(load_pem_public_key(pem))
    except Exception as exc:
        raise SigningError(f"{path} is not a usable PEM public key: {exc}") from None


def envelope(statement: Mapping[str, Any], signer: Any = None) -> dict[str, Any]:
    """The DSSE envelope of ``statement``: signed by ``signer`` (a securesystemslib
    ``Signer``) or, without one, with an empty ``signatures`` list."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if signer is None:
        return {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [],
        }
    from securesystemslib.dsse import Envelope

    env = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    env.sign(signer)
    return env.to_dict()


@dataclass(frozen=True)
class OpenedEnvelope:
    """An envelope read back: its statement, how many signatures it carries, and the key ids
    of those a given key verified."""

    statement: dict[str, Any]
    signature_keyids: tuple[str, ...]
    verified_keyids: tuple[str, ...]

    @property
    def signed(self) -> bool:
        return bool(self.signature_keyids)


def open_envelope(data: bytes, key: Any = None) -> OpenedEnvelope:
    """Parse a DSSE envelope and its in-toto statement; with ``key`` (an ``SSlibKey``), check
    the signatures against it. Raises :class:`EnvelopeError` for anything malformed; a
    signature that does not verify is not an error (``verified_keyids`` is empty)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not {"payload", "payloadType", "signatures"} <= set(doc):
        raise EnvelopeError("not a DSSE envelope (payload, payloadType, signatures)")
    if doc["payloadType"] != PAYLOAD_TYPE:
        raise EnvelopeError(f"payloadType is {doc['payloadType']!r}, not {PAYLOAD_TYPE!r}")
    if not isinstance(doc["signatures"], list):
        raise EnvelopeError("signatures is not a list")
    try:
        payload = base64.b64decode(str(doc["payload"]), validate=True)
        statement = json.loads(payload)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"the payload is not base64 JSON: {exc}") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError(f"the payload is not an in-toto statement ({STATEMENT_TYPE})")
    keyids = tuple(str(sig.get("keyid", "")) for sig in doc["signatures"] if isinstance(sig, dict))
    verified: tuple[str, ...] = ()
    if key is not None and keyids:
        from securesystemslib.dsse import Envelope
        from securesystemslib.exceptions import VerificationError

        try:
            env = Envelope.from_dict(json.loads(data))
        except Exception as exc:  # KeyError, FormatError, ValueError
            raise EnvelopeError(f"malformed signatures: {exc}") from None
        try:
            verified = tuple(env.verify([key], 1))
        except VerificationError:
            verified = ()
    return OpenedEnvelope(statement, keyids, verified)
