"""rebuildSRPM and buildSRPMFromSCM in containers, driven as kojid drives them, against the
hub fake: the real adapter in the task image, the tag's ``srpm-build`` group as the buildroot,
a git repository served by ``git daemon`` on 127.0.0.1 for the SCM builds.

The handlers are kojid's own (KOJI_SRC) or built on the stand-ins of
``koji_adjutant.kojid.compat``, as in test_kojid_glue; the fixtures are that module's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class Builder:
    """A builder of the hub fake that runs the SRPM handlers on ``real_world``'s tag."""

    handlers: Handlers
    hub: HubFake
    world: glue.World
    session: koji.ClientSession
    options: Any
    write_conf: Callable[..., Path]
    git_url: str
    commits: dict[str, str]

    def configure(self, **values: Any) -> None:
        self.write_conf(**{"network": "none", **values})

    def scm_url(self, name: str) -> str:
        return f"{self.git_url}/{name}.git#{self.commits[name]}"

    def run(
        self,
        method: str,
        source: str,
        source_cmd: str = "./get-sources",
        allowed_scms: str | None = None,
    ) -> int:
        """One task of ``method`` (rebuildSRPM or buildSRPMFromSCM) on ``source``, run as
        kojid runs it; ``source_cmd`` is what allowed_scms sets for the test repositories."""
        # host:repository:use_common:source_cmd; '?' matches the ':' of host:port
        self.options.allowed_scms = allowed_scms or f"127.0.0.1?*:/adj-*:no:{source_cmd}"
        request = [source, self.world.tag["id"], {"repo_id": self.world.repo["id"]}]
        task_id = int(self.hub.add_task(method, request, arch="noarch", host=HOST)["id"])
        by_method = {
            "rebuildSRPM": self.handlers.rebuild_srpm,
            "buildSRPMFromSCM": self.handlers.build_srpm_from_scm,
        }
        kojidloader.run_task(by_method[method], self.session, self.options, task_id)
        return task_id

    def build_log(self, task_id: int) -> str:
        return self.hub.upload_bytes(f"{glue.upload_dir(task_id)}/build.log").decode()


@pytest.fixture
def builder(
    handlers: Handlers,
    hub: HubFake,
    real_world: glue.World,
    session: koji.ClientSession,
    options: Any,
    conf: Callable[..., Path],
    image: str,
    podman_socket: str,
    git_server: tuple[str, dict[str, str]],
) -> Builder:
    def write_conf(**values: Any) -> Path:
        return conf(podman_socket=podman_socket, task_image=image, **values)

    made = Builder(handlers, hub, real_world, session, options, write_conf, *git_server)
    made.configure()
    return made


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
    builder: Builder, dev_distro: DevDistro, tmp_path: Path
) -> None:
    hub = builder.hub
    url = builder.scm_url("adj-scmhello")
    # kojid's scm_credentials_dir: source_cmd reads it, rpmbuild never sees it (the spec fails
    # when it does)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o755)
    credentials.chmod(0o755)
    (credentials / "token").write_text("s3cret-token\n")
    (credentials / "token").chmod(0o644)
    builder.options.scm_credentials_dir = str(credentials)
    task_id = builder.run("buildSRPMFromSCM", url)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    rel = glue.upload_dir(task_id)
    result = task.result
    assert result["srpm"] == f"{rel}/adj-scmhello-2.0-1{DIST}.src.rpm"
    # kojid's source: the URL asked for, and what was checked out (git rev-parse HEAD)
    assert result["source"] == {"url": url, "source": url}
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
    build_log = builder.build_log(task_id)
    assert "Executing command: ./get-sources (user 1000:135, network on)" in build_log
    assert "rpmbuild -bs" in build_log and "network off" in build_log
    assert "get-sources: credentials token of 13 bytes" in build_log


def test_source_cmd_without_network_fails_as_kojid_reports_it(builder: Builder) -> None:
    # source_cmd_network = no: get-sources runs in the build container, which has none
    builder.configure(source_cmd_network="no")
    task_id = builder.run("buildSRPMFromSCM", builder.scm_url("adj-scmhello"))
    fault = builder.hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.BuildError.faultCode
    assert fault[1] == (
        "error retrieving sources, source_cmd exited with status 3;"
        " see build.log for more information"
    )
    assert "get-sources: no network" in builder.build_log(task_id)
    (broot,) = builder.hub.buildroots
    assert broot.state_history == ["INIT", "BUILDING", "EXPIRED"]


def test_a_spec_failing_in_prep_fails_both_methods(builder: Builder, tmp_path: Path) -> None:
    # no source_cmd at all (allowed_scms' empty field): copy, then rpmbuild -bs
    scm_id = builder.run("buildSRPMFromSCM", builder.scm_url("adj-prepfail"), source_cmd="")
    rebuild_id = builder.run("rebuildSRPM", glue._add_srpm(builder.hub, "adj-prepfail", tmp_path))
    for task_id in (scm_id, rebuild_id):
        fault = builder.hub.task(task_id).fault
        assert fault is not None and fault[0] == koji.BuildError.faultCode
        assert fault[1] == (
            "error building srpm, rpmbuild exited with status 1; see build.log for more information"
        )
        build_log = builder.build_log(task_id)
        assert "adj-prepfail: %prep fails in the buildroot" in build_log
        assert "source_cmd" not in build_log
    states = [b.state_history for b in builder.hub.buildroots]
    assert states == [["INIT", "BUILDING", "EXPIRED"]] * 2


def test_an_scm_outside_allowed_scms_is_refused_before_any_buildroot(builder: Builder) -> None:
    task_id = builder.run(
        "buildSRPMFromSCM", builder.scm_url("adj-scmhello"), allowed_scms="scm.example.org:/rpms/*"
    )
    fault = builder.hub.task(task_id).fault
    assert fault is not None and fault[0] == koji.BuildError.faultCode
    assert fault[1].endswith("/adj-scmhello.git is not in the list of allowed SCMs")
    assert builder.hub.buildroots == []
    assert not any(c.method == "host.newBuildRoot" for c in builder.hub.calls)


def test_rebuild_srpm_rebuilds_the_uploaded_srpm_in_the_buildroot(
    builder: Builder, dev_distro: DevDistro
) -> None:
    hub = builder.hub
    task_id = builder.run("rebuildSRPM", builder.world.srpm_name)
    task = hub.task(task_id)
    assert task.fault is None, task.fault
    result = task.result
    name = f"adj-hello-1.0-1{DIST}.src.rpm"
    assert result["srpm"] == f"{glue.upload_dir(task_id)}/{name}"
    assert result["source"] == {"source": name, "url": name}
    assert {"build.log", "root.log", "state.log"} <= _log_names(result)
    _assert_srpm_buildroot(hub, result["brootid"], dev_distro)
    # rebuilt in the buildroot with the builder's macros (kojid's vendor), not the upload
    rebuilt = Path(hub.workdir) / result["srpm"]
    assert kt.rpm_header(rebuilt, "vendor")["vendor"] == builder.options.vendor
    assert "rpm -Uvh --nodeps /builddir/build/originals/" in builder.build_log(task_id)
