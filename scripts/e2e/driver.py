"""End-to-end checks against a real hub and kojid: what the admin and the hub see.

``driver.py setup``: bootstrap the hub (admin and builder users, a build tag with the build
group, a target, a buildroot package imported), like an admin with the koji CLI would.
``driver.py check MODE``: with kojid running (MODE: plugin or patch), regenerate the tag's repo
(kojid's newRepo task, whose createrepo subtask runs in a container), build the sample package
from an uploaded SRPM (rebuildSRPM, then buildArch, in containers) and adj-scmhello from a git
repository served by ``git daemon`` on 127.0.0.1 (buildSRPMFromSCM, then buildArch), and check
the hub's records of all; prints each task's wall time and each container step's (state.log).

Environment: E2E_HUB (hub URL), E2E_DB (psycopg2 DSN), E2E_DIR, E2E_IMAGE, E2E_HOST,
E2E_PODMAN_SOCKET (for making the dev distribution the build tag holds).
koji's source tree and the repository's tests/ dir are on PYTHONPATH.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import koji
import kojitopdir as kt
import psycopg2
from koji_adjutant import PodmanManager
from koji_adjutant.devdistro import ensure_dev_distro

HUB = os.environ["E2E_HUB"]
DSN = os.environ["E2E_DB"]
E2E = Path(os.environ["E2E_DIR"])
#: The tag's build group, written at setup for the checks of the buildroot list.
BUILD_GROUP = E2E / "build-group.txt"
SRPM_BUILD_GROUP = E2E / "srpm-build-group.txt"
IMAGE = os.environ["E2E_IMAGE"]
HOST = os.environ.get("E2E_HOST", "e2e-builder")
ADMIN = "kojiadmin"
BUILD_TAG = "e2e-build"
DEST_TAG = "e2e-dest"
TARGET = "e2e"
ARCH = "x86_64"
TIMEOUT = 900
PODMAN_SOCKET = os.environ["E2E_PODMAN_SOCKET"]
ROOT = Path(__file__).resolve().parents[2]
#: kojid's topurl (run.sh serves the topdir next to the hub)
TOPURL = HUB.rsplit("/", 1)[0] + "/kojifiles"
#: The project's virtualenv, which has the schema checkers (jsonschema, spdx-tools); kojid's
#: own venv has only the wheel.
PROJECT_PYTHON = Path(os.environ.get("VENV") or ROOT / ".venv").resolve() / "bin" / "python"
PROVENANCE_FILES = ("buildroot_lock.json", "sbom.spdx.json", "provenance.intoto.json")
koji.pathinfo.topdir = str(E2E / "topdir")  # the hub's KojiDir (the driver reads repodata)


def sql(statement: str, args: tuple[Any, ...] = ()) -> None:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(statement, args)


def admin_session() -> koji.ClientSession:
    session = koji.ClientSession(HUB, {"user": ADMIN, "password": ADMIN, "max_retries": 0})
    session.login()
    return session


def fail(message: str) -> None:
    print(f"E2E FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition: bool, message: str) -> None:
    if not condition:
        fail(message)
    print(f"ok: {message}")


def setup() -> None:
    sql(
        "INSERT INTO users (name, password, status, usertype) VALUES (%s, %s, 0, 0)",
        (ADMIN, ADMIN),
    )
    sql(
        "INSERT INTO user_perms (user_id, perm_id, creator_id) SELECT u.id, p.id, u.id"
        " FROM users u, permissions p WHERE u.name = %s AND p.name = 'admin'",
        (ADMIN,),
    )
    session = admin_session()
    session.addHost(HOST, [ARCH, "noarch"])
    sql("UPDATE users SET password = %s WHERE name = %s", (HOST, HOST))
    session.addHostToChannel(HOST, "createrepo")
    session.editHost(HOST, capacity=4.0)
    session.createTag(BUILD_TAG, arches=ARCH)
    session.createTag(DEST_TAG)
    session.editTag2(
        BUILD_TAG,
        extra={"rpm.macro.dist": ".e2e", "adjutant.image": IMAGE},
    )
    session.createBuildTarget(TARGET, BUILD_TAG, DEST_TAG)
    # the buildroot's packages: the dev distribution (the task image's own files as RPMs;
    # its build and srpm-build groups are the tag's) and adj-libgreet
    distro = ensure_dev_distro(PodmanManager(PODMAN_SOCKET, worker_id="e2e-setup"), IMAGE)
    for group, packages in distro.groups.items():
        session.groupListAdd(BUILD_TAG, group)
        for package in packages:
            session.groupPackageListAdd(BUILD_TAG, group, package)
    libgreet = kt.build_package(
        kt.spec_path("adj-libgreet"), E2E / "imports", defines={"dist": ".el1"}
    )
    for srpm, paths in ((distro.srpm, distro.rpms), (libgreet.srpm, libgreet.rpms)):
        name = srpm.name.rsplit("-", 2)[0]
        session.packageListAdd(BUILD_TAG, name, owner=ADMIN)
        for path in (srpm, *paths):
            session.uploadWrapper(str(path), "e2e-import")
            session.importRPM("e2e-import", path.name)
        session.tagBuildBypass(BUILD_TAG, srpm.name[: -len(".src.rpm")])
    BUILD_GROUP.write_text("\n".join(distro.groups["build"]) + "\n")
    SRPM_BUILD_GROUP.write_text("\n".join(distro.groups["srpm-build"]) + "\n")
    session.packageListAdd(DEST_TAG, "adj-hello", owner=ADMIN)
    session.packageListAdd(DEST_TAG, "adj-scmhello", owner=ADMIN)
    session.logout()
    print("hub set up")


def wait_task(session: koji.ClientSession, task_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        info = session.getTaskInfo(task_id)
        state = koji.TASK_STATES[info["state"]]
        if state in ("CLOSED", "FAILED", "CANCELED"):
            return info
        if time.monotonic() > deadline:
            fail(f"task {task_id} still {state} after {TIMEOUT} s")
        time.sleep(2)


def describe_failure(session: koji.ClientSession, task_id: int) -> str:
    lines = []
    for info in [session.getTaskInfo(task_id), *session.getTaskChildren(task_id)]:
        state = koji.TASK_STATES[info["state"]]
        line = f"task {info['id']} {info['method']} {state}"
        if state == "FAILED":
            try:
                session.getTaskResult(info["id"])
            except koji.GenericError as exc:
                line += f": {exc}"
        lines.append(line)
    return "\n".join(lines)


def check_newrepo(session: koji.ClientSession) -> dict[str, Any]:
    task_id = session.newRepo(BUILD_TAG)
    info = wait_task(session, task_id)
    if koji.TASK_STATES[info["state"]] != "CLOSED":
        fail("newRepo did not close:\n" + describe_failure(session, task_id))
    children = session.getTaskChildren(task_id)
    createrepo = [c for c in children if c["method"] == "createrepo"]
    check(len(createrepo) == 1, "newRepo ran one createrepo subtask")
    child = createrepo[0]
    check(koji.TASK_STATES[child["state"]] == "CLOSED", "createrepo task closed")
    uploadpath, files = session.getTaskResult(child["id"])
    check(uploadpath == koji.pathinfo.taskrelpath(child["id"]), "createrepo result path")
    check("repomd.xml" in files, f"createrepo uploaded repodata flat: {sorted(files)}")
    output = session.listTaskOutput(child["id"])
    check("createrepo.log" in output, "createrepo.log uploaded")
    repo = session.getRepo(BUILD_TAG)
    check(repo is not None and koji.REPO_STATES[repo["state"]] == "READY", "repo is READY")
    archdir = Path(koji.pathinfo.repo(repo["id"], BUILD_TAG)) / ARCH
    repodata = archdir / "repodata"
    check((repodata / "repomd.xml").is_file(), f"repodata moved into {repodata}")
    primary = next(repodata.glob("*primary.xml.gz"))
    with gzip.open(primary, "rt") as handle:
        text = handle.read()
    check("devdistro-base" in text and "adj-libgreet" in text, "the repo lists the tagged packages")
    return repo


def check_build(session: koji.ClientSession, mode: str) -> None:
    """A build from an uploaded SRPM: rebuildSRPM (the tag keeps rebuild_srpm on), then
    buildArch."""
    # built on the host without the tag's dist: rebuildSRPM makes the NVR in the buildroot
    srpm = kt.build_srpm(kt.spec_path("adj-hello"), E2E / f"srpm-{mode}")
    serverdir = f"cli-build/e2e-{mode}-{int(time.time())}"
    session.uploadWrapper(str(srpm), serverdir)
    # the plugin run makes a real build (completeBuild maps each RPM to the buildroot); the
    # patch run a scratch one
    opts: dict[str, Any] = {"scratch": mode != "plugin"}
    task_id = session.build(f"{serverdir}/{srpm.name}", TARGET, opts)
    check_build_task(session, task_id, "rebuildSRPM", "adj-hello-1.0-1.e2e", opts["scratch"])


def check_scm_build(session: koji.ClientSession, mode: str) -> None:
    """``koji build TARGET git://127.0.0.1:<port>/adj-scmhello.git#<commit>``: buildSRPMFromSCM
    (source_cmd with a network, rpmbuild -bs without), then buildArch."""
    base = Path(tempfile.mkdtemp(prefix=f"git-{mode}-", dir=E2E))
    commit = kt.make_git_repo(base, "adj-scmhello", kt.scm_hello_files())
    with kt.GitDaemon(base) as daemon:
        url = f"{daemon.url}/adj-scmhello.git#{commit}"
        opts: dict[str, Any] = {"scratch": mode != "plugin"}
        started = time.monotonic()
        task_id = session.build(url, TARGET, opts)
        check_build_task(
            session, task_id, "buildSRPMFromSCM", "adj-scmhello-2.0-1.e2e", opts["scratch"]
        )
        print(f"timing: the whole SCM build ({mode}) took {time.monotonic() - started:.1f} s")
    srpm_task = next(
        c for c in session.getTaskChildren(task_id) if c["method"] == "buildSRPMFromSCM"
    )
    result = session.getTaskResult(srpm_task["id"])
    check(result["source"]["url"] == url, "buildSRPMFromSCM result names the SCM URL")
    check(result["source"]["source"].endswith(f"#{commit}"), "and the commit checked out")
    output = session.listTaskOutput(srpm_task["id"])
    check("checkout.log" in output, "kojid's checkout.log uploaded")
    build_log = session.downloadTaskOutput(srpm_task["id"], "build.log").decode()
    check(
        "./get-sources (user 1000:135, network on)" in build_log,
        "source_cmd ran with a network (its own container)",
    )
    check("Hello from git" not in build_log, "nothing but logs in build.log")


def print_timings(session: koji.ClientSession, task_id: int) -> None:
    """The wall time of the build task and of each subtask, and each container step's time
    from the subtask's state.log."""
    tasks = [session.getTaskInfo(task_id), *session.getTaskChildren(task_id)]
    for info in sorted(tasks, key=lambda t: t["id"]):
        seconds = (info.get("completion_ts") or 0) - (info.get("start_ts") or 0)
        print(f"timing: task {info['id']} {info['method']}: {seconds:.1f} s")
        if "state.log" not in session.listTaskOutput(info["id"]):
            continue
        text = session.downloadTaskOutput(info["id"], "state.log").decode()
        for line in text.splitlines():
            if " Finish: " in line or "Usage of the" in line:
                print(f"timing:     {line.split(' ', 2)[-1]}")


