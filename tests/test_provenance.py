# ruff: noqa: F811 (test_kojid_glue's fixtures are imported, then named as arguments)
"""Provenance of every buildArch (issue 11): buildroot_lock.json against mock's schema, the
SBOM through spdx-tools, the signed in-toto statement, ``koji-adjutant verify`` accepting a
build and rejecting tampering, ``koji-adjutant rebuild-root`` recreating a root, and the files
reaching the hub through kojid's upload path.

The first half needs no Podman (hand-made results, the hub fake with the scripted adapter of
test_kojid_glue); the second half (marked ``podman``) builds for real in the task image.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import koji
import kojidloader
import kojitopdir as kt
import pytest
from conftest import WORKER_ID, podman_cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from koji_adjutant import BuildArchAdapter, BuildArchResult, PodmanManager, TaskContext
from koji_adjutant.cli import main as cli_main
from koji_adjutant.config import load_config
from koji_adjutant.devdistro import DevDistro
from koji_adjutant.provenance import (
    FILE_NAMES,
    LOCK_NAME,
    PROVENANCE_NAME,
    SBOM_NAME,
    BuildFacts,
    ImageFacts,
    RepoFacts,
    facts_from_result,
    locate_packages,
    write_files,
)
from koji_adjutant.provenance.attestation import (
    BUILD_TYPE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    load_signer,
    open_envelope,
)
from koji_adjutant.provenance.rebuild import QUERY_FORMAT, RebuildError, load_lock, rebuild_root
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

# the hub fake, kojid's handlers and their fixtures, as test_kojid_glue sets them up
from test_kojid_glue import (  # noqa: F401 (fixtures)
    ARCH,
    DIST,
    BuildScript,
    FakeManager,
    World,
    build_task,
    conf,
    fakes,
    handlers,
    hello,
    hub,
    kojid,
    merge_slashes,
    options,
    real_world,
    script,
    session,
    tools,
    upload_dir,
    world,
)

# koji's ClientSession.fastUpload leaves its file open (koji 1.35/1.36)
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")

SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "buildroot-lock-schema-1.1.0.json").read_text()
)
TAG = "adj-prov"
REPO_ID = 31
STARTED = datetime(2026, 11, 29, 10, 0, 0, tzinfo=timezone.utc)


# -- validation --------------------------------------------------------------------------------


def validate_lock(data: bytes) -> dict[str, Any]:
    """The lockfile, checked against mock's schema (draft 6, as its $schema says)."""
    lock = json.loads(data)
    jsonschema.Draft6Validator(SCHEMA).validate(lock)
    return lock  # type: ignore[no-any-return]


def validate_sbom(path: Path) -> Any:
    """The SBOM parsed by spdx-tools, which must find nothing wrong with it."""
    document = parse_file(str(path))
    messages = validate_full_spdx_document(document)
    assert messages == [], [m.validation_message for m in messages]
    return document


