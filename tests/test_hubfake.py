"""The hub fake, driven by PyPI koji's real client code (ClientSession, koji.daemon).

These tests pin the protocol and the hub rules the fake enforces, so that
kojid-style task code that gets a call, an argument or a state wrong fails
against the fake as it would against a real hub.
"""

from __future__ import annotations

import json
import os
import random
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import koji
import koji.daemon
import koji.xmlrpcplus
import pytest
import requests
from hubfake import HubFake

# koji's ClientSession.fastUpload opens the local file and never closes it
# (koji 1.35/1.36); under filterwarnings=error that ResourceWarning would fail
# every test that uploads through the real client.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")

HOST = "builder1"
OTHER_HOST = "builder2"
TASK_ID = 12345  # uploads go to tasks/2345/12345
UPLOAD_DIR = koji.pathinfo.taskrelpath(TASK_ID)


@dataclass
class World:
    """A tag with an external repo, a READY repo, two known rpms and an OPEN buildArch task."""

    tag: dict[str, Any]
    repo: dict[str, Any]
    task: dict[str, Any]
    bash: dict[str, Any]
    glibc: dict[str, Any]
    ext_repo: dict[str, Any]


@pytest.fixture
def hub() -> Iterator[HubFake]:
    with HubFake() as fake:
        fake.add_host(HOST, arches="x86_64 noarch")
        fake.add_host(OTHER_HOST, arches="x86_64")
        yield fake


@pytest.fixture
def world(hub: HubFake) -> World:
    ext = hub.add_external_repo("centos-base", "http://mirror.example/$arch/")
    tag = hub.add_tag(
        "f40-build",
        arches="x86_64",
        extra={"rpm.macro.dist": ".fc40", "mock.new_chroot": True},
        external_repos=("centos-base",),
    )
    bash = hub.add_rpm("bash", "5.2", "1.fc40", "x86_64", epoch=None, tags=("f40-build",))
    glibc = hub.add_rpm("glibc", "2.39", "2.fc40", "x86_64", epoch=0, tags=("f40-build",))
    repo = hub.add_repo("f40-build")
    task = hub.add_task(
        "buildArch",
        ["work/foo.src.rpm", tag["id"], "x86_64", True, {"repo_id": repo["id"]}],
        arch="x86_64",
        host=HOST,
        task_id=TASK_ID,
    )
    return World(tag, repo, task, bash, glibc, ext)


@pytest.fixture
def sessions(hub: HubFake) -> Iterator[Callable[..., koji.ClientSession]]:
    """Make ClientSessions and close them all afterwards (no stray sockets or logouts)."""
    made: list[koji.ClientSession] = []

    def make(
        user: str = HOST, login: bool = True, exclusive: bool = True, **opts: Any
    ) -> koji.ClientSession:
        session = koji.ClientSession(hub.url, hub.client_opts(user, **opts))
        made.append(session)
        if login:
            session.login()
            if exclusive:
                session.exclusiveSession(force=True)
        return session

    yield make
    for session in made:
        try:
            session.logout()
        finally:
            session.setSession(None)  # nothing left for __del__ to send
            session.rsession.close()


def rpm_entry(info: dict[str, Any]) -> dict[str, Any]:
    """A buildroot list entry as BuildRoot.getPackageList builds it from the rpmdb."""
    keys = ("name", "version", "release", "epoch", "arch", "payloadhash", "size", "buildtime")
    return {k: info[k] for k in keys}


# -- protocol ---------------------------------------------------------------------


