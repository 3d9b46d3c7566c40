"""rebuildSRPM and buildSRPMFromSCM in containers, driven as kojid drives them, against the
hub fake: the real adapter in the task image, the tag's ``srpm-build`` group as the buildroot,
a git repository served by ``git daemon`` on 127.0.0.1 for the SCM builds.

The handlers are kojid's own (KOJI_SRC) or built on the stand-ins of
``koji_adjutant.kojid.compat``, as in test_kojid_glue; the fixtures are that module's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import koji
import koji_adjutant
import kojidloader
import kojitopdir as kt
import pytest
import test_kojid_glue as glue
from hubfake import HubFake
from koji_adjutant.devdistro import DevDistro
from koji_adjutant.kojid.handlers import Handlers

# the hub, builder and tag fixtures of the glue tests
kojid = glue.kojid
handlers = glue.handlers
merge_slashes = glue.merge_slashes
hub = glue.hub
session = glue.session
options = glue.options
conf = glue.conf
hello = glue.hello
tools = glue.tools
real_world = glue.real_world

pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
    pytest.mark.podman,
    pytest.mark.slow,
    pytest.mark.usefixtures("no_leaks"),
]

DIST = glue.DIST
HOST = glue.HOST


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """``git daemon`` on 127.0.0.1 serving adj-scmhello (tests/specs; its source_cmd needs a
    network, its spec fails when rpmbuild has one) and adj-prepfail: (base URL, commits)."""
    base = tmp_path_factory.mktemp("git")
    commits = {
        "adj-scmhello": kt.make_git_repo(base, "adj-scmhello", kt.scm_hello_files()),
        "adj-prepfail": kt.make_git_repo(
            base, "adj-prepfail", {"adj-prepfail.spec": kt.spec_path("adj-prepfail").read_text()}
        ),
    }
    with kt.GitDaemon(base) as daemon:
        yield daemon.url, commits


def _scm_options(options: Any, source_cmd: str = "./get-sources") -> Any:
    # host:repository:use_common:source_cmd; '?' matches the ':' of host:port
    options.allowed_scms = f"127.0.0.1?*:/adj-*:no:{source_cmd}"
    return options


def _scm_task(hub: HubFake, world: glue.World, url: str) -> int:
    request = [url, world.tag["id"], {"repo_id": world.repo["id"]}]
    return int(hub.add_task("buildSRPMFromSCM", request, arch="noarch", host=HOST)["id"])


def _rebuild_task(hub: HubFake, world: glue.World, srpm: str) -> int:
    request = [srpm, world.tag["id"], {"repo_id": world.repo["id"]}]
    return int(hub.add_task("rebuildSRPM", request, arch="noarch", host=HOST)["id"])


def _assert_srpm_buildroot(hub: HubFake, brootid: int, dev_distro: DevDistro) -> None:
    """One buildroot, INIT -> BUILDING -> EXPIRED, listing exactly the srpm-build group."""
    broot = hub.buildroot(brootid)
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]
    listed = hub.buildroot_rpms(broot.id)
    assert sorted(r["name"] for r in listed) == sorted(dev_distro.groups["srpm-build"])
    # kojid's rebuild_srpm and build_srpm send no list after the tool
    assert not any(c.method == "host.updateBuildRootList" for c in hub.calls)


def _log_names(result: dict[str, Any]) -> set[str]:
    return {p.rsplit("/", 1)[1] for p in result["logs"]}


def test_build_srpm_from_scm_fetches_with_a_network_and_builds_without(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    git_server: tuple[str, dict[str, str]],
    dev_distro: DevDistro,
) -> None:
    conf(podman_socket=podman_socket, task_image=image, network="none")
    base, commits = git_server
    url = f"{base}/adj-scmhello.git#{commits['adj-scmhello']}"
    task_id = _scm_task(hub, real_world, url)
    kojidloader.run_task(handlers.build_srpm_from_scm, session, _scm_options(options), task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    rel = glue.upload_dir(task_id)
    result = task.result
    name = f"adj-scmhello-2.0-1{DIST}.src.rpm"
    assert result["srpm"] == f"{rel}/{name}"
    assert result["source"] == {
        "url": url,
        "source": f"git://127.0.0.1:{base.rsplit(':', 1)[1]}/adj-scmhello.git#"
        f"{commits['adj-scmhello']}",
    }
    assert {"build.log", "root.log", "state.log", "buildroot_config.log"} <= _log_names(result)
    _assert_srpm_buildroot(hub, result["brootid"], dev_distro)
    # the SRPM holds the spec and the source source_cmd fetched
    srpm = Path(hub.workdir) / result["srpm"]
    files = subprocess.run(
        ["rpm", "-qpl", str(srpm)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert sorted(files) == ["adj-scmhello.spec", "greeting.txt"]
    assert koji_adjutant.read_package(str(srpm))["name"] == "adj-scmhello"
    # kojid's checkout log reached the hub; build.log shows which step had a network
    assert b"git" in hub.upload_bytes(f"{rel}/checkout.log")
    build_log = hub.upload_bytes(f"{rel}/build.log").decode()
    assert "Executing command: ./get-sources (user 1000:135, network on)" in build_log
    assert "rpmbuild -bs" in build_log and "network off" in build_log


def test_source_cmd_without_network_fails_as_kojid_reports_it(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    git_server: tuple[str, dict[str, str]],
) -> None:
    # source_cmd_network = no: get-sources runs in the build container, which has none
    conf(podman_socket=podman_socket, task_image=image, network="none", source_cmd_network="no")
    base, commits = git_server
    task_id = _scm_task(hub, real_world, f"{base}/adj-scmhello.git#{commits['adj-scmhello']}")
    kojidloader.run_task(handlers.build_srpm_from_scm, session, _scm_options(options), task_id)
    fault = hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.BuildError.faultCode
    assert fault[1] == (
        "error retrieving sources, source_cmd exited with status 3;"
        " see build.log for more information"
    )
    assert b"get-sources: no network" in hub.upload_bytes(f"{glue.upload_dir(task_id)}/build.log")
    (broot,) = hub.buildroots
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]


def test_a_spec_failing_in_prep_fails_both_methods(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    git_server: tuple[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    conf(podman_socket=podman_socket, task_image=image, network="none")
    base, commits = git_server
    # no source_cmd at all (allowed_scms' empty field): copy, then rpmbuild -bs
    scm_id = _scm_task(hub, real_world, f"{base}/adj-prepfail.git#{commits['adj-prepfail']}")
    kojidloader.run_task(
        handlers.build_srpm_from_scm, session, _scm_options(options, source_cmd=""), scm_id
    )
    srpm = glue._add_srpm(hub, "adj-prepfail", tmp_path)
    rebuild_id = _rebuild_task(hub, real_world, srpm)
    kojidloader.run_task(handlers.rebuild_srpm, session, options, rebuild_id)
    for task_id in (scm_id, rebuild_id):
        fault = hub.task(task_id).fault
        assert fault is not None and fault[0] == koji.BuildError.faultCode
        assert fault[1] == (
            "error building srpm, rpmbuild exited with status 1; see build.log for more information"
        )
        build_log = hub.upload_bytes(f"{glue.upload_dir(task_id)}/build.log")
        assert b"adj-prepfail: %prep fails in the buildroot" in build_log
        assert b"source_cmd" not in build_log
    assert [b.state_history for b in hub.buildroots] == [["INIT", "BUILDING", "EXPIRED"]] * 2


def test_an_scm_outside_allowed_scms_is_refused_before_any_buildroot(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    git_server: tuple[str, dict[str, str]],
) -> None:
    conf(podman_socket=podman_socket, task_image=image, network="none")
    base, commits = git_server
    task_id = _scm_task(hub, real_world, f"{base}/adj-scmhello.git#{commits['adj-scmhello']}")
    options.allowed_scms = "scm.example.org:/rpms/*:no"
    kojidloader.run_task(handlers.build_srpm_from_scm, session, options, task_id)
    fault = hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.BuildError.faultCode
    assert fault[1].endswith("/adj-scmhello.git is not in the list of allowed SCMs")
    assert hub.buildroots == []
    assert not any(c.method == "host.newBuildRoot" for c in hub.calls)


def test_rebuild_srpm_rebuilds_the_uploaded_srpm_in_the_buildroot(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    dev_distro: DevDistro,
) -> None:
    conf(podman_socket=podman_socket, task_image=image, network="none")
    task_id = _rebuild_task(hub, real_world, real_world.srpm_name)
    kojidloader.run_task(handlers.rebuild_srpm, session, options, task_id)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    result = task.result
    name = f"adj-hello-1.0-1{DIST}.src.rpm"
    rel = glue.upload_dir(task_id)
    assert result["srpm"] == f"{rel}/{name}"
    assert result["source"] == {"source": name, "url": name}
    assert {"build.log", "root.log", "state.log"} <= _log_names(result)
    _assert_srpm_buildroot(hub, result["brootid"], dev_distro)
    # rebuilt in the buildroot with the builder's macros (kojid's vendor), not the upload
    rebuilt = Path(hub.workdir) / result["srpm"]
    assert kt.rpm_header(rebuilt, "vendor")["vendor"] == options.vendor
    build_log = hub.upload_bytes(f"{rel}/build.log").decode()
    assert "rpm -Uvh --nodeps /builddir/build/originals/" in build_log