def statement_of(path: Path) -> dict[str, Any]:
    envelope = json.loads(path.read_bytes())
    assert envelope["payloadType"] == PAYLOAD_TYPE
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- keys ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    #: Another key pair's public key (ECDSA P-256): the wrong key.
    other_public: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    out = tmp_path_factory.mktemp("keys")
    key = ed25519.Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    private = out / "provenance.key"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    paths = []
    for name, pair in (("provenance.pub", key), ("other.pub", other)):
        path = out / name
        path.write_bytes(
            pair.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths.append(path)
    return Keys(private, paths[0], paths[1])


def verify_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = cli_main(["verify", *argv])
    return status, capsys.readouterr().out


# == without Podman: results made on the host =================================================


@dataclasses.dataclass(frozen=True)
class HostBuild:
    """adj-hello built on the host, a Koji repo holding adj-libgreet, and the three files
    written for a "build" of the one in the "buildroot" of the other."""

    srpm: Path
    rpms: tuple[Path, ...]
    repo: kt.KojiRepo
    facts: BuildFacts
    out: Path


def lock_rpms_of(paths: list[Path]) -> list[dict[str, Any]]:
    entries = []
    for path in paths:
        h = kt.rpm_header(path, "name", "epoch", "version", "release", "arch", "payloadhash")
        h.update(kt.rpm_header(path, "license"))
        entries.append(
            {
                "name": h["name"],
                "epoch": None if h["epoch"] is None else str(h["epoch"]),
                "version": h["version"],
                "release": h["release"],
                "arch": h["arch"],
                "sigmd5": h["payloadhash"],
                "license": h["license"],
                "signature": None,
            }
        )
    return entries


def local_opener(arch_dir: Path) -> Callable[[str], Any]:
    return lambda name: open(arch_dir / name, "rb")


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> HostBuild:
    kt.ensure_rpm_tools("rpm", "rpmbuild", "createrepo_c")
    base = tmp_path_factory.mktemp("host-build")
    built = kt.build_package(kt.spec_path("adj-hello"), base / "hello", defines={"dist": DIST})
    top = kt.KojiTopdir(base / "koji")
    libgreet = kt.build_package(
        kt.spec_path("adj-libgreet"), base / "rpms", defines={"dist": ".el1"}
    )
    top.add_build(libgreet.all)
    repo = top.make_repo(TAG, REPO_ID, ARCH)
    # the "buildroot": the repo's packages, plus one the repo does not hold (an image's)
    outsider = lock_rpms_of([built.rpms[0]])[0] | {"name": "from-the-image", "sigmd5": "0" * 32}
    result = SimpleNamespace(
        lock_rpms=[*lock_rpms_of(list(repo.packages)), outsider],
        buildroot_arch=ARCH,
        rpms=list(built.rpms),
        srpms=[built.srpm],
        cache_hit=False,
    )
    facts = facts_from_result(
        result,
        task_id=4711,
        srpm_request=f"tasks/4711/{built.srpm.name}",
        srpm=built.srpm,
        arch="noarch",
        keep_srpm=True,
        repo=RepoFacts(
            id=REPO_ID,
            tag_name=TAG,
            arch=ARCH,
            url=f"https://koji.example.org/kojifiles/repos/{TAG}/{REPO_ID}/{ARCH}",
            tag_id=1,
            create_event=5000,
            repomd_sha256="a" * 64,
        ),
        open_repo_file=local_opener(repo.arch_dir),
        image=ImageFacts(
            "registry.example.org/koji/bootstrap:40",
            "b" * 64,
            "sha256:" + "c" * 64,
            image_digest="d" * 64,
            architecture="amd64",
            source="tag extra mock.bootstrap_image",
        ),
        build_config={"id": 1, "name": TAG, "arches": ARCH, "extra": {"rpm.macro.dist": DIST}},
        buildroot_mode="tag",
        started=STARTED,
        finished=STARTED + timedelta(minutes=3),
        worker_id="builder01",
        kojid_options={"vendor": "Koji", "packager": "Koji", "distribution": "Koji"},
        buildhost="builder01.example.org",
        hub="https://koji.example.org/kojihub",
    )
    out = base / "result"
    out.mkdir()
    shutil.copy(built.rpms[0], out / built.rpms[0].name)
    write_files(facts, out, signer=load_signer(keys.private))
    return HostBuild(built.srpm, built.rpms, repo, facts, out)


def test_lockfile_follows_mocks_schema_and_finds_each_package_in_the_koji_repo(
    host_build: HostBuild,
) -> None:
    data = (host_build.out / LOCK_NAME).read_bytes()
    lock = validate_lock(data)
    assert (
        data.endswith(b"\n") and data == json.dumps(lock, indent=4, sort_keys=True).encode() + b"\n"
    )
    rpms = lock["buildroot"]["rpms"]
    assert [r["name"] for r in rpms] == sorted(r["name"] for r in rpms)
    assert all(
        set(r) == set(SCHEMA["properties"]["buildroot"]["properties"]["rpms"]["items"]["required"])
        for r in rpms
    )
    repo = host_build.repo
    by_name = {r["name"]: r for r in rpms}
    for path, info in zip(repo.packages, repo.rpms):
        item = by_name[str(info["name"])]
        # the URL is the repo's URL plus the pkglist path dnf fetched it by
        rel = item["url"].removeprefix(host_build.facts.repo.url + "/")
        assert (
            rel.startswith("toplink/packages/")
            and (repo.arch_dir / rel).resolve() == path.resolve()
        )
        assert item["sigmd5"] == info["payloadhash"]
        assert (
            lock["config"]["koji_adjutant"]["koji_rpm_ids"][
                f"{item['name']}-{item['version']}-{item['release']}.{item['arch']}"
            ]
            == info["id"]
        )
    # a package the repo does not hold (same name-version, another SIGMD5 is not it either)
    assert by_name["from-the-image"]["url"] == ""
    assert lock["config"]["koji_adjutant"]["not_in_repo"] == [
        f"from-the-image-{by_name['from-the-image']['version']}-"
        f"{by_name['from-the-image']['release']}.noarch"
    ]
    config = lock["config"]
    assert config["bootstrap_image"] == "registry.example.org/koji/bootstrap:40"
    assert config["bootstrap_image_ready"] is True and config["target_arch"] == ARCH
    assert config["macros"]["%dist"] == DIST and config["macros"]["%_topdir"] == "/builddir/build"
    assert lock["bootstrap"] == {
        "architecture": "amd64",
        "id": "b" * 64,
        "image_digest": "d" * 64,
        "pull_digest": "sha256:" + "c" * 64,
    }
    ours = config["koji_adjutant"]
    assert ours["koji_repo"]["id"] == REPO_ID and ours["koji_repo"]["tag"] == TAG
    assert ours["build_tag"]["extra"] == {"rpm.macro.dist": DIST}
    # nothing of the task: a lockfile describes a root, not a run
    assert "4711" not in data.decode() and "2026-11-29" not in data.decode()
    # the schema is strict: what mock forbids is refused, so the check above means something
    bad = json.loads(data)
    bad["buildroot"]["rpms"][0]["koji_repo_id"] = REPO_ID
    with pytest.raises(jsonschema.ValidationError):
        validate_lock(json.dumps(bad).encode())


def test_a_package_is_located_only_with_its_own_sigmd5(host_build: HostBuild) -> None:
    [entry] = lock_rpms_of([host_build.repo.packages[0]])
    opener = local_opener(host_build.repo.arch_dir)
    assert locate_packages([entry], "http://x", opener)[0].url.startswith("http://x/toplink/")
    other = entry | {"sigmd5": "f" * 32}
    assert locate_packages([other], "http://x", opener)[0].url == ""


def test_sbom_is_valid_spdx_with_the_srpm_the_outputs_and_the_buildroot(
    host_build: HostBuild,
) -> None:
    document = validate_sbom(host_build.out / SBOM_NAME)
    raw = json.loads((host_build.out / SBOM_NAME).read_text())
    assert raw["spdxVersion"] == "SPDX-2.3"
    packages = {p["SPDXID"]: p for p in raw["packages"]}
    srpm = packages["SPDXRef-SRPM"]
    assert srpm["checksums"] == [{"algorithm": "SHA256", "checksumValue": sha256(host_build.srpm)}]
    built = [p for i, p in packages.items() if i.startswith("SPDXRef-Built-")]
    # the binary RPM and the kept SRPM, each with its file's SHA-256
    assert sorted(p["packageFileName"] for p in built) == sorted(
        [host_build.rpms[0].name, host_build.srpm.name]
    )
    for p in built:
        path = next(
            x for x in (*host_build.rpms, host_build.srpm) if x.name == p["packageFileName"]
        )
        assert p["checksums"] == [{"algorithm": "SHA256", "checksumValue": sha256(path)}]
    tools_ = [i for i in packages if i.startswith("SPDXRef-Buildroot-")]
    assert len(tools_) == len(host_build.facts.packages)
    rels = {
        (r.spdx_element_id, r.relationship_type.name, r.related_spdx_element_id)
        for r in document.relationships
    }
    for p in built:
        assert ("SPDXRef-DOCUMENT", "DESCRIBES", p["SPDXID"]) in rels
        assert (p["SPDXID"], "GENERATED_FROM", "SPDXRef-SRPM") in rels
        for tool in tools_:
            assert (tool, "BUILD_TOOL_OF", p["SPDXID"]) in rels
    # a buildroot package's purl says where it came from
    libgreet = next(
        p
        for i, p in packages.items()
        if i.startswith("SPDXRef-Buildroot-") and p["name"] == "adj-libgreet"
    )
    assert (
        "download_url=https%3A%2F%2Fkoji.example.org"
        in libgreet["externalRefs"][0]["referenceLocator"]
    )
    assert libgreet["downloadLocation"].startswith("https://koji.example.org/kojifiles/repos/")
    # RPM License tags are kept as written, as LicenseRefs
    assert {i["extractedText"] for i in raw["hasExtractedLicensingInfos"]} >= {"MIT"} or raw[
        "hasExtractedLicensingInfos"
    ]


def test_provenance_is_a_signed_slsa_v1_statement_pinning_srpm_repo_image_and_lockfile(
    host_build: HostBuild, keys: Keys
) -> None:
    path = host_build.out / PROVENANCE_NAME
    envelope = json.loads(path.read_text())
    assert len(envelope["signatures"]) == 1 and envelope["signatures"][0]["keyid"]
    statement = statement_of(path)
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {p.name: sha256(p) for p in (*host_build.rpms, host_build.srpm)}
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"] == {
        "method": "buildArch",
        "srpm": f"tasks/4711/{host_build.srpm.name}",
        "arch": "noarch",
        "tag": TAG,
        "repo_id": REPO_ID,
        "keep_srpm": True,
    }
    internal = definition["internalParameters"]
    assert internal["task_id"] == 4711 and internal["build_config"]["name"] == TAG
    deps = definition["resolvedDependencies"]
    assert deps[0]["digest"] == {"sha256": sha256(host_build.srpm)}
    assert deps[1]["digest"] == {"sha256": "a" * 64} and deps[1]["uri"] == host_build.facts.repo.url
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://koji.example.org/kojihub/koji-adjutant/builder01"
    assert run["builder"]["version"]["koji-adjutant"] == host_build.facts.version
    assert run["builder"]["builderDependencies"][0]["digest"] == {"sha256": "c" * 64}
    assert run["metadata"] == {
        "invocationId": "4711",
        "startedOn": "2026-11-29T10:00:00Z",
        "finishedOn": "2026-11-29T10:03:00Z",
    }
    byproducts = {b["name"]: b["digest"]["sha256"] for b in run["byproducts"]}
    assert byproducts == {
        LOCK_NAME: sha256(host_build.out / LOCK_NAME),
        SBOM_NAME: sha256(host_build.out / SBOM_NAME),
    }
    from koji_adjutant.provenance.attestation import load_public_key

    opened = open_envelope(path.read_bytes(), load_public_key(keys.public))
    assert opened.signed and opened.verified_keyids == opened.signature_keyids