def test_login_returns_header_auth_session(
    hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions(exclusive=False)
    assert session.logged_in
    assert session.sinfo["header-auth"] is True
    assert session.getLoggedInUser()["name"] == HOST
    assert session.hub_version_str == "1.35.3"
    assert session.echo("OK") == ["OK"]


def test_empty_password_is_refused(sessions: Callable[..., koji.ClientSession]) -> None:
    with pytest.raises(koji.AuthError, match="invalid username or password"):
        sessions(password="")


def test_host_calls_need_an_exclusive_host_session(
    world: World, sessions: Callable[..., koji.ClientSession]
) -> None:
    anonymous = sessions(login=False)
    with pytest.raises(koji.AuthError, match="Not logged-in"):
        anonymous.host.getHost()
    user = sessions("alice")
    with pytest.raises(koji.AuthError, match="is not a host"):
        user.host.getHost()
    shared = sessions(exclusive=False)
    with pytest.raises(koji.AuthError, match="exclusive session"):
        shared.host.getHost()
    # a subsession (what TaskManager.forkTask gives each task) inherits exclusivity
    master = sessions()
    child = master.subsession()
    try:
        assert child.host.getHost()["name"] == HOST
    finally:
        child.logout()
        child.rsession.close()


def test_unknown_method_and_bad_arguments_fault(
    sessions: Callable[..., koji.ClientSession],
) -> None:
    session = sessions()
    with pytest.raises(koji.GenericError, match=r"Invalid method: host\.noSuchCall"):
        session.host.noSuchCall(1)
    with pytest.raises(koji.ParameterError):
        session.repoInfo(1, 2, 3, 4)
    with pytest.raises(koji.ParameterError):
        session.host.newBuildRoot(1, "x86_64", bogus=True)


def test_multicall_returns_results_and_koji_faults(
    world: World, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    with session.multicall() as m:
        ok = m.repoInfo(world.repo["id"], strict=True)
        missing = m.getTag("no-such-tag", strict=True)
        unknown = m.noSuchMethod()
        echoed = m.echo("a", 1)
    assert ok.result["tag_name"] == "f40-build"
    assert echoed.result == ["a", 1]
    with pytest.raises(koji.GenericError, match="No such tagInfo"):
        _ = missing.result
    with pytest.raises(koji.GenericError, match="Invalid method"):
        _ = unknown.result
    # the legacy interface gets the raw entries: [result] or a fault struct
    session.multicall = True
    session.echo("x")
    session.repoInfo(999999, strict=True)
    raw = session.multiCall()
    assert raw[0] == [["x"]]
    assert raw[1]["faultCode"] == koji.GenericError.faultCode


def test_callnum_must_not_go_backwards(sessions: Callable[..., koji.ClientSession]) -> None:
    session = sessions()
    session.echo(1)
    session.callnum -= 5
    with pytest.raises(koji.SequenceError):
        session.echo(2)
    session.callnum += 10
    assert session.echo(3) == [3]


def test_calls_are_recorded_in_order(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    hub.clear_calls()
    session.repoInfo(world.repo["id"], strict=True)
    session.getBuildConfig("f40-build", event=world.repo["create_event"])
    calls = hub.calls
    assert [c.method for c in calls] == ["repoInfo", "getBuildConfig"]
    assert calls[0].args == (world.repo["id"],) and calls[0].kwargs == {"strict": True}
    assert calls[1].kwargs == {"event": world.repo["create_event"]}


# -- read calls kojid makes ---------------------------------------------------------


def test_build_config_repo_and_task_shapes(
    world: World, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    config = session.getBuildConfig(world.tag["id"], event=world.repo["create_event"])
    assert config["name"] == "f40-build" and config["arches"] == "x86_64"
    assert config["extra"]["rpm.macro.dist"] == ".fc40"
    assert config["query_event"] == world.repo["create_event"]
    repo = session.repoInfo(world.repo["id"], strict=True)
    assert koji.REPO_STATES[repo["state"]] == "READY"
    assert repo["tag_id"] == world.tag["id"] and repo["create_event"] == world.repo["create_event"]
    task = session.getTaskInfo(TASK_ID, request=True, strict=True)
    assert task["method"] == "buildArch" and task["request"][4] == {"repo_id": world.repo["id"]}
    externals = session.getExternalRepoList(world.tag["id"], event=world.repo["create_event"])
    assert [(e["external_repo_name"], e["url"]) for e in externals] == [
        ("centos-base", "http://mirror.example/$arch/")
    ]
    with pytest.raises(koji.GenericError, match="query returned no rows"):
        session.repoInfo(424242, strict=True)
    assert session.repoInfo(424242) is None
    # kojihub.get_external_repo, by name or id
    erepo = session.getExternalRepo("centos-base", strict=True)
    assert erepo == {"id": world.ext_repo["id"], "name": "centos-base", "url": erepo["url"]}
    assert session.getExternalRepo(world.ext_repo["id"])["name"] == "centos-base"
    assert session.getExternalRepo("no-such-repo") is None
    with pytest.raises(koji.GenericError, match="No such repo: no-such-repo"):
        session.getExternalRepo("no-such-repo", strict=True)


def test_repo_layout_is_what_kojid_reads(world: World, hub: HubFake) -> None:
    archdir = os.path.join(hub.repo_dir(world.repo["id"]), "x86_64")
    with open(os.path.join(archdir, "rpmlist.jsonl")) as fo:
        rows = [json.loads(line) for line in fo]
    assert {(r["name"], r["id"], r["payloadhash"]) for r in rows} == {
        ("bash", world.bash["id"], world.bash["payloadhash"]),
        ("glibc", world.glibc["id"], world.glibc["payloadhash"]),
    }
    with open(os.path.join(archdir, "pkglist")) as fo:
        assert "toplink/packages/bash/5.2/1.fc40/x86_64/bash-5.2-1.fc40.x86_64.rpm\n" in fo.read()
    assert os.path.realpath(os.path.join(archdir, "toplink")) == os.path.realpath(hub.topdir)


# -- buildroots ---------------------------------------------------------------------


def test_buildroot_state_machine(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    brootid = session.host.newBuildRoot(world.repo["id"], "x86_64", task_id=TASK_ID)
    assert isinstance(brootid, int)
    session.host.setBuildRootState(brootid, "BUILDING")
    with pytest.raises(koji.GenericError, match="Cannot change buildroot state to INIT"):
        session.host.setBuildRootState(brootid, "INIT")
    session.host.setBuildRootState(brootid, koji.BR_STATES["EXPIRED"])
    session.host.setBuildRootState(brootid, "EXPIRED")  # quietly ignored
    with pytest.raises(koji.GenericError, match="is EXPIRED"):
        session.host.setBuildRootState(brootid, "BUILDING")
    broot = hub.buildroot(brootid)
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
    assert (broot.task_id, broot.repo_id, broot.arch) == (TASK_ID, world.repo["id"], "x86_64")
    assert broot.retire_event is not None


def test_buildroot_needs_the_hosts_open_task(
    world: World, sessions: Callable[..., koji.ClientSession]
) -> None:
    other = sessions(OTHER_HOST)
    with pytest.raises(koji.ActionNotAllowed, match="does not own task"):
        other.host.newBuildRoot(world.repo["id"], "x86_64", task_id=TASK_ID)
    mine = sessions()
    # the schema requires a task and an existing repo: database errors, fault code 1
    with pytest.raises(xmlrpc.client.Fault) as no_task:
        mine.host.newBuildRoot(world.repo["id"], "x86_64")
    assert no_task.value.faultCode == 1 and "NotNullViolation" in no_task.value.faultString
    with pytest.raises(xmlrpc.client.Fault, match="ForeignKeyViolation"):
        mine.host.newBuildRoot(999, "x86_64", task_id=TASK_ID)
    with pytest.raises(koji.GenericError, match="Architecture"):
        mine.host.newBuildRoot(world.repo["id"], "x86_64,i686", task_id=TASK_ID)
    brootid = mine.host.newBuildRoot(world.repo["id"], "x86_64", task_id=TASK_ID)
    with pytest.raises(koji.ActionNotAllowed, match="not owner of buildroot"):
        other.host.setBuildRootState(brootid, "BUILDING")


def test_set_buildroot_list_is_strict(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    brootid = session.host.newBuildRoot(world.repo["id"], "x86_64", task_id=TASK_ID)
    unknown = dict(rpm_entry(world.bash), name="not-in-koji")
    with pytest.raises(koji.GenericError, match="No such rpm"):
        session.host.setBuildRootList(brootid, [rpm_entry(world.bash), unknown])
    assert hub.buildroot(brootid).listing == []  # the failed call left nothing behind

    external = {
        "name": "zlib",
        "version": "1.3",
        "release": "1.el9",
        "epoch": None,
        "arch": "x86_64",
        "payloadhash": "ab" * 16,
        "size": 100,
        "buildtime": 1700000000,
        "external_repo": {"external_repo_id": world.ext_repo["id"]},
        "location": world.ext_repo["id"],
    }
    with pytest.raises(koji.GenericError, match="No such entry in table external_repo"):
        session.host.setBuildRootList(brootid, [dict(external, location="nowhere")])
    # an image RPM marked with its external repo's name only (what the glue sent before it
    # resolved the repo): kojihub looks it up strictly as an internal RPM and refuses it
    by_name_only = {k: v for k, v in external.items() if k != "location"}
    by_name_only["external_repo"] = {"external_repo_name": world.ext_repo["name"]}
    with pytest.raises(koji.GenericError, match="No such rpm"):
        session.host.setBuildRootList(brootid, [by_name_only])
    assert hub.buildroot(brootid).listing == []
    internal_by_id = dict(rpm_entry(world.glibc), id=world.glibc["id"])
    session.host.setBuildRootList(brootid, [rpm_entry(world.bash), internal_by_id, external])
    listed = {
        (r["name"], r["external_repo_name"], r["is_update"]) for r in hub.buildroot_rpms(brootid)
    }
    assert listed == {
        ("bash", "INTERNAL", False),
        ("glibc", "INTERNAL", False),
        ("zlib", "centos-base", False),
    }

    # the initial list is set once, in INIT; updates only while BUILDING
    with pytest.raises(xmlrpc.client.Fault, match="UniqueViolation"):
        session.host.setBuildRootList(brootid, [rpm_entry(world.bash)])
    with pytest.raises(koji.GenericError, match="wrong state"):
        session.host.updateBuildRootList(brootid, [rpm_entry(world.bash)])
    session.host.setBuildRootState(brootid, "BUILDING")
    with pytest.raises(koji.GenericError, match="wrong state"):
        session.host.setBuildRootList(brootid, [rpm_entry(world.bash)])
    late = hub.add_rpm("make", "4.4", "1.fc40", "x86_64")
    session.host.updateBuildRootList(brootid, [rpm_entry(world.bash), rpm_entry(late)])
    updates = [r["name"] for r in hub.buildroot_rpms(brootid) if r["is_update"]]
    assert updates == ["make"]
    with pytest.raises(koji.GenericError, match="hash changed for external rpm"):
        session.host.updateBuildRootList(brootid, [dict(external, payloadhash="cd" * 16)])


# -- uploads ------------------------------------------------------------------------


def write_random(path: str, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as fo:
        fo.write(data)
    return data


def test_upload_wrapper_arrives_byte_exact(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession], tmp_path: Any
) -> None:
    session = sessions(use_fast_upload=True)
    data = write_random(str(tmp_path / "foo-1.0-1.fc40.x86_64.rpm"), 10_500, seed=1)
    hub.clear_calls()
    session.uploadWrapper(str(tmp_path / "foo-1.0-1.fc40.x86_64.rpm"), UPLOAD_DIR, blocksize=1000)
    relpath = UPLOAD_DIR + "/foo-1.0-1.fc40.x86_64.rpm"
    assert relpath == "tasks/2345/12345/foo-1.0-1.fc40.x86_64.rpm"
    assert hub.upload_bytes(relpath) == data
    assert hub.upload_requests(relpath) == 11
    assert hub.call_names() == ["rawUpload"] * 11 + ["checkUpload"]
    assert [c.offset for c in hub.upload_chunks(relpath)] == list(range(0, 10_500, 1000))


def test_upload_wrapper_probes_with_check_upload_without_fast_upload(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession], tmp_path: Any
) -> None:
    session = sessions()  # ClientSession default: no use_fast_upload
    data = write_random(str(tmp_path / "mock_config.log"), 3000, seed=2)
    hub.clear_calls()
    session.uploadWrapper(str(tmp_path / "mock_config.log"), UPLOAD_DIR, blocksize=1024)
    assert hub.call_names() == ["checkUpload"] + ["rawUpload"] * 3 + ["checkUpload"]
    assert hub.upload_bytes(UPLOAD_DIR + "/mock_config.log") == data


def test_upload_to_someone_elses_task_is_refused(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession], tmp_path: Any
) -> None:
    write_random(str(tmp_path / "x.log"), 10, seed=3)
    other = sessions(OTHER_HOST, use_fast_upload=True)
    with pytest.raises(koji.ActionNotAllowed, match="does not own task"):
        other.uploadWrapper(str(tmp_path / "x.log"), UPLOAD_DIR)
    mine = sessions(use_fast_upload=True)
    with pytest.raises(koji.GenericError, match="Invalid task upload directory"):
        mine.uploadWrapper(str(tmp_path / "x.log"), f"tasks/1/{TASK_ID}")
    with pytest.raises(koji.GenericError, match="Invalid upload filename"):
        mine.uploadWrapper(str(tmp_path / "x.log"), UPLOAD_DIR, name=".hidden")
    assert not any(path.endswith("x.log") for path in hub.uploads())


def test_raw_upload_rules(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    first = session.rawUpload(b"hello world", 0, UPLOAD_DIR, "build.log")
    assert first == {
        "size": 11,
        "fileverify": "adler32",
        "offset": 0,
        "hexdigest": koji.util.adler32_constructor(b"hello world").hexdigest(),
    }
    with pytest.raises(koji.GenericError, match="upload path exists"):
        session.rawUpload(b"again", 0, UPLOAD_DIR, "build.log")
    # overwrite truncates at the offset: a restarted log replaces the old tail
    session.rawUpload(b"HELLO", 0, UPLOAD_DIR, "build.log", overwrite=True)
    assert hub.upload_bytes(UPLOAD_DIR + "/build.log") == b"HELLO"
    # without overwrite the chunk must end the file
    with pytest.raises(koji.GenericError, match="Incorrect upload length"):
        session.rawUpload(b"h", 1, UPLOAD_DIR, "build.log")
    session.rawUpload(b"!", 9, UPLOAD_DIR, "build.log", overwrite=True)
    assert hub.upload_chunks(UPLOAD_DIR + "/build.log")[-1].leaves_gap


def test_upload_file_rules(
    world: World, hub: HubFake, sessions: Callable[..., koji.ClientSession]
) -> None:
    import base64
    import hashlib

    session = sessions()

    def upload(name: str, data: bytes, offset: int, digest: str = "") -> bool:
        digest = digest or hashlib.sha256(data).hexdigest()
        return bool(
            session.uploadFile(
                UPLOAD_DIR,
                name,
                len(data),
                ("sha256", digest),
                offset,
                base64.b64encode(data).decode(),
            )
        )

    assert upload("x.rpm", b"abc", 0)
    assert not upload("x.rpm", b"def", 3, digest="0" * 64)  # digest mismatch: False, no write
    assert upload("x.rpm", b"def", 3)
    with pytest.raises(koji.GenericError, match="file already exists"):
        upload("x.rpm", b"abc", 0)
    assert upload("root.log", b"one", 0)
    assert upload("root.log", b"two", 0)  # .log files may restart from 0
    assert hub.upload_bytes(UPLOAD_DIR + "/x.rpm") == b"abcdef"
    assert hub.upload_bytes(UPLOAD_DIR + "/root.log") == b"two"


@pytest.mark.parametrize("fast", [True, False], ids=["rawUpload", "uploadFile"])
def test_incremental_upload_of_a_growing_log(
    fast: bool,
    world: World,
    hub: HubFake,
    sessions: Callable[..., koji.ClientSession],
    tmp_path: Any,
) -> None:
    session = sessions(use_fast_upload=fast)
    log = tmp_path / "root.log"
    pieces = [b"a" * 100, b"", b"b" * 70_000, b"c" * 5]
    expected = b""
    with open(log, "wb") as writer, open(log, "rb") as reader:
        for piece in pieces:
            writer.write(piece)
            writer.flush()
            expected += piece
            koji.daemon.incremental_upload(session, "root.log", reader, UPLOAD_DIR)
    relpath = UPLOAD_DIR + "/root.log"
    assert hub.upload_bytes(relpath) == expected
    chunks = hub.upload_chunks(relpath)
    # nothing is sent for the empty round; the 70000-byte piece goes as 64 KiB + rest
    assert [(c.offset, c.size) for c in chunks] == [
        (0, 100),
        (100, 65536),
        (65636, 4464),
        (70100, 5),
    ]
    assert {c.method for c in chunks} == {"rawUpload" if fast else "uploadFile"}
    assert not any(c.leaves_gap for c in chunks)


# -- tasks and repos ----------------------------------------------------------------


def test_task_lifecycle_records_the_result(
    hub: HubFake, world: World, sessions: Callable[..., koji.ClientSession]
) -> None:
    session = sessions()
    free = hub.add_task("createrepo", [world.repo["id"], "x86_64", None], state="FREE")
    opened = session.host.openTask(free["id"])
    assert opened["state"] == koji.TASK_STATES["OPEN"] and opened["host_id"] is not None
    assert session.host.openTask(free["id"]) is None  # already open
    session.host.setTaskWeight(free["id"], 1.5)
    result = ["tasks/x", ["repomd.xml"]]
    session.host.closeTask(free["id"], koji.xmlrpcplus.dumps((result,), methodresponse=1))
    task = hub.task(free["id"])
    assert task.result == result and koji.TASK_STATES[task.state] == "CLOSED"
    with pytest.raises(koji.ActionNotAllowed):
        session.host.closeTask(free["id"], koji.xmlrpcplus.dumps((None,), methodresponse=1))


def test_repo_init_and_done_move_uploaded_repodata(
    hub: HubFake, world: World, sessions: Callable[..., koji.ClientSession], tmp_path: Any
) -> None:
    session = sessions(use_fast_upload=True)
    repo_id, event_id = session.host.repoInit(world.tag["id"], task_id=TASK_ID)
    rinfo = session.repoInfo(repo_id, strict=True)
    assert rinfo["state"] == koji.REPO_INIT and rinfo["create_event"] == event_id
    assert os.path.getsize(os.path.join(hub.repo_dir(repo_id), "x86_64", "pkglist")) > 0
    repomd = write_random(str(tmp_path / "repomd.xml"), 500, seed=4)
    session.uploadWrapper(str(tmp_path / "repomd.xml"), UPLOAD_DIR, "repomd.xml")
    with pytest.raises(koji.GenericError, match="uploaded file missing"):
        session.host.repoDone(repo_id, {"x86_64": [UPLOAD_DIR, ["primary.xml.gz", "repomd.xml"]]})
    assert session.repoInfo(repo_id)["state"] == koji.REPO_INIT
    session.host.repoDone(repo_id, {"x86_64": [UPLOAD_DIR, ["repomd.xml"]]})
    assert session.repoInfo(repo_id)["state"] == koji.REPO_READY
    with open(os.path.join(hub.repo_dir(repo_id), "x86_64", "repodata", "repomd.xml"), "rb") as fo:
        assert fo.read() == repomd


def test_files_are_served_for_topurl(hub: HubFake, world: World, tmp_path: Any) -> None:
    with open(os.path.join(hub.topdir, "work", "foo.src.rpm"), "wb") as fo:
        fo.write(b"srpm")
    out = tmp_path / "downloaded"
    koji.downloadFile(hub.topurl + "/work/foo.src.rpm", path=str(out))
    assert out.read_bytes() == b"srpm"
    missing = requests.get(hub.topurl + "/work/missing.rpm", timeout=10)
    assert missing.status_code == 404


# -- a whole buildArch conversation -------------------------------------------------


def test_build_arch_call_sequence_is_accepted(
    hub: HubFake, world: World, sessions: Callable[..., koji.ClientSession], tmp_path: Any
) -> None:
    """Replays BuildArchTask.handler's hub traffic (see server.py) and checks the outcome."""
    session = sessions(use_fast_upload=True)
    hub.clear_calls()
    event = session.repoInfo(world.repo["id"], strict=True)["create_event"]
    session.getAverageBuildDuration("foo", age=6)
    host = session.host.getHost()
    config = session.getBuildConfig(world.tag["id"], event=event)
    assert set(host["arches"].split()) & set(config["arches"].split()) == {"x86_64"}
    repo = session.repoInfo(world.repo["id"], strict=True)
    assert (
        session.getBuildConfig(world.tag["id"], event=repo["create_event"])["id"] == repo["tag_id"]
    )
    brootid = session.host.newBuildRoot(repo["id"], "x86_64", task_id=TASK_ID)
    cfg = tmp_path / "f40-build.cfg"
    cfg.write_text("config_opts['root'] = 'f40-build'\n")
    session.uploadWrapper(str(cfg), UPLOAD_DIR, name="mock_config.log")
    with open(tmp_path / "root.log", "wb") as writer, open(tmp_path / "root.log", "rb") as reader:
        writer.write(b"init\n")
        writer.flush()
        koji.daemon.incremental_upload(session, "root.log", reader, UPLOAD_DIR)
        session.getExternalRepoList(repo["tag_id"], event=event)
        session.host.setBuildRootList(brootid, [dict(rpm_entry(world.bash), id=world.bash["id"])])
        session.host.setBuildRootState(brootid, "BUILDING")
        writer.write(b"build\n")
        writer.flush()
        koji.daemon.incremental_upload(session, "root.log", reader, UPLOAD_DIR)
    session.getExternalRepoList(repo["tag_id"], event=event)
    session.host.updateBuildRootList(brootid, [rpm_entry(world.bash), rpm_entry(world.glibc)])
    rpm = tmp_path / "foo-1.0-1.fc40.x86_64.rpm"
    rpm_bytes = write_random(str(rpm), 2048, seed=5)
    session.uploadWrapper(str(rpm), UPLOAD_DIR)
    session.host.setBuildRootState(brootid, "EXPIRED")
    result = {
        "rpms": [UPLOAD_DIR + "/" + rpm.name],
        "srpms": [],
        "logs": [UPLOAD_DIR + "/mock_config.log", UPLOAD_DIR + "/root.log"],
        "brootid": brootid,
    }
    session.host.closeTask(TASK_ID, koji.xmlrpcplus.dumps((result,), methodresponse=1))

    assert hub.call_names(skip=("rawUpload", "checkUpload")) == [
        "repoInfo",
        "getAverageBuildDuration",
        "host.getHost",
        "getBuildConfig",
        "repoInfo",
        "getBuildConfig",
        "host.newBuildRoot",
        "getExternalRepoList",
        "host.setBuildRootList",
        "host.setBuildRootState",
        "getExternalRepoList",
        "host.updateBuildRootList",
        "host.setBuildRootState",
        "host.closeTask",
    ]
    assert all(c.fault is None for c in hub.calls)
    assert hub.buildroot(brootid).state_history == ["INIT", "BUILDING", "EXPIRED"]
    assert [r["name"] for r in hub.buildroot_rpms(brootid) if r["is_update"]] == ["glibc"]
    assert hub.upload_bytes(UPLOAD_DIR + "/root.log") == b"init\nbuild\n"
    assert hub.upload_bytes(UPLOAD_DIR + "/" + rpm.name) == rpm_bytes
    assert hub.task(TASK_ID).result == result
    for path in result["rpms"] + result["logs"]:
        assert os.path.isfile(os.path.join(hub.workdir, path))