def check_build_task(
    session: koji.ClientSession, task_id: int, srpm_method: str, nvr: str, scratch: bool
) -> None:
    """The build task closed; its SRPM subtask and buildArch ran in containers, each with
    its buildroot recorded (the SRPM's from the srpm-build group, the RPMs' from build)."""
    info = wait_task(session, task_id)
    if koji.TASK_STATES[info["state"]] != "CLOSED":
        fail(f"build {nvr} did not close:\n" + describe_failure(session, task_id))
    print_timings(session, task_id)
    children = session.getTaskChildren(task_id)
    srpm_tasks = [c for c in children if c["method"] == srpm_method]
    check(len(srpm_tasks) == 1, f"one {srpm_method} subtask")
    srpm_result = session.getTaskResult(srpm_tasks[0]["id"])
    check(
        sorted(srpm_result) == ["brootid", "logs", "source", "srpm"],
        f"{srpm_method} result keys",
    )
    check(
        os.path.basename(srpm_result["srpm"]) == f"{nvr}.src.rpm",
        f"{srpm_method} made {srpm_result['srpm']}",
    )
    srpm_logs = {os.path.basename(p) for p in srpm_result["logs"]}
    check({"build.log", "root.log", "state.log"} <= srpm_logs, f"{srpm_method} logs: {srpm_logs}")
    srpm_broot = session.getBuildroot(srpm_result["brootid"])
    check(srpm_broot["task_id"] == srpm_tasks[0]["id"], f"buildroot of the {srpm_method} task")
    check(koji.BR_STATES[srpm_broot["state"]] == "EXPIRED", f"{srpm_method} buildroot EXPIRED")
    names = sorted(r["name"] for r in session.getBuildrootListing(srpm_result["brootid"]))
    check(
        names == sorted(SRPM_BUILD_GROUP.read_text().split()),
        f"the {srpm_method} buildroot list is the tag's srpm-build group: {names}",
    )
    arch_tasks = [c for c in children if c["method"] == "buildArch"]
    check(len(arch_tasks) == 1, "one buildArch subtask")
    child = arch_tasks[0]
    result = session.getTaskResult(child["id"])
    check(sorted(result) == ["brootid", "logs", "rpms", "srpms"], "buildArch result keys")
    check(
        [os.path.basename(p) for p in result["rpms"]] == [f"{nvr}.noarch.rpm"],
        f"buildArch rpms: {result['rpms']}",
    )
    check(len(result["srpms"]) == 1, "the SRPM was kept (keep_srpm)")
    logs = {os.path.basename(p) for p in result["logs"]}
    check(
        {"build.log", "root.log", "state.log", "noarch_rpmdiff.json"} <= logs,
        f"buildArch logs: {sorted(logs)}",
    )
    check_provenance(session, child["id"], result)
    broot = session.getBuildroot(result["brootid"])
    check(broot["task_id"] == child["id"], "buildroot belongs to the buildArch task")
    check(koji.BR_STATES[broot["state"]] == "EXPIRED", "buildroot EXPIRED")
    listing = session.getBuildrootListing(result["brootid"])
    names = sorted(r["name"] for r in listing)
    group = sorted(BUILD_GROUP.read_text().split())
    check(names == group, f"the buildroot list is the tag's build group: {names}")
    check(
        all(r["external_repo_name"] == "INTERNAL" for r in listing),
        "every buildroot RPM resolved as a Koji RPM",
    )
    output = session.listTaskOutput(child["id"])
    check("build.log" in output and "root.log" in output, "logs uploaded to the task")
    if not scratch:
        build = session.getBuild(nvr, strict=True)
        check(koji.BUILD_STATES[build["state"]] == "COMPLETE", f"build {nvr} COMPLETE")
        rpms = {r["arch"]: r for r in session.listRPMs(buildID=build["id"])}
        check(set(rpms) == {"noarch", "src"}, "build RPMs imported")
        check(
            rpms["noarch"]["buildroot_id"] == result["brootid"],
            "the RPM records the buildArch container buildroot",
        )
        # kojid's build imports the SRPM buildArch kept (rebuilt there, as under mock)
        check(
            rpms["src"]["buildroot_id"] == result["brootid"],
            "the SRPM (buildArch's kept one, as with kojid) records its container buildroot",
        )
        tagged = session.listTagged(DEST_TAG, package=nvr.rsplit("-", 2)[0])
        check([b["nvr"] for b in tagged] == [nvr], f"build {nvr} tagged")


