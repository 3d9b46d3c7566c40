"""Checking an RPM against its task's provenance (``koji-adjutant verify``).

Checks, each ``ok``, ``FAIL`` or ``skip``:

1. the provenance file is a DSSE envelope holding an in-toto statement with a SLSA v1
   predicate;
2. its signature: with a public key, the envelope must carry a signature that key verifies;
   without one, the signature is not checked (and an unsigned envelope proves nothing about
   who made it);
3. the RPM's SHA-256 is one of the statement's subjects;
4. with a lockfile: its SHA-256 is the ``buildroot_lock.json`` byproduct the provenance
   records, and what it says about the repo and the image agrees with the provenance.

The verdict: ``VERIFIED`` (exit 0) when nothing failed and a key verified the signature;
``REJECTED`` (exit 1) when any check failed; ``UNAUTHENTICATED`` (exit 3) when nothing failed
but no key verified a signature (none given, or the envelope is unsigned and no key was
given). Unreadable inputs are errors (exit 2), raised as :class:`VerifyError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from koji_adjutant.provenance.attestation import (
    PREDICATE_TYPE,
    EnvelopeError,
    open_envelope,
)

__all__ = ["Check", "Verdict", "VerifyError", "verify"]

LOCK_NAME = "buildroot_lock.json"
EXIT_VERIFIED = 0
EXIT_REJECTED = 1
EXIT_ERROR = 2
EXIT_UNAUTHENTICATED = 3


class VerifyError(Exception):
    """An input cannot be read (exit status 2)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "fail", "skip"
    detail: str

    def line(self) -> str:
        word = {"ok": "ok", "fail": "FAIL", "skip": "skip"}[self.status]
        return f"{word:<5} {self.name}: {self.detail}"


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    authenticated: bool = False

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def word(self) -> str:
        if self.failed:
            return "REJECTED"
        return "VERIFIED" if self.authenticated else "UNAUTHENTICATED"

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_REJECTED
        return EXIT_VERIFIED if self.authenticated else EXIT_UNAUTHENTICATED


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise VerifyError(f"cannot read the {what} {path}: {exc}") from None


def _sha256_file(path: str | os.PathLike[str], what: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise VerifyError(f"cannot read the {what} {path}: {exc}") from None
    return digest.hexdigest()


def _check_signature(verdict: Verdict, signature_keyids: tuple, verified: tuple, key: Any) -> None:
    if key is None:
        if signature_keyids:
            verdict.add(
                "signature",
                "skip",
                f"signed by key id {', '.join(signature_keyids)}; not checked (no --key)",
            )
        else:
            verdict.add("signature", "skip", "the provenance is not signed")
        return
    if not signature_keyids:
        verdict.add("signature", "fail", "the provenance is not signed, a key was given")
    elif verified:
        verdict.add("signature", "ok", f"verified with key id {verified[0]}")
        verdict.authenticated = True
    else:
        verdict.add(
            "signature",
            "fail",
            f"no signature verifies with the given key (key id {key.keyid}); signed by key id"
            f" {', '.join(signature_keyids)}",
        )


def _check_subject(verdict: Verdict, statement: dict[str, Any], rpm: str) -> None:
    digest = _sha256_file(rpm, "RPM")
    name = os.path.basename(rpm)
    subjects = [s for s in statement.get("subject") or [] if isinstance(s, dict)]
    matching = [s for s in subjects if (s.get("digest") or {}).get("sha256") == digest]
    if matching:
        subject = matching[0]
        note = "" if subject.get("name") == name else f" (built as {subject.get('name')})"
        verdict.add("subject", "ok", f"{name} sha256:{digest} was built by this task{note}")
        return
    same_name = [s for s in subjects if s.get("name") == name]
    if same_name:
        built = (same_name[0].get("digest") or {}).get("sha256")
        verdict.add(
            "subject",
            "fail",
            f"{name} has sha256:{digest}, but the task built it with sha256:{built}",
        )
    else:
        names = ", ".join(str(s.get("name")) for s in subjects) or "none"
        verdict.add(
            "subject", "fail", f"{name} (sha256:{digest}) is not a subject; subjects: {names}"
        )


def _byproduct_digest(statement: dict[str, Any], name: str) -> str | None:
    predicate = statement.get("predicate") or {}
    for item in (predicate.get("runDetails") or {}).get("byproducts") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return (item.get("digest") or {}).get("sha256")
    return None


def _check_lock(verdict: Verdict, statement: dict[str, Any], lock: str | None) -> None:
    if lock is None:
        verdict.add("lockfile", "skip", "no lockfile given or found")
        return
    data = _read(lock, "lockfile")
    digest = hashlib.sha256(data).hexdigest()
    recorded = _byproduct_digest(statement, LOCK_NAME)
    if recorded is None:
        verdict.add("lockfile", "fail", "the provenance records no buildroot_lock.json")
        return
    if digest != recorded:
        verdict.add(
            "lockfile",
            "fail",
            f"{lock} has sha256:{digest}, the provenance records sha256:{recorded}",
        )
        return
    verdict.add("lockfile", "ok", f"sha256:{digest} is the task's buildroot_lock.json")
    try:
        document = json.loads(data)
        ours = document["config"]["koji_adjutant"]
        repo_id = ours["koji_repo"]["id"]
    except (ValueError, KeyError, TypeError) as exc:
        verdict.add("lockfile content", "fail", f"not a koji-adjutant lockfile: {exc}")
        return
    params = statement["predicate"]["buildDefinition"].get("externalParameters") or {}
    if repo_id != params.get("repo_id"):
        verdict.add(
            "lockfile content",
            "fail",
            f"repo {repo_id} in the lockfile, repo {params.get('repo_id')} in the provenance",
        )
        return
    verdict.add(
        "lockfile content",
        "ok",
        f"{len(document['buildroot']['rpms'])} packages from Koji repo {repo_id}",
    )


def verify(
    rpm: str | os.PathLike[str],
    provenance: str | os.PathLike[str],
    lock: str | os.PathLike[str] | None = None,
    key: Any = None,
) -> Verdict:
    """Check ``rpm`` against ``provenance`` (and ``lock``); ``key`` is an ``SSlibKey`` (from
    :func:`~koji_adjutant.provenance.attestation.load_public_key`) or None."""
    verdict = Verdict()
    data = _read(provenance, "provenance")
    try:
        opened = open_envelope(data, key)
    except EnvelopeError as exc:
        verdict.add("provenance", "fail", f"{provenance}: {exc}")
        return verdict
    statement = opened.statement
    if statement.get("predicateType") != PREDICATE_TYPE or not isinstance(
        (statement.get("predicate") or {}).get("buildDefinition"), dict
    ):
        verdict.add("provenance", "fail", f"not a SLSA provenance ({PREDICATE_TYPE}) statement")
        return verdict
    params = statement["predicate"]["buildDefinition"].get("internalParameters") or {}
    verdict.add(
        "provenance",
        "ok",
        f"in-toto statement, SLSA provenance v1 of Koji task {params.get('task_id')}",
    )
    _check_signature(verdict, opened.signature_keyids, opened.verified_keyids, key)
    _check_subject(verdict, statement, os.fspath(rpm))
    _check_lock(verdict, statement, None if lock is None else os.fspath(lock))
    return verdict
