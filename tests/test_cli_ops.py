"""The operator's commands against real Podman: doctor, status, cache, serve.

Each command runs as ``python -m koji_adjutant.cli`` in a subprocess, as an operator runs it
(exit status, stdout, stderr; never a traceback). Containers are made through the tests'
podman service with this session's worker id (conftest's leak check covers them); cache
pruning runs against a podman service of its own with a private storage, so it can never
remove another test's (or a developer's) cache images.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import koji_adjutant
import pytest
from conftest import WORKER_ID
from koji_adjutant import ContainerSpec, PodmanManager, ResourceLimits, records
from koji_adjutant.cli import doctor
from koji_adjutant.cli._common import (
    LABEL_CACHE,
    LABEL_CACHE_KEY,
    LABEL_ROLE,
    LABEL_TASK,
    LABEL_WORKER,
    PodmanAPI,
    PodmanAPIError,
)
from koji_adjutant.config import AdjutantConfig

pytestmark = pytest.mark.podman

REPO = Path(__file__).resolve().parent.parent
#: Task ids of this run (kept-root names must be unique in the shared storage).
BASE_TASK = 7_000_000 + os.getpid() % 1_000_000
MiB = 1024**2
RLIMITS = [{"type": t, "soft": 1024, "hard": 1024} for t in ("nofile", "nproc")]


def cli(
    *args: str, config: Path | None = None, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """``koji-adjutant ARGS`` with only the KOJI_ADJUTANT_* variables given here."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KOJI_ADJUTANT_")}
    if config is not None:
        environ["KOJI_ADJUTANT_CONFIG"] = str(config)
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "koji_adjutant.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def write_conf(path: Path, **keys: object) -> Path:
    lines = ["[adjutant]", *(f"{k} = {v}" for k, v in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def conf(tmp_path: Path, podman_socket: str, image: str) -> Path:
    return write_conf(
        tmp_path / "adjutant.conf",
        podman_socket=podman_socket,
        task_image=image,
        worker_id=WORKER_ID,
    )


@pytest.fixture
def api(podman_socket: str) -> PodmanAPI:
    return PodmanAPI(podman_socket)


def create_raw(
    api: PodmanAPI,
    image: str,
    command: list[str],
    *,
    labels: dict[str, str],
    name: str | None = None,
    run: bool = False,
) -> str:
    """A container made through the REST API directly (a name, or another worker's labels)."""
    body: dict[str, Any] = {
        "image": image,
        "command": command,
        "labels": labels,
        "netns": {"nsmode": "none"},
        "r_limits": RLIMITS,
    }
    if name:
        body["name"] = name
    container_id = str(api.call("POST", "/containers/create", body=body)["Id"])
    if run:
        api.call("POST", f"/containers/{container_id}/start")
        api.call("POST", f"/containers/{container_id}/wait", query=[("condition", "exited")])
    return container_id


def remove_raw(api: PodmanAPI, container_id: str) -> None:
    api.request(
        "DELETE", f"/containers/{container_id}", query=[("force", "true"), ("timeout", "0")]
    )


# == doctor ==================================================================================


@pytest.fixture
def kojid_conf(tmp_path: Path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(REPO / "kojid_patch" / "adjutant.py", plugins / "adjutant.py")
    path = tmp_path / "kojid.conf"
    path.write_text(
        f"[kojid]\nserver = https://hub/kojihub\nplugins = runroot adjutant\n"
        f"pluginpath = /nonexistent:{plugins}\nworkdir = {tmp_path / 'work'}\n"
    )
    return path


def doctor_args(kojid_conf: Path, *more: str) -> list[str]:
    return [
        "doctor",
        "--kojid-python",
        sys.executable,
        "--kojid-conf",
        str(kojid_conf),
        "--kojid",
        str(kojid_conf.parent / "no-kojid"),
        "--min-free",
        "1M",
        *more,
    ]


def lines_of(output: str) -> dict[str, str]:
    """check name -> its status line (``ok  check: detail``)."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"(ok|PROBLEM|warning) +(.+?): ", line)
        if match:
            found[match.group(2)] = line
    return found


def test_doctor_on_a_healthy_builder_finds_no_problem(
    conf: Path, kojid_conf: Path, image: str, manager: PodmanManager
) -> None:
    done = cli(*doctor_args(kojid_conf), config=conf)
    assert done.returncode == 0, done.stdout
    checks = lines_of(done.stdout)
    for name in (
        "adjutant.conf",
        "podman socket",
        "podman runtime",
        "cgroups",
        "rlimits",
        "user namespaces",
        "init",
        f"image {image}",
        "container start",
        "kojid python",
        "kojid.conf",
        "podman storage space",
        "workdir space",
    ):
        assert checks[name].startswith("ok "), checks.get(name, done.stdout)
    assert "PROBLEM" not in done.stdout and "fix:" not in done.stdout
    assert done.stdout.rstrip().endswith("no problems found")
    # what this machine is (docs/operations.md quotes it)
    assert re.search(r"podman runtime: (runc|crun) on cgroup v[12], rootful", done.stdout)
    assert "kojid.conf: plugins lists adjutant" in done.stdout
    assert re.search(
        r"rlimits: containers get nofile \d+, nproc \d+ .*service pid \d+", done.stdout
    )
    # the test container is gone (the session's leak check would also fail)
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []

    as_json = json.loads(cli(*doctor_args(kojid_conf, "--json", "--no-run"), config=conf).stdout)
    assert as_json["ok"] is True
    assert {c["status"] for c in as_json["checks"]} <= {"ok", "warning"}
    assert "container start" not in {c["check"] for c in as_json["checks"]}


def test_doctor_reads_a_running_kojids_interpreter_and_limits(
    conf: Path, kojid_conf: Path, tmp_path: Path
) -> None:
    """kojid's interpreter and hard limits are the ones that matter, not the doctor's."""
    script = tmp_path / "kojid"
    script.write_text("import time\ntime.sleep(120)\n")
    kojid = subprocess.Popen(["prlimit", "--nofile=2048:2048", "--", sys.executable, script])
    try:
        for _ in range(50):  # prlimit execs the interpreter
            if Path(f"/proc/{kojid.pid}/cmdline").read_bytes().startswith(sys.executable.encode()):
                break
            time.sleep(0.1)
        args = [a for a in doctor_args(kojid_conf, "--no-run") if a != sys.executable]
        args.remove("--kojid-python")
        done = cli(*args, config=conf)
        checks = lines_of(done.stdout)
        assert checks["kojid python"] == (
            f"ok       kojid python: {sys.executable} imports koji_adjutant.kojid"
            f" ({koji_adjutant.__version__})"
        )
        assert re.search(
            rf"ok +rlimits: containers get nofile 2048, nproc \d+"
            rf" \(from kojid \(pid {kojid.pid}\)\)",
            checks["rlimits"],
        ), checks["rlimits"]
    finally:
        kojid.kill()
        kojid.wait()


def _fault(tmp_path: Path, kojid_conf: Path, fault: str) -> tuple[dict[str, str], list[str]]:
    """Environment overrides and extra arguments that break one thing."""
    if fault == "socket":
        return {"KOJI_ADJUTANT_PODMAN_SOCKET": str(tmp_path / "gone.sock")}, []
    if fault == "image":
        return {"KOJI_ADJUTANT_TASK_IMAGE": "localhost/koji-adjutant-absent:never"}, []
    if fault == "config":
        bad = write_conf(tmp_path / "bad.conf", memory_limit="lots")
        return {}, ["--config", str(bad)]
    if fault == "plugin-not-listed":
        kojid_conf.write_text("[kojid]\nplugins = runroot\n")
        return {}, []
    if fault == "plugin-not-installed":
        kojid_conf.write_text("[kojid]\nplugins = adjutant\npluginpath = /nonexistent\n")
        return {}, []
    if fault == "python":
        # an interpreter that sees no site-packages, as a kojid Python without the wheel
        wrapper = tmp_path / "python-without-wheel"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
        wrapper.chmod(0o755)
        return {}, ["--kojid-python", str(wrapper)]
    if fault == "userns":
        return {"KOJI_ADJUTANT_USERNS_BASE": "1"}, []
    if fault == "space":
        return {}, ["--min-free", "1000T"]
    raise AssertionError(fault)


@pytest.mark.parametrize(
    ("fault", "check", "detail"),
    [
        ("socket", "podman socket", r"gone\.sock.*No such file or directory"),
        (
            "image",
            "image localhost/koji-adjutant-absent:never",
            r"not present \(task_image\).*image not known",
        ),
        ("config", "adjutant.conf", r"invalid value for memory_limit: 'lots'"),
        ("plugin-not-listed", "kojid.conf", r"does not list adjutant \(it lists: runroot\)"),
        ("plugin-not-installed", "kojid.conf", r"no adjutant\.py in pluginpath /nonexistent"),
        ("python", "kojid python", r"cannot import koji_adjutant\.kojid: ModuleNotFoundError"),
        (
            "userns",
            "user namespaces",
            r"host ids 1-65536 \(userns_base\) are not free: user \S+ \(1\)",
        ),
        ("space", "workdir space", r"free in .*, less than 1000\.0 TiB"),
    ],
)
def test_doctor_names_each_injected_fault_with_its_fix(
    fault: str, check: str, detail: str, conf: Path, kojid_conf: Path, tmp_path: Path
) -> None:
    env, extra = _fault(tmp_path, kojid_conf, fault)
    done = cli(*doctor_args(kojid_conf, "--no-run"), *extra, config=conf, env=env)
    assert done.returncode == 1, done.stdout
    line = lines_of(done.stdout)[check]
    assert line.startswith("PROBLEM  "), line
    assert re.search(detail, line), line
    following = done.stdout.splitlines()[done.stdout.splitlines().index(line) + 1]
    assert following.startswith("         fix: "), following
    # exactly this fault: every other check still passes (or was not run)
    others = [
        s for name, s in lines_of(done.stdout).items() if name != check and s.startswith("PROBLEM")
    ]
    if fault == "config":  # the other checks fall back to the defaults, socket included
        assert all("podman socket" in s for s in others), others
    elif fault == "space":
        assert [s.split(":")[0] for s in others] == ["PROBLEM  podman storage space"]
    else:
        assert others == []
    if fault in ("image", "config"):  # --json says the same
        as_json = json.loads(
            cli(*doctor_args(kojid_conf, "--no-run", "--json"), *extra, config=conf, env=env).stdout
        )
        assert as_json["ok"] is False
        (found,) = [c for c in as_json["checks"] if c["check"] == check]
        assert found["status"] == "PROBLEM" and re.search(detail, found["detail"])
        assert found["fix"] and found["fix"] in done.stdout


def test_doctor_finds_a_service_whose_rlimits_are_below_what_containers_get(
    conf: Path, kojid_conf: Path, image: str, tmp_path: Path
) -> None:
    """A real fault: the podman service started with a hard nofile limit of 1024."""
    base = Path(tempfile.mkdtemp(prefix="adj-lowlim-", dir="/tmp"))
    sock = base / "podman.sock"
    service = subprocess.Popen(
        [
            *("prlimit", "--nofile=1024:1024", "--", "podman", "--runtime", "runc"),
            *("system", "service", "--time=0", f"unix://{sock}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_socket(sock, service)
        done = cli(
            *doctor_args(kojid_conf), config=conf, env={"KOJI_ADJUTANT_PODMAN_SOCKET": str(sock)}
        )
        assert done.returncode == 1
        checks = lines_of(done.stdout)
        assert re.search(
            rf"PROBLEM  rlimits: containers would fail to start .*nofile \d+ > the service's 1024"
            rf" \(service pid {service.pid}: nofile 1024",
            checks["rlimits"],
        ), checks["rlimits"]
        # and the container start proves it, with runc's own words
        assert checks["container start"].startswith("PROBLEM"), checks["container start"]
        assert "operation not permitted" in checks["container start"]
    finally:
        service.terminate()
        service.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_socket(sock: Path, service: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if sock.is_socket():
            try:
                if PodmanAPI(str(sock)).request("GET", "/_ping")[0] == 200:
                    return
            except PodmanAPIError:
                pass
        assert service.poll() is None, "the podman service exited"
        time.sleep(0.1)
    raise AssertionError(f"podman service on {sock} did not come up")


def _context(info: dict[str, Any], **config: Any) -> doctor.Context:
    ctx = doctor.Context(argparse.Namespace(), AdjutantConfig(**config), 1)
    ctx.info = info
    return ctx


def test_doctor_decides_runtime_and_cgroups_from_podmans_info(api: PodmanAPI) -> None:
    """crun is not installed here (and installing it would change every podman on the host):
    the decisions are checked on this service's real info with the runtime name changed."""
    info = api.info()
    host = info["host"]
    assert doctor.check_runtime(_context(info)).status == "ok"
    crun_v1 = json.loads(json.dumps(info))
    crun_v1["host"]["ociRuntime"]["name"] = "crun"
    crun_v1["host"]["cgroupVersion"] = "v1"
    found = doctor.check_runtime(_context(crun_v1))
    assert found.status == "PROBLEM" and "crun on cgroup v1" in found.detail
    assert found.fix and "runc" in found.fix
    crun_v2 = json.loads(json.dumps(crun_v1))
    crun_v2["host"]["cgroupVersion"] = "v2"
    assert doctor.check_runtime(_context(crun_v2)).status == "ok"
    rootless = json.loads(json.dumps(info))
    rootless["host"]["security"]["rootless"] = True
    assert doctor.check_runtime(_context(rootless)).status == "PROBLEM"

    assert set(host["cgroupControllers"]) >= {"memory", "cpu", "pids"}
    limited = _context(info, memory_limit=512 * MiB, cpus=1.5)
    assert doctor.check_cgroups(limited).detail.endswith("limits enforced: memory, cpu, pids")
    no_memory = json.loads(json.dumps(info))
    no_memory["host"]["cgroupControllers"].remove("memory")
    found = doctor.check_cgroups(_context(no_memory, memory_limit=512 * MiB))
    assert found.status == "PROBLEM"
    assert "memory_limit = 536870912 (no memory controller: not enforced)" in found.detail
    # the default memory limit (75%) is set, so a builder without the controller hears of it
    assert doctor.check_cgroups(_context(no_memory)).status == "PROBLEM"
    # a limit nobody asked for (memory_limit = none) is no problem
    assert doctor.check_cgroups(_context(no_memory, memory_limit=None)).status == "ok"


def test_doctor_userns_range_against_subordinate_ids(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "subuid").write_text("containers:2147483647:2147483648\n")
    (etc / "subgid").write_text("containers:2147483647:2147483648\n")
    userns = tmp_path / "max_user_namespaces"
    userns.write_text("15000\n")
    found = doctor.check_userns(1_000_000_000, etc=str(etc), max_namespaces_path=str(userns))
    assert found.status == "ok"
    assert "subuid containers:2147483647:2147483648" in found.detail
    (etc / "subgid").write_text("builder:1000000000:65536\n")
    found = doctor.check_userns(1_000_000_000, etc=str(etc), max_namespaces_path=str(userns))
    assert found.status == "PROBLEM"
    assert "/etc/subgid range builder:1000000000:65536" in found.detail
    userns.write_text("0\n")
    found = doctor.check_userns(1_000_000_000, etc=str(etc), max_namespaces_path=str(userns))
    assert found.status == "PROBLEM" and "disabled" in found.detail
    assert doctor.check_userns(None).status == "warning"


def test_doctor_refuses_bad_arguments_without_a_traceback(conf: Path, kojid_conf: Path) -> None:
    done = cli("doctor", "--min-free", "lots", config=conf)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --min-free 'lots':")


# == status ==================================================================================

#: Touches 96 MiB, then spins (its CPU share is capped by the container's limit).
HOG = "b = b'x' * (96 << 20)\nwhile True:\n    pass\n"


def _wait_for_memory(api: PodmanAPI, container_id: str, at_least: int) -> None:
    for _ in range(100):
        stats = api.stats([container_id]).get(container_id) or {}
        if int(stats.get("MemUsage") or 0) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"container {container_id[:12]} never used {at_least} bytes")


def test_status_shows_this_workers_tasks_cache_and_kept_roots(
    manager: PodmanManager, image: str, api: PodmanAPI, conf: Path
) -> None:
    build_task, repo_task = BASE_TASK + 1, BASE_TASK + 2
    now = int(time.time())
    with ExitStack() as stack:
        build = manager.create(
            ContainerSpec(
                image,
                ["python3", "-c", HOG],
                labels={LABEL_ROLE: "build"},
                task_id=build_task,
                limits=ResourceLimits(memory_bytes=256 * MiB, cpus=0.25),
            )
        )
        stack.callback(remove_raw, api, build.container_id)
        manager.start(build)
        bootstrap = manager.create(
            ContainerSpec(
                image, ["sleep", "300"], labels={LABEL_ROLE: "bootstrap"}, task_id=build_task
            )
        )
        stack.callback(remove_raw, api, bootstrap.container_id)
        manager.start(bootstrap)
        # a createrepo_c container without role or method labels (named by its command;
        # created, not started)
        repo = manager.create(
            ContainerSpec(image, ["/usr/bin/createrepo_c", "--version"], task_id=repo_task)
        )
        stack.callback(remove_raw, api, repo.container_id)
        others = create_raw(
            api, image, ["true"], labels={LABEL_WORKER: "someone-else", LABEL_TASK: str(build_task)}
        )
        stack.callback(remove_raw, api, others)
        # kept roots as the core keeps them: images labelled with task, worker and expiry
        kept_images = {}
        for task, worker, until in (
            (BASE_TASK + 4, WORKER_ID, now + 7200),
            (BASE_TASK + 5, "someone-else", now + 7200),
            (BASE_TASK + 6, WORKER_ID, now - 90),
        ):
            kept_images[task] = import_image(
                api,
                f"localhost/koji-adjutant-kept:{task}",
                {
                    "io.koji.adjutant.kept.task_id": str(task),
                    "io.koji.adjutant.kept.worker_id": worker,
                    "io.koji.adjutant.kept.until": str(until),
                },
            )
            stack.callback(
                api.request, "DELETE", f"/images/{kept_images[task]}", query=[("force", "true")]
            )
        _wait_for_memory(api, build.container_id, 96 * MiB)

        done = cli("status", "--json", "--sample", "1", config=conf)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["worker_id"] == WORKER_ID
        tasks = {t["task_id"]: t for t in status["tasks"]}
        assert set(tasks) == {build_task, repo_task}
        building = tasks[build_task]
        assert building["method"] == "buildArch" and building["running"] is True
        assert [c["role"] for c in building["containers"]] == ["build", "bootstrap"]
        assert [c["id"] for c in building["containers"]] == [
            build.container_id,
            bootstrap.container_id,
        ]
        hog = building["containers"][0]
        assert hog["state"] == "running" and 0 <= hog["age_seconds"] < 120
        assert 96 * MiB <= hog["memory_bytes"] <= 256 * MiB
        assert hog["memory_limit_bytes"] == 256 * MiB  # the limit podman enforces
        assert hog["cpu_seconds"] > 0
        assert 2 <= hog["cpu_percent"] <= 35, hog  # spinning, capped at a quarter of a CPU
        creating = tasks[repo_task]
        assert creating["method"] == "createrepo" and creating["running"] is False
        assert creating["containers"][0]["state"] == "created"
        assert creating["containers"][0]["cpu_percent"] is None
        # kept roots: this worker's images, with the time they have left
        roots = {r["name"]: r for r in status["kept_roots"]}
        listed = {c["id"] for t in status["tasks"] for c in t["containers"]}
        assert others not in listed
        past = roots[f"localhost/koji-adjutant-kept:{BASE_TASK + 6}"]
        assert past["seconds_left"] < -80
        image_root = roots[f"localhost/koji-adjutant-kept:{BASE_TASK + 4}"]
        assert image_root["kind"] == "image" and image_root["task_id"] == BASE_TASK + 4
        assert image_root["id"] == kept_images[BASE_TASK + 4] and image_root["size_bytes"] > 0
        assert 7200 - 120 < image_root["seconds_left"] <= 7200
        assert f"localhost/koji-adjutant-kept:{BASE_TASK + 5}" not in roots
        # the cache: every labelled image of the storage, with its size
        cache_ids = {i["Id"] for i in api.images({LABEL_CACHE: "1"})}
        assert {e["id"] for e in status["cache"]["entries"]} <= cache_ids | {None}
        assert all(e["size_bytes"] > 0 for e in status["cache"]["entries"])

        text = cli("status", "--sample", "0", config=conf)
        assert text.returncode == 0
        assert f"task {build_task}  buildArch  2 container(s)" in text.stdout
        assert f"task {repo_task}  createrepo  1 container(s)" in text.stdout
        expired = (
            rf"kept:{BASE_TASK + 6}  task {BASE_TASK + 6}  image, [\d.]+ \w+  expired 1m\d\ds ago"
        )
        assert re.search(expired, text.stdout), text.stdout
        kept_line = (
            rf"kept:{BASE_TASK + 4}  task {BASE_TASK + 4}  image, [\d.]+ \w+  expires in 1h5\dm"
        )
        assert re.search(kept_line, text.stdout), text.stdout


def test_status_without_podman_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    config = write_conf(tmp_path / "a.conf", podman_socket=tmp_path / "gone.sock")
    done = cli("status", config=config)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot reach podman at {tmp_path / 'gone.sock'}")


# == cache prune (a private podman storage) =================================================


@pytest.fixture
def private_podman() -> Iterator[PodmanAPI]:
    """A podman service with storage of its own: the cache images here are the tests' only."""
    base = Path(tempfile.mkdtemp(prefix="adj-cache-", dir="/tmp"))
    sock = base / "podman.sock"
    service = subprocess.Popen(
        [
            *("podman", "--root", str(base / "root"), "--runroot", str(base / "run")),
            *("--tmpdir", str(base / "tmp"), "--runtime", "runc", "system", "service"),
            *("--time=0", f"unix://{sock}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = PodmanAPI(str(sock))
    try:
        _wait_for_socket(sock, service)
        yield api
    finally:
        try:
            for container in api.containers():
                remove_raw(api, container["Id"])
            for image in api.images():
                api.request("DELETE", f"/images/{image['Id']}", query=[("force", "true")])
        finally:
            service.terminate()
            service.wait(30)
            _unmount_under(base)
            shutil.rmtree(base)


def _unmount_under(base: Path) -> None:
    """podman's overlay driver leaves its graph root's overlay dir bind-mounted on itself."""
    with open("/proc/mounts", encoding="utf-8") as handle:
        mounts = [line.split()[1] for line in handle]
    for mount in sorted((m for m in mounts if m.startswith(f"{base}/")), reverse=True):
        subprocess.run(["umount", mount], check=True)


def import_image(api: PodmanAPI, reference: str, labels: dict[str, str]) -> str:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    query = [("reference", reference)] + [("changes", f"LABEL {k}={v}") for k, v in labels.items()]
    status, body = api.request(
        "POST",
        "/images/import",
        query=query,
        body=data.getvalue(),
        content_type="application/x-tar",
    )
    assert status == 200, body
    return str(json.loads(body)["Id"]).removeprefix("sha256:")


def test_cache_prune_follows_last_use_and_never_removes_an_image_in_use(
    private_podman: PodmanAPI, tmp_path: Path
) -> None:
    api = private_podman
    cache_dir = tmp_path / "cache-uses"
    cache_dir.mkdir()
    now = time.time()
    ages = {"k1": 3600, "k2": 86400, "k3": 3 * 86400, "k4": 10 * 86400}
    ids = {}
    for key, age in ages.items():
        ids[key] = import_image(
            api,
            f"localhost/koji-adjutant-buildroot:{key}",
            {LABEL_CACHE: "1", LABEL_CACHE_KEY: key},
        )
        (cache_dir / key).touch()
        (cache_dir / f"{key}.lock").touch()  # the key's lock (cache.rs), not an entry
        (cache_dir / f"{key}.json").touch()  # the key's record (cache.rs), not an entry
        os.utime(cache_dir / key, (now - age, now - age))
    other = import_image(api, "localhost/not-a-cache:1", {"some.label": "1"})
    user = create_raw(api, "localhost/koji-adjutant-buildroot:k4", ["/hello"], labels={})
    config = write_conf(
        tmp_path / "a.conf",
        podman_socket=api.socket,
        worker_id=WORKER_ID,
        buildroot_cache_dir=cache_dir,
    )

    listed = json.loads(cli("cache", "list", "--json", config=config).stdout)
    assert [e["key"] for e in listed] == ["k1", "k2", "k3", "k4"]  # most recently used first
    assert [e["containers"] for e in listed] == [0, 0, 0, 1]
    assert all(e["size_bytes"] > 0 for e in listed)
    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["cache"]["count"] == 4
    assert status["cache"]["total_bytes"] == sum(e["size_bytes"] for e in listed)

    dry = cli("cache", "prune", "--keep", "1", "--older-than", "2d", "--dry-run", config=config)
    assert dry.returncode == 0
    assert "would remove 2 of 4 cache image(s)" in dry.stdout
    assert len(api.images({LABEL_CACHE: "1"})) == 4

    done = cli("cache", "prune", "--keep", "1", "--older-than", "2d", config=config)
    assert done.returncode == 1, done.stdout  # k4 is in use
    assert f"removed {ids['k3'][:12]}" in done.stdout
    assert re.search(rf"in use, kept {ids['k4'][:12]}: image used by {user}", done.stdout)
    assert "removed 1 of 4 cache image(s)" in done.stdout and "1 in use" in done.stdout
    assert not (cache_dir / "k3").exists() and (cache_dir / "k4").exists()
    assert not (cache_dir / "k3.lock").exists() and (cache_dir / "k4.lock").exists()
    assert not (cache_dir / "k3.json").exists() and (cache_dir / "k4.json").exists()
    left = {i["Id"] for i in api.images({LABEL_CACHE: "1"})}
    assert left == {ids["k1"], ids["k2"], ids["k4"]}

    result = json.loads(cli("cache", "prune", "--all", "--json", config=config).stdout)
    assert {e["id"] for e in result["removed"]} == {ids["k1"], ids["k2"]}
    assert [e["id"] for e in result["in_use"]] == [ids["k4"]]
    remove_raw(api, user)
    done = cli("cache", "prune", "--all", config=config)
    assert done.returncode == 0 and "removed 1 of 1 cache image(s)" in done.stdout
    assert api.images({LABEL_CACHE: "1"}) == []
    assert [i["Id"] for i in api.images()] == [other]  # not a cache image: never touched


def test_cache_prune_without_a_cache_dir_uses_creation_and_needs_a_selection(
    private_podman: PodmanAPI, tmp_path: Path
) -> None:
    api = private_podman
    for key in ("a", "b"):
        import_image(
            api,
            f"localhost/koji-adjutant-buildroot:{key}",
            {LABEL_CACHE: "1", LABEL_CACHE_KEY: key},
        )
    config = write_conf(tmp_path / "a.conf", podman_socket=api.socket)
    done = cli("cache", "prune", config=config)
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "error: say what to prune: --all, --older-than AGE and/or --keep N"
    )
    bad = cli("cache", "prune", "--older-than", "3x", config=config)
    assert bad.returncode == 2 and "is not a duration" in bad.stderr
    fresh = cli("cache", "prune", "--older-than", "1h", config=config)
    assert fresh.returncode == 0 and "removed 0 of 2" in fresh.stdout
    assert len(api.images({LABEL_CACHE: "1"})) == 2
    keep = cli("cache", "prune", "--keep", "1", config=config)
    assert keep.returncode == 0 and "removed 1 of 2" in keep.stdout
    assert len(api.images({LABEL_CACHE: "1"})) == 1


# == serve ===================================================================================


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def json(self, path: str, expect: int = 200) -> Any:
        status, body, content_type = self.get(path)
        assert status == expect, body
        assert content_type == "application/json"
        return json.loads(body)


def start_serve(*args: str, config: Path, env: dict[str, str] | None = None) -> Served:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KOJI_ADJUTANT_")}
    environ["KOJI_ADJUTANT_CONFIG"] = str(config)
    environ.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "koji_adjutant.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.match(r"listening on (http://\S+) \(worker ", first)
    if not match:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"serve did not start: {first!r} {err}")
    return Served(proc, match.group(1).replace("0.0.0.0", "127.0.0.1"))


@pytest.fixture
def serving() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in started:
        served.proc.send_signal(signal.SIGTERM)
        _, err = served.proc.communicate(timeout=30)
        assert served.proc.returncode == 0, err
        assert "Traceback" not in err


def metric_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_serve_answers_status_tasks_and_metrics_over_http(
    manager: PodmanManager,
    image: str,
    api: PodmanAPI,
    conf: Path,
    tmp_path: Path,
    serving: list[Served],
) -> None:
    import koji
    from koji_adjutant.kojid import reaper

    task, done_ok, done_failed, refused = (BASE_TASK + n for n in (11, 12, 13, 14))
    state = tmp_path / "state"
    workdir = tmp_path / "work"
    for record in (
        dict(
            task_id=done_ok,
            method="buildArch",
            outcome="ok",
            peak_memory_bytes=300 * MiB,
            cpu_seconds=120.0,
            bytes_written=10 * MiB,
        ),
        dict(
            task_id=done_failed,
            method="buildArch",
            outcome="failed",
            peak_memory_bytes=1024 * MiB,
            cpu_seconds=30.0,
            reason="BuildError: see build.log",
        ),
        dict(task_id=refused, method="createrepo", outcome="refused", reason="no topdir"),
        dict(task_id=BASE_TASK + 15, method="createrepo", outcome="ok"),
    ):
        assert records.record_finished(str(state), arch="x86_64", started=0, finished=60, **record)  # type: ignore[arg-type]
    assert records.record_reaped(str(state), container_id="a" * 64, task_id=BASE_TASK + 16)
    assert records.record_reaped(str(state), container_id="b" * 64, task_id=BASE_TASK + 16)
    task_dir = workdir / koji.pathinfo.taskrelpath(task)
    task_dir.mkdir(parents=True)
    reaper.write_lease(str(task_dir), task, WORKER_ID)  # this process stands for the task's

    with ExitStack() as stack:
        build = manager.create(
            ContainerSpec(image, ["sleep", "300"], labels={LABEL_ROLE: "build"}, task_id=task)
        )
        stack.callback(remove_raw, api, build.container_id)
        manager.start(build)
        kept = import_image(
            api,
            f"localhost/koji-adjutant-kept:{done_failed}",
            {
                "io.koji.adjutant.kept.task_id": str(done_failed),
                "io.koji.adjutant.kept.worker_id": WORKER_ID,
                "io.koji.adjutant.kept.until": str(int(time.time()) + 3600),
            },
        )
        stack.callback(api.request, "DELETE", f"/images/{kept}", query=[("force", "true")])

        served = start_serve("--state-dir", str(state), "--workdir", str(workdir), config=conf)
        serving.append(served)
        assert served.url.startswith("http://127.0.0.1:")

        before = len(api.images({LABEL_CACHE: "1"}))
        status, body, content_type = served.get("/metrics")
        after = len(api.images({LABEL_CACHE: "1"}))
        assert status == 200 and content_type.startswith("text/plain; version=")
        values = metric_values(body.decode())

        def value(name: str, **labels: str) -> float:
            return values[(name, frozenset(labels.items()))]

        assert value("koji_adjutant_up") == 1
        assert value("koji_adjutant_tasks_running", method="buildArch") == 1
        assert value("koji_adjutant_tasks_running", method="createrepo") == 0
        assert value("koji_adjutant_containers", state="running") == 1
        assert value("koji_adjutant_cache_entries") in (before, after)
        assert value("koji_adjutant_kept_roots") >= 1
        assert value("koji_adjutant_tasks_finished_total", method="buildArch", outcome="ok") == 1
        assert (
            value("koji_adjutant_tasks_finished_total", method="buildArch", outcome="failed") == 1
        )
        assert value("koji_adjutant_tasks_finished_total", method="createrepo", outcome="ok") == 1
        assert value("koji_adjutant_task_refusals_total", method="createrepo") == 1
        assert value("koji_adjutant_reaped_containers_total") == 2
        assert value("koji_adjutant_task_peak_memory_bytes_count", method="buildArch") == 2
        assert value("koji_adjutant_task_peak_memory_bytes_sum", method="buildArch") == 1324 * MiB
        buckets = {
            float(dict(labels)["le"]): v
            for (name, labels), v in values.items()
            if name == "koji_adjutant_task_peak_memory_bytes_bucket"
            and ("method", "buildArch") in labels
        }
        assert buckets[256 * MiB] == 0 and buckets[512 * MiB] == 1 and buckets[1024 * MiB] == 2
        assert value("koji_adjutant_task_cpu_seconds_sum", method="buildArch") == 150
        assert value("koji_adjutant_task_written_bytes_total", method="buildArch") == 10 * MiB
        assert not any(name.endswith("_created") for name, _ in values)

        # a record appended later is counted once; the earlier ones are not counted again
        assert records.record_finished(
            str(state),
            task_id=BASE_TASK + 17,
            method="buildArch",
            arch="noarch",
            outcome="failed",
            started=0,
            finished=1,
        )
        values = metric_values(served.get("/metrics")[1].decode())
        assert (
            value("koji_adjutant_tasks_finished_total", method="buildArch", outcome="failed") == 2
        )
        assert value("koji_adjutant_tasks_finished_total", method="buildArch", outcome="ok") == 1

        whole = served.json("/status")
        assert whole["worker_id"] == WORKER_ID
        (running,) = whole["tasks"]
        assert running["task_id"] == task and running["method"] == "buildArch"
        assert running["containers"][0]["memory_bytes"] > 0
        assert whole["records"]["finished"] == {"ok": 2, "failed": 2, "refused": 1}
        assert whole["records"]["reaped"] == 2

        (container,) = served.json("/containers")
        assert container["id"] == build.container_id and container["task_id"] == task
        assert container["role"] == "build" and container["state"] == "running"

        one = served.json(f"/tasks/{task}")
        assert [c["id"] for c in one["containers"]] == [build.container_id]
        assert one["running"] is True and one["finished"] == []
        assert one["lease"] == {"pid": os.getpid(), "worker_id": WORKER_ID, "alive": True}
        failed = served.json(f"/tasks/{done_failed}")
        assert failed["containers"] == [] and failed["lease"] is None
        assert [r["reason"] for r in failed["finished"]] == ["BuildError: see build.log"]
        assert [k["id"] for k in failed["kept_roots"]] == [kept]
        reaped = served.json(f"/tasks/{BASE_TASK + 16}")
        assert [r["container_id"][:1] for r in reaped["reaped"]] == ["a", "b"]
        assert served.json("/tasks/999999999", expect=404)["error"].startswith("nothing known")
        assert served.json("/tasks/abc", expect=400) == {"error": "not a task id: 'abc'"}
        assert served.json("/nope", expect=404)["error"] == "no such endpoint: /nope"
        assert served.get("/status", method="POST")[0] == 501


def test_serve_without_podman_reports_down(tmp_path: Path, serving: list[Served]) -> None:
    config = write_conf(tmp_path / "a.conf", podman_socket=tmp_path / "gone.sock")
    served = start_serve("--state-dir", str(tmp_path / "state"), config=config)
    serving.append(served)
    values = metric_values(served.get("/metrics")[1].decode())
    assert values[("koji_adjutant_up", frozenset())] == 0
    assert not any(name == "koji_adjutant_tasks_running" for name, _ in values)
    answer = served.json("/status", expect=503)
    assert answer["error"].startswith("podman does not answer: cannot reach podman at")


def test_serve_listens_on_loopback_unless_told_otherwise(
    conf: Path, tmp_path: Path, serving: list[Served]
) -> None:
    done = cli("serve", "--listen", "0.0.0.0", "--port", "0", config=conf, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(
        "error: refusing to listen on 0.0.0.0: serve has no authentication"
    )
    served = start_serve(
        "--listen", "0.0.0.0", "--allow-remote", "--state-dir", str(tmp_path), config=conf
    )
    serving.append(served)
    assert served.json("/")["endpoints"] == ["/status", "/containers", "/tasks/<id>", "/metrics"]


def test_serve_says_what_to_install_without_prometheus_client(conf: Path) -> None:
    """The base package runs without the ``serve`` extra; serve names the extra."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from koji_adjutant.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    environ = {**os.environ, "KOJI_ADJUTANT_CONFIG": str(conf)}
    for args, status in ((["status", "--help"], 0), (["serve"], 2)):
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=environ,
            check=False,
        )
        assert done.returncode == status, done.stderr
        assert "Traceback" not in done.stderr
    assert "error: serve needs prometheus_client: pip install 'koji-adjutant[serve]'" in done.stderr
