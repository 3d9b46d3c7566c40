"""``sbom.spdx.json``: an SPDX 2.3 document (JSON) of one buildArch task.

Packages: the task's SRPM (``SPDXRef-SRPM``), every output (each binary RPM, and the rebuilt
SRPM when kept), every buildroot package. Outputs and the SRPM carry their file's SHA-256;
buildroot packages carry their SIGMD5 (the RPM header's digest, what Koji and mock identify
them by) in their comment and, as a purl qualifier, the URL the lockfile gives them.
Relationships: the document ``DESCRIBES`` each output; each output is ``GENERATED_FROM`` the
SRPM ("built from"); each buildroot package is a ``BUILD_TOOL_OF`` each output.

RPM ``License`` tags are not always SPDX expressions (Fedora's are since 2023, older ones and
other distributions' are not), and nothing here guesses: each distinct tag becomes a
``LicenseRef-`` whose extracted text is the tag as written.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from koji_adjutant.provenance.facts import (
    BuildFacts,
    LockedPackage,
    RpmFile,
    rfc3339,
    sorted_packages,
)

__all__ = ["SPDX_VERSION", "make_sbom", "purl"]

SPDX_VERSION = "SPDX-2.3"
NOASSERTION = "NOASSERTION"
# What spdx-tools accepts as a downloadLocation URL: a DNS host name with a letter TLD. A
# topurl on an IP address (or a file:// URL) is not one; the purl's download_url still says it.
_SPDX_URL = re.compile(
    r"(https?|ftp)://([\w\-.!~*'()%;:&=+$,]+@)?[a-z0-9]+([-.][a-z0-9]+){0,100}\.[a-z]{2,5}"
    r"(:[0-9]{1,5})?(/.*)?",
    re.IGNORECASE,
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def purl(
    namespace: str,
    name: str,
    version: str,
    release: str,
    arch: str,
    epoch: Any = None,
    download_url: str = "",
) -> str:
    """A package URL (``pkg:rpm/...``) with arch, epoch and download_url qualifiers."""
    qualifiers = [f"arch={quote(arch, safe='')}"]
    if epoch not in (None, ""):
        qualifiers.append(f"epoch={quote(str(epoch), safe='')}")
    if download_url:
        qualifiers.append(f"download_url={quote(download_url, safe='')}")
    return (
        f"pkg:rpm/{quote(namespace.lower(), safe='')}/{quote(name, safe='')}"
        f"@{quote(f'{version}-{release}', safe='')}?{'&'.join(qualifiers)}"
    )


class _Licenses:
    """RPM License tags as ``LicenseRef-`` ids, numbered in the order first seen."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def ref(self, text: str) -> str:
        if not text.strip():
            return NOASSERTION
        if text not in self.ids:
            self.ids[text] = f"LicenseRef-RPM-License-{len(self.ids) + 1}"
        return self.ids[text]

    def infos(self) -> list[dict[str, str]]:
        return [
            {
                "licenseId": ref,
                "name": text,
                "extractedText": text,
                "comment": "The License tag of RPM headers, as written.",
            }
            for text, ref in self.ids.items()
        ]


def _spdx_id(prefix: str, index: int, label: str) -> str:
    return f"SPDXRef-{prefix}-{index}-{_ID_UNSAFE.sub('-', label).strip('-')}"


def _download_location(url: str) -> str:
    return url if url and _SPDX_URL.fullmatch(url) else NOASSERTION


def _file_package(
    spdx_id: str, rpm: RpmFile, namespace: str, licenses: _Licenses, purpose: str
) -> dict[str, Any]:
    return {
        "SPDXID": spdx_id,
        "name": rpm.name,
        "versionInfo": rpm.evr,
        "packageFileName": rpm.filename,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": rpm.sha256}],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": licenses.ref(rpm.license),
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": purpose,
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(
                    namespace, rpm.name, rpm.version, rpm.release, rpm.arch, rpm.epoch
                ),
            }
        ],
    }