_SCHEMA_CHECK = """
import json, sys
import jsonschema
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
schema, lock, sbom = sys.argv[1:]
jsonschema.Draft6Validator(json.load(open(schema))).validate(json.load(open(lock)))
messages = validate_full_spdx_document(parse_file(sbom))
sys.exit("\\n".join(m.validation_message for m in messages) or 0)
"""


def check_provenance(session: koji.ClientSession, task_id: int, result: dict[str, Any]) -> None:
    """The lockfile, SBOM and provenance of a buildArch: uploaded, listed, valid by their
    schemas, and what ``koji-adjutant verify`` accepts (unsigned here: UNAUTHENTICATED)."""
    from koji_adjutant.provenance.verify import verify

    names = [os.path.basename(p) for p in result["logs"]]
    check(names[-3:] == list(PROVENANCE_FILES), f"provenance files listed last: {names[-3:]}")
    out = Path(tempfile.mkdtemp(prefix="e2e-provenance-", dir=E2E))
    for name in (*PROVENANCE_FILES, *(os.path.basename(p) for p in result["rpms"])):
        (out / name).write_bytes(session.downloadTaskOutput(task_id, name))
    lock = json.loads((out / "buildroot_lock.json").read_text())
    names = sorted(r["name"] for r in lock["buildroot"]["rpms"])
    check(names == sorted(BUILD_GROUP.read_text().split()), "the lockfile lists the build group")
    check(
        all(r["url"].startswith(f"{TOPURL}/repos/{BUILD_TAG}/") for r in lock["buildroot"]["rpms"]),
        "every locked package has its URL in the Koji repo",
    )
    checked = subprocess.run(
        [
            str(PROJECT_PYTHON),
            "-c",
            _SCHEMA_CHECK,
            str(ROOT / "tests" / "data" / "buildroot-lock-schema-1.1.0.json"),
            str(out / "buildroot_lock.json"),
            str(out / "sbom.spdx.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    check(
        checked.returncode == 0,
        f"lockfile valid by mock's schema, SBOM valid SPDX 2.3 {checked.stderr[-2000:]}",
    )
    rpm = out / os.path.basename(result["rpms"][0])
    verdict = verify(rpm, out / "provenance.intoto.json", out / "buildroot_lock.json")
    lines = "\n".join(c.line() for c in verdict.checks)
    check(verdict.word == "UNAUTHENTICATED", f"verify: subject and lockfile ok, unsigned\n{lines}")
    with open(rpm, "ab") as handle:
        handle.write(b"tampered")
    verdict = verify(rpm, out / "provenance.intoto.json", out / "buildroot_lock.json")
    check(verdict.word == "REJECTED", "verify rejects a tampered RPM")


def main() -> None:
    command = sys.argv[1]
    if command == "setup":
        setup()
        return
    if command == "check":
        mode = sys.argv[2]
        session = admin_session()
        check_newrepo(session)
        check_build(session, mode)
        check_scm_build(session, mode)
        session.logout()
        print(f"E2E PASSED ({mode})")
        return
    fail(f"unknown command {command}")


if __name__ == "__main__":
    main()