@pytest.fixture
def copy_of(host_build: HostBuild, tmp_path: Path) -> Path:
    """A copy of the host build's result dir, to tamper with."""
    dest = tmp_path / "result"
    shutil.copytree(host_build.out, dest)
    return dest


def test_verify_accepts_the_build_with_the_right_key(
    copy_of: Path, host_build: HostBuild, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    rpm = copy_of / host_build.rpms[0].name
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 0, out
    assert out.splitlines()[-1] == f"VERIFIED: {rpm}"
    assert re.search(r"^ok +signature: verified with key id [0-9a-f]{64}$", out, re.M), out
    assert re.search(r"^ok +lockfile: sha256:", out, re.M), out
    # without a key nothing fails, but nothing is authenticated either
    status, out = verify_cli(capsys, str(rpm))
    assert status == 3 and out.splitlines()[-1].startswith("UNAUTHENTICATED"), out


def test_verify_rejects_a_wrong_key(
    copy_of: Path, host_build: HostBuild, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    rpm = copy_of / host_build.rpms[0].name
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.other_public))
    assert status == 1 and "FAIL  signature: no signature verifies with the given key" in out, out


def test_verify_rejects_a_tampered_rpm(
    copy_of: Path, host_build: HostBuild, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    rpm = copy_of / host_build.rpms[0].name
    with open(rpm, "ab") as handle:
        handle.write(b"\0")
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 1, out
    assert f"FAIL  subject: {rpm.name} has sha256:{sha256(rpm)}, but the task built it" in out


def test_verify_rejects_a_tampered_lockfile(
    copy_of: Path, host_build: HostBuild, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_path = copy_of / LOCK_NAME
    lock = json.loads(lock_path.read_text())
    lock["buildroot"]["rpms"][0]["version"] = "99"
    lock_path.write_text(json.dumps(lock, indent=4, sort_keys=True) + "\n")
    rpm = copy_of / host_build.rpms[0].name
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 1 and "FAIL  lockfile:" in out, out


def test_verify_rejects_a_tampered_statement_and_an_unsigned_one_given_a_key(
    copy_of: Path, host_build: HostBuild, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    rpm = copy_of / host_build.rpms[0].name
    path = copy_of / PROVENANCE_NAME
    envelope = json.loads(path.read_text())
    # a subject swapped for another RPM's digest, the signature kept
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 1 and "FAIL  signature" in out, out
    # the signature removed: unsigned, which a key cannot verify
    envelope["signatures"] = []
    path.write_text(json.dumps(envelope))
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 1 and "FAIL  signature: the provenance is not signed" in out, out
    # not an envelope at all
    path.write_text("{}")
    status, out = verify_cli(capsys, str(rpm))
    assert status == 1 and "FAIL  provenance" in out, out
    # a missing file is an error, not a verdict
    path.unlink()
    assert cli_main(["verify", str(rpm)]) == 2


def test_unsigned_provenance_without_a_key(
    host_build: HostBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_files(host_build.facts, tmp_path)
    assert [p.name for p in paths] == list(FILE_NAMES)
    envelope = json.loads(paths[2].read_text())
    assert envelope["signatures"] == [] and envelope["payloadType"] == PAYLOAD_TYPE
    rpm = tmp_path / host_build.rpms[0].name
    shutil.copy(host_build.rpms[0], rpm)
    status, out = verify_cli(capsys, str(rpm))
    assert status == 3 and "skip  signature: the provenance is not signed" in out, out


def test_config_takes_an_absolute_key_path(tmp_path: Path) -> None:
    assert (
        load_config(environ={"KOJI_ADJUTANT_CONFIG": str(tmp_path / "none")}).provenance_signing_key
        is None
    )
    env = {"KOJI_ADJUTANT_PROVENANCE_SIGNING_KEY": "/etc/kojid/provenance.key"}
    assert (
        load_config(str(tmp_path / "none"), env).provenance_signing_key
        == "/etc/kojid/provenance.key"
    )
    with pytest.raises(ValueError, match=r"provenance_signing_key.*absolute path"):
        load_config(str(tmp_path / "none"), {"KOJI_ADJUTANT_PROVENANCE_SIGNING_KEY": "key.pem"})


# == through kojid, against the hub fake, with the scripted adapter ==========================


def test_fake_build_through_kojid_uploads_the_three_files_signed(
    handlers: Any,
    hub: Any,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf(provenance_signing_key=str(keys.private))
    task_id = build_task(hub, world, arch="noarch", keep_srpm=True)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    rel = upload_dir(task_id)
    assert [p.rsplit("/", 1)[1] for p in task.result["logs"]][-3:] == list(FILE_NAMES)
    down = tmp_path / "download"
    down.mkdir()
    for path in task.result["logs"][-3:] + task.result["rpms"]:
        (down / path.rsplit("/", 1)[1]).write_bytes(hub.upload_bytes(path))
    lock = validate_lock((down / LOCK_NAME).read_bytes())
    # the buildroot list's packages, located in the repo by kojid's topurl
    assert sorted(r["name"] for r in lock["buildroot"]["rpms"]) == ["bash", "glibc"]
    base = f"{hub.topurl}/repos/{world.tag['name']}/{world.repo['id']}/{ARCH}/toplink/packages/"
    assert all(r["url"].startswith(base) for r in lock["buildroot"]["rpms"]), lock
    validate_sbom(down / SBOM_NAME)
    statement = statement_of(down / PROVENANCE_NAME)
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["task_id"] == task_id
    assert statement["predicate"]["runDetails"]["builder"]["id"].endswith(WORKER_ID)
    rpm = down / task.result["rpms"][0].rsplit("/", 1)[1]
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
    assert status == 0, out
    assert hub.upload_bytes(f"{rel}/{LOCK_NAME}") == (down / LOCK_NAME).read_bytes()


def test_a_signing_key_that_cannot_be_used_refuses_the_task(
    handlers: Any,
    hub: Any,
    world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    fakes: type[FakeManager],
    script: BuildScript,
    tmp_path: Path,
) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    for key in (tmp_path / "missing.pem", bad):
        conf(provenance_signing_key=str(key))
        task_id = build_task(hub, world, arch="noarch")
        hub.clear_calls()
        kojidloader.run_task(handlers.build_arch, session, options, task_id)
        assert hub.calls[-1].method == "host.refuseTask", hub.call_names()
        assert str(key) in hub.calls[-1].kwargs["msg"]
        assert "host.newBuildRoot" not in hub.call_names()
        assert script.calls == []  # no adapter was made


# == real builds (Podman and the task image) ===================================================


@dataclasses.dataclass(frozen=True)
class RealBuild:
    result: BuildArchResult
    files: list[Path]
    #: The cache image the build started from, or stored (the root before the build).
    root_image: str


@dataclasses.dataclass(frozen=True)
class RealBuilds:
    cold: RealBuild
    warm: RealBuild
    repo: kt.KojiRepo


CACHE_LABEL = "io.koji.adjutant.buildroot"


@pytest.fixture(scope="module")
def real_builds(
    tmp_path_factory: pytest.TempPathFactory,
    manager: PodmanManager,
    image: str,
    dev_distro: DevDistro,
    keys: Keys,
) -> Iterator[RealBuilds]:
    """adj-hello built twice from a repo of its own (so the first build's cache key is new):
    cold (the root installed and stored), then warm (started from the stored root)."""
    kt.ensure_rpm_tools()
    base = tmp_path_factory.mktemp("real")
    top = kt.KojiTopdir(base / "koji")
    top.add_build([dev_distro.srpm, *dev_distro.rpms])
    repo = top.make_repo(TAG, REPO_ID, ARCH, groups=dev_distro.groups)
    srpm = kt.build_srpm(kt.spec_path("adj-hello"), base / "srpm")
    cache_dir = base / "cache"
    cache_dir.mkdir()
    adapter = BuildArchAdapter(manager, image, cache=True, cache_dir=cache_dir)
    signer = load_signer(keys.private)
    config = {
        "id": 1,
        "name": TAG,
        "arches": ARCH,
        "extra": {"rpm.macro.dist": DIST},
        "locked": False,
        "perm": None,
    }

    def build(task_id: int) -> RealBuild:
        work = base / f"task-{task_id}"
        work.mkdir()
        work.chmod(0o755)
        task_srpm = work / srpm.name
        shutil.copy(srpm, task_srpm)
        started = datetime.now(timezone.utc)
        result = adapter.run(
            TaskContext(task_id, work),
            task_srpm,
            "noarch",
            repo=str(repo.arch_dir),
            repo_id=REPO_ID,
            tag_name=TAG,
            build_config=config,
            keep_srpm=True,
        )
        facts = facts_from_result(
            result,
            task_id=task_id,
            srpm_request=f"tasks/{task_id}/{srpm.name}",
            srpm=task_srpm,
            arch="noarch",
            keep_srpm=True,
            repo=RepoFacts(REPO_ID, TAG, ARCH, repo.baseurl, tag_id=1),
            open_repo_file=local_opener(repo.arch_dir),
            image=ImageFacts.from_inspect(image, manager.inspect_image(result.image_id)),
            build_config=config,
            buildroot_mode="tag",
            started=started,
            finished=datetime.now(timezone.utc),
            worker_id=WORKER_ID,
            kojid_options={"vendor": "Koji", "packager": "Koji", "distribution": "Koji"},
            buildhost="builder.example.org",
        )
        files = write_files(facts, result.result_dir, signer=signer)
        state = (Path(result.result_dir) / "state.log").read_text()
        key = re.search(r"(?:cached buildroot|fresh buildroot, cache key) ([0-9a-f]{64})", state)
        assert key is not None, state
        images = podman_cli(
            "images", "-q", "--no-trunc", "--filter", f"label={CACHE_LABEL}.key={key.group(1)}"
        ).stdout.split()
        return RealBuild(result, files, images[0] if images else "")

    try:
        cold = build(91001)
        warm = build(91002)
        yield RealBuilds(cold, warm, repo)
    finally:
        keys_made = {p.name for p in cache_dir.iterdir()}
        for key in keys_made:
            for image_id in podman_cli(
                "images", "-q", "--no-trunc", "--filter", f"label={CACHE_LABEL}.key={key}"
            ).stdout.split():
                podman_cli("rmi", "-f", image_id)


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_cold_and_warm_builds_write_identical_lockfiles_and_report_their_rpm_digests(
    real_builds: RealBuilds,
) -> None:
    cold, warm = real_builds.cold, real_builds.warm
    assert (cold.result.cache_hit, warm.result.cache_hit) == (False, True)
    cold_lock = cold.files[0].read_bytes()
    assert warm.files[0].read_bytes() == cold_lock  # byte for byte
    lock = validate_lock(cold_lock)
    assert sorted(r["name"] for r in lock["buildroot"]["rpms"]) == sorted(
        e["name"] for e in cold.result.buildroot
    )
    assert lock["bootstrap"]["id"] == cold.result.image_id
    assert lock["bootstrap"]["pull_digest"] == cold.result.image_digest
    for build in (cold, warm):
        validate_sbom(build.files[1])
        subjects = {
            s["name"]: s["digest"]["sha256"] for s in statement_of(build.files[2])["subject"]
        }
        assert subjects == {p.name: sha256(p) for p in [*build.result.rpms, *build.result.srpms]}
    # Whether the RPMs are bit-identical is reported, not required: rpmbuild stamps BUILDTIME
    # into every header, so two builds a second apart differ (docs/provenance.md).
    same = {
        p.name: sha256(p) == sha256(q)
        for p, q in zip(sorted(cold.result.rpms), sorted(warm.result.rpms))
    }
    print(f"RPMs of the cold and the warm build bit-identical: {same}")
    # the same packages all the same: same NEVRA, files and dependencies
    fmt = "%{NEVRA} [%{FILENAMES} ] [%{REQUIRENEVRS} ] [%{PROVIDENEVRS} ]\n"
    for p, q in zip(sorted(cold.result.rpms), sorted(warm.result.rpms)):
        assert kt._run(["rpm", "-qp", "--qf", fmt, str(p)]) == kt._run(
            ["rpm", "-qp", "--qf", fmt, str(q)]
        )


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_rebuild_root_recreates_the_locked_buildroot(
    real_builds: RealBuilds,
    manager: PodmanManager,
    image: str,
    tmp_path: Path,
    podman_socket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cold = real_builds.cold
    config = tmp_path / "adjutant.conf"
    config.write_text(f"[adjutant]\npodman_socket = {podman_socket}\nworker_id = {WORKER_ID}\n")
    dest = tmp_path / "root"
    report_path = tmp_path / "report.json"
    try:
        status = cli_main(
            [
                "rebuild-root",
                "--config",
                str(config),
                "--lock",
                str(cold.files[0]),
                "--json",
                str(report_path),
                "--pull",
                "never",
                str(dest),
            ]
        )
        out = capsys.readouterr().out
        assert status == 0, out
        assert out.splitlines()[-1].startswith("IDENTICAL: ")
        report = json.loads(report_path.read_text())
        lock = load_lock(cold.files[0])
        # the same rpm -qa: every locked package, nothing else
        assert sorted(p["nevra"] for p in report["installed"]) == sorted(
            f"{r['name']}-{r['version']}-{r['release']}.{r['arch']}"
            for r in lock["buildroot"]["rpms"]
        )
        # the same SHA-256s: the rpmdb's header digests equal the original root's (its cache
        # image), and each file installed is the repo's own copy
        original = _rpmdb(manager, cold.root_image)
        rebuilt = {p["nevra"]: (p["sigmd5"], p["sha256header"]) for p in report["installed"]}
        assert rebuilt == original
        in_repo = {p.name: sha256(p) for p in real_builds.repo.packages}
        for p in report["installed"]:
            assert p["file_sha256"] == in_repo[f"{p['nevra']}.rpm"], p
        # a lockfile whose package the repo does not have is refused before any install
        lock["buildroot"]["rpms"][0]["sigmd5"] = "0" * 32
        (tmp_path / "tampered.json").write_text(json.dumps(lock))
        with pytest.raises(RebuildError, match="is not the locked package"):
            rebuild_root(manager, load_lock(tmp_path / "tampered.json"), tmp_path / "root2")
        assert not any((tmp_path / "root2").iterdir())
    finally:
        for path in (dest, tmp_path / "root2"):
            shutil.rmtree(path, ignore_errors=True)


def _rpmdb(manager: PodmanManager, root_image: str) -> dict[str, tuple[str, str]]:
    """nevra -> (SIGMD5, SHA256HEADER) of a root image's rpmdb, read by its own rpm."""
    from conftest import RecordingSink
    from koji_adjutant import ContainerSpec

    assert root_image, "the cold build stored no cache image"
    sink = RecordingSink()
    result = manager.run(
        ContainerSpec(root_image, ["rpm", "-qa", "--qf", QUERY_FORMAT.replace("\\\\", "\\")]),
        sink,
    )
    assert result.exit_code == 0, bytes(sink.stderr)
    rows = {}
    for line in bytes(sink.stdout).decode().splitlines():
        name, _epoch, version, release, arch, sigmd5, header = line.split("\t")
        if name != "gpg-pubkey":
            rows[f"{name}-{version}-{release}.{arch}"] = (sigmd5, header)
    return rows


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.usefixtures("no_leaks")
def test_real_build_through_kojid_uploads_valid_signed_provenance(
    handlers: Any,
    hub: Any,
    real_world: World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    keys: Keys,
    tmp_path: Path,
    dev_distro: DevDistro,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf(
        podman_socket=podman_socket,
        task_image=image,
        network="none",
        provenance_signing_key=str(keys.private),
    )
    task_id = build_task(hub, real_world, arch="noarch", keep_srpm=True)
    kojidloader.run_task(handlers.build_arch, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    names = [p.rsplit("/", 1)[1] for p in task.result["logs"]]
    assert names[-3:] == list(FILE_NAMES), names
    down = tmp_path / "download"
    down.mkdir()
    for path in task.result["logs"][-3:] + task.result["rpms"] + task.result["srpms"]:
        (down / path.rsplit("/", 1)[1]).write_bytes(hub.upload_bytes(path))
    lock = validate_lock((down / LOCK_NAME).read_bytes())
    listed = hub.buildroot_rpms(task.result["brootid"])
    assert sorted(r["name"] for r in lock["buildroot"]["rpms"]) == sorted(r["name"] for r in listed)
    assert sorted(r["name"] for r in listed) == sorted(dev_distro.groups["build"])
    assert all(r["url"].startswith(hub.topurl) for r in lock["buildroot"]["rpms"])
    ids = lock["config"]["koji_adjutant"]["koji_rpm_ids"]
    assert sorted(ids.values()) == sorted(r["rpm_id"] for r in listed)  # the hub's RPM ids
    validate_sbom(down / SBOM_NAME)
    for path in task.result["rpms"] + task.result["srpms"]:
        rpm = down / path.rsplit("/", 1)[1]
        status, out = verify_cli(capsys, str(rpm), "--key", str(keys.public))
        assert status == 0, out
    status, out = verify_cli(capsys, str(rpm), "--key", str(keys.other_public))
    assert status == 1, out