def _buildroot_package(
    spdx_id: str, pkg: LockedPackage, namespace: str, licenses: _Licenses
) -> dict[str, Any]:
    evr = f"{pkg.epoch + ':' if pkg.epoch else ''}{pkg.version}-{pkg.release}"
    return {
        "SPDXID": spdx_id,
        "name": pkg.name,
        "versionInfo": evr,
        "packageFileName": f"{pkg.name}-{pkg.version}-{pkg.release}.{pkg.arch}.rpm",
        "downloadLocation": _download_location(pkg.url),
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": licenses.ref(pkg.license),
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "INSTALL",
        "comment": f"Installed in the buildroot. RPM SIGMD5 {pkg.sigmd5}"
        + (f", signed with key {pkg.signature}." if pkg.signature else ", unsigned."),
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(
                    namespace,
                    pkg.name,
                    pkg.version,
                    pkg.release,
                    pkg.arch,
                    pkg.epoch,
                    pkg.url,
                ),
            }
        ],
    }


def document_namespace(facts: BuildFacts) -> str:
    """A URI unique to this document: the hub's URL (or a ``urn:uuid``), task id and a UUID."""
    unique = uuid.uuid4()
    if facts.hub and re.match(r"https?://", facts.hub):
        return f"{facts.hub.rstrip('/')}/koji-adjutant/spdx/task-{facts.task_id}-{unique}"
    return f"urn:uuid:{unique}"


def make_sbom(facts: BuildFacts, *, namespace: str | None = None) -> dict[str, Any]:
    """The SPDX document of ``facts`` (see the module doc). ``namespace`` is the purl
    namespace (kojid's ``vendor``, lower case, by default)."""
    purl_ns = namespace or str(facts.kojid_options.get("vendor") or "koji")
    licenses = _Licenses()
    srpm = _file_package("SPDXRef-SRPM", facts.srpm, purl_ns, licenses, "SOURCE")
    srpm["comment"] = f"The SRPM of Koji task {facts.task_id} ({facts.srpm_request})."
    outputs = []
    for i, rpm in enumerate(facts.outputs, 1):
        purpose = "SOURCE" if rpm.arch in ("src", "nosrc") else "INSTALL"
        package = _file_package(_spdx_id("Built", i, rpm.filename), rpm, purl_ns, licenses, purpose)
        package["comment"] = f"Built by Koji task {facts.task_id}."
        outputs.append(package)
    buildroot = [
        _buildroot_package(_spdx_id("Buildroot", i, pkg.nevra), pkg, purl_ns, licenses)
        for i, pkg in enumerate(sorted_packages(facts.packages), 1)
    ]
    relationships: list[dict[str, str]] = []
    for out in outputs:
        relationships.append(
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": out["SPDXID"],
            }
        )
        relationships.append(
            {
                "spdxElementId": out["SPDXID"],
                "relationshipType": "GENERATED_FROM",
                "relatedSpdxElement": srpm["SPDXID"],
            }
        )
    for tool in buildroot:
        for out in outputs:
            relationships.append(
                {
                    "spdxElementId": tool["SPDXID"],
                    "relationshipType": "BUILD_TOOL_OF",
                    "relatedSpdxElement": out["SPDXID"],
                }
            )
    if not outputs:  # SPDX wants the document to describe something
        relationships.append(
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": srpm["SPDXID"],
            }
        )
    document: dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"koji-task-{facts.task_id}-{facts.srpm.filename}-{facts.arch}",
        "documentNamespace": document_namespace(facts),
        "creationInfo": {
            "created": rfc3339(facts.finished),
            "creators": [f"Tool: koji-adjutant-{facts.version}"],
            "comment": (
                f"Koji task {facts.task_id} ({facts.method}, arch {facts.arch}) on worker"
                f" {facts.worker_id}, in a buildroot from Koji repo {facts.repo.id} of tag"
                f" {facts.repo.tag_name}; buildroot_lock.json lists the same buildroot."
            ),
        },
        "packages": [srpm, *outputs, *buildroot],
        "relationships": relationships,
    }
    infos = licenses.infos()
    if infos:
        document["hasExtractedLicensingInfos"] = infos
    return document
