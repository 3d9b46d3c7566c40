"""The container layer against a real podman service (ST1, ST2, ST6 of the original plan)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import LABEL_TASK, LABEL_WORKER, WORKER_ID, RecordingSink, podman_cli
from koji_adjutant import (
    AdjutantError,
    ContainerError,
    ContainerHandle,
    ContainerRunResult,
    ContainerSpec,
    ImageError,
    InvalidSpec,
    PodmanManager,
    ResourceLimits,
    VolumeMount,
)

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("no_leaks")]


def sh(image: str, script: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(image, ["sh", "-c", script], **kw)  # type: ignore[arg-type]


def ours(manager: PodmanManager) -> list[dict[str, object]]:
    return manager.list_containers({LABEL_WORKER: WORKER_ID})


# ST1.1 image availability and pull policy


def test_present_image_is_found_under_every_policy_but_always(manager, image):
    image_id = manager.ensure_image_available(image, pull_policy="never")
    assert len(image_id) == 64
    assert manager.ensure_image_available(image) == image_id


def test_missing_image_with_pull_policy_never_raises_image_error(manager):
    with pytest.raises(ImageError, match="never"):
        manager.ensure_image_available("localhost/koji-adjutant-absent:none", pull_policy="never")


def test_an_unpullable_image_raises_image_error_with_the_registry_message(manager):
    # No registry answers on this port: the pull fails in-band and must not look like success.
    with pytest.raises(ImageError) as info:
        manager.ensure_image_available("127.0.0.1:9/adj/absent:1", pull_policy="always")
    assert "127.0.0.1:9" in str(info.value)
    assert isinstance(info.value, ContainerError)


def test_unknown_pull_policy_is_invalid(manager, image):
    with pytest.raises(InvalidSpec, match="pull_policy"):
        manager.ensure_image_available(image, pull_policy="sometimes")


# ST1.2-ST1.6 lifecycle, exit codes, run helper


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 1", 1), ("exit 7", 7)])
def test_run_returns_the_real_exit_code(manager, image, script, code):
    result = manager.run(sh(image, script))
    assert isinstance(result, ContainerRunResult)
    assert result.exit_code == code
    assert result.started_at <= result.finished_at
    assert result.started_at.tzinfo is not None
    assert ours(manager) == []


def test_a_killed_container_reports_the_signal(manager, image):
    handle = manager.create(ContainerSpec(image, ["sleep", "600"]))
    manager.start(handle)
    assert podman_cli("kill", "--signal", "KILL", handle.container_id).returncode == 0
    assert manager.wait(handle) == 137
    manager.remove(handle)


def test_create_start_wait_remove_step_by_step(manager, image, sink):
    handle = manager.create(sh(image, "sleep 1; echo done", task_id=4242))
    assert isinstance(handle, ContainerHandle)
    [listed] = ours(manager)
    assert listed["id"] == handle.container_id
    assert listed["state"] in ("created", "configured")
    assert listed["labels"][LABEL_TASK] == "4242"
    assert listed["labels"][LABEL_WORKER] == WORKER_ID
    manager.start(handle, sink)
    running = podman_cli("ps", "--format", "{{.ID}}", "--filter", f"id={handle.container_id}")
    assert handle.container_id.startswith(running.stdout.strip())
    assert manager.wait(handle) == 0
    assert bytes(sink.stdout) == b"done\n"
    manager.remove(handle)
    assert ours(manager) == []
    manager.remove(handle)  # already gone: not an error


def test_output_streams_arrive_complete_and_apart(manager, image, sink):
    # 5 MB on each stream, interleaved in 64 KiB blocks.
    script = (
        "i=0; while [ $i -lt 80 ]; do head -c 65536 /dev/zero | tr '\\0' o; "
        "head -c 65536 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done"
    )
    result = manager.run(sh(image, script), sink)
    assert result.exit_code == 0
    assert len(sink.stdout) == 80 * 65536 and set(sink.stdout) == {ord("o")}
    assert len(sink.stderr) == 80 * 65536 and set(sink.stderr) == {ord("e")}
    assert {name for name, _ in sink.chunks} == {"stdout", "stderr"}


def test_output_is_streamed_while_the_container_runs(manager, image):
    seen_at: list[float] = []

    class Clock(RecordingSink):
        def write_stdout(self, data: bytes) -> None:
            seen_at.append(time.monotonic())
            super().write_stdout(data)

    start = time.monotonic()
    manager.run(sh(image, "echo first; sleep 2; echo second"), Clock())
    assert len(seen_at) == 2
    assert seen_at[0] - start < seen_at[1] - start - 1.5, "first line was not delivered live"


def test_a_raising_sink_aborts_the_run_and_its_exception_arrives_unchanged(manager, image):
    class Boom(Exception):
        pass

    class Raising(RecordingSink):
        def write_stdout(self, data: bytes) -> None:
            raise Boom("sink refused")

    with pytest.raises(Boom, match="sink refused"):
        manager.run(sh(image, "echo hi; sleep 30"), Raising())
    assert ours(manager) == []


def test_a_sink_without_the_protocol_is_a_type_error(manager, image):
    with pytest.raises(TypeError, match="write_stderr"):
        manager.run(sh(image, "true"), object())
    assert ours(manager) == []


def test_a_missing_binary_raises_container_error_with_podmans_message(manager, image):
    with pytest.raises(ContainerError) as info:
        manager.run(ContainerSpec(image, ["/no/such/binary"]))
    assert "/no/such/binary" in str(info.value)
    assert "no such file or directory" in str(info.value)
    assert ours(manager) == []


def test_remove_after_exit_false_keeps_the_container_until_removed(manager, image):
    result = manager.run(sh(image, "exit 3", remove_after_exit=False))
    [kept] = ours(manager)
    assert kept["id"] == result.container_id and kept["state"] == "exited"
    manager.remove(ContainerHandle(manager, result.container_id))
    assert ours(manager) == []


def test_force_remove_kills_a_running_container(manager, image):
    handle = manager.create(sh(image, "sleep 600"))
    manager.start(handle)
    manager.remove(handle, force=True)
    assert ours(manager) == []


def test_stop_kills_after_the_grace_period(manager, image):
    # sleep as PID 1 ignores SIGTERM, so only the kill after the grace period ends it.
    handle = manager.create(ContainerSpec(image, ["sleep", "600"]))
    manager.start(handle)
    manager.stop(handle, grace_seconds=1)
    assert manager.wait(handle) == 137
    manager.remove(handle)


def test_a_spec_timeout_ends_the_container(manager, image):
    result = manager.run(ContainerSpec(image, ["sleep", "60"], timeout=2))
    assert result.exit_code != 0
    assert (result.finished_at - result.started_at).total_seconds() < 30


# exec and copy


def test_exec_runs_once_and_returns_the_real_exit_code(manager, image, sink):
    with manager.create(ContainerSpec(image, ["sleep", "600"], cap_add=["DAC_OVERRIDE"])) as handle:
        manager.start(handle)
        code = manager.exec(
            handle, ["sh", "-c", "echo x >> /tmp/count; echo out; echo err >&2; exit 5"], sink=sink
        )
        assert code == 5
        assert (bytes(sink.stdout), bytes(sink.stderr)) == (b"out\n", b"err\n")
        counted = RecordingSink()
        assert manager.exec(handle, ["wc", "-l", "/tmp/count"], sink=counted) == 0
        assert bytes(counted.stdout).split()[0] == b"1", "the command ran more than once"
        env = RecordingSink()
        assert (
            manager.exec(
                handle,
                ["sh", "-c", "echo $ADJ; pwd; id -u"],
                sink=env,
                environment={"ADJ": "value"},
                workdir="/tmp",
                user="1000",
            )
            == 0
        )
        assert bytes(env.stdout) == b"value\n/tmp\n1000\n"
    assert ours(manager) == []


def test_options_are_keyword_only(manager, image, sink):
    with manager.create(ContainerSpec(image, ["sleep", "600"])) as handle:
        with pytest.raises(TypeError):
            manager.exec(handle, ["true"], sink)  # type: ignore[misc]
        with pytest.raises(TypeError):
            manager.stop(handle, 1)  # type: ignore[misc]
        with pytest.raises(TypeError):
            manager.remove(handle, True)  # type: ignore[misc]
        with pytest.raises(TypeError):
            manager.ensure_image_available(image, "never")  # type: ignore[misc]
        assert [c["id"] for c in ours(manager)] == [handle.container_id]
    assert ours(manager) == []


def test_a_handle_removes_its_running_container_when_its_block_raises(manager, image):
    with pytest.raises(RuntimeError, match="from the block"):
        with manager.create(sh(image, "sleep 600")) as handle:
            manager.start(handle)
            assert [c["state"] for c in ours(manager)] == ["running"]
            raise RuntimeError("from the block")
    assert ours(manager) == []
    # Removing again (the container is gone) is not an error.
    manager.remove(handle)


def test_copy_to_places_a_file_in_the_container(manager, image, tmp_path):
    source = tmp_path / "macros.koji"
    source.write_text("%dist .adj1\n")
    with manager.create(ContainerSpec(image, ["sleep", "600"])) as handle:
        manager.start(handle)
        manager.copy_to(handle, source, "/etc/rpm/macros.koji")
        out = RecordingSink()
        assert manager.exec(handle, ["rpm", "--eval", "%dist"], sink=out) == 0
        assert bytes(out.stdout) == b".adj1\n"
        with pytest.raises(InvalidSpec):
            manager.copy_to(handle, source, "relative/path")
        with pytest.raises(InvalidSpec, match="not a regular file"):
            manager.copy_to(handle, tmp_path, "/etc/x")
    assert ours(manager) == []


# ST2 mounts


def test_rw_mount_is_writable_and_ro_mount_is_not(manager, image, tmp_path, sink):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "input").write_text("koji repo\n")
    spec = sh(
        image,
        "cat /ro/input; echo built > /rw/out; touch /ro/forbidden 2>&1; echo status=$?",
        mounts=[VolumeMount(rw, "/rw", read_only=False), VolumeMount(ro, "/ro", read_only=True)],
    )
    assert manager.run(spec, sink).exit_code == 0
    out = bytes(sink.stdout).decode()
    assert "koji repo" in out
    assert "Read-only file system" in out and "status=1" in out
    assert (rw / "out").read_text() == "built\n"
    assert sorted(p.name for p in ro.iterdir()) == ["input"]


def test_only_mounted_host_paths_are_visible(manager, image, tmp_path, sink):
    (tmp_path / "host-marker").write_text("x")
    shared = tmp_path / "shared"
    shared.mkdir()
    script = f"ls {tmp_path} 2>&1; ls /work; test -e /work/../host-marker && echo LEAK; true"
    manager.run(sh(image, script, mounts=[VolumeMount(shared, "/work")]), sink)
    assert b"LEAK" not in sink.stdout
    assert b"host-marker" not in sink.stdout
    assert b"No such file or directory" in sink.stdout


def test_selinux_label_is_accepted_and_validated(manager, image, tmp_path):
    spec = sh(image, "ls /w", mounts=[VolumeMount(tmp_path, "/w", selinux_label="Z")])
    assert manager.run(spec).exit_code == 0
    with pytest.raises(InvalidSpec, match="selinux_label"):
        VolumeMount(tmp_path, "/w", selinux_label="q")


# least privilege


def test_network_none_leaves_only_loopback(manager, image, sink):
    manager.run(sh(image, "ls /sys/class/net"), sink)
    assert bytes(sink.stdout).split() == [b"lo"]


def test_bridge_network_has_an_interface(manager, image, sink):
    manager.run(sh(image, "ls /sys/class/net", network="bridge"), sink)
    assert len(bytes(sink.stdout).split()) >= 2


def test_no_capabilities_and_no_new_privileges_inside(manager, image, sink):
    manager.run(sh(image, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status"), sink)
    fields = dict(line.split(":\t") for line in bytes(sink.stdout).decode().splitlines())
    assert fields == {"CapEff": "0" * 16, "CapPrm": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}


def test_memory_and_pids_limits_are_visible_inside(manager, image, sink):
    limits = ResourceLimits(memory_bytes=256 * 1024 * 1024, cpus=1.5, pids=321)
    # cgroup v1 (this project's CI hosts) or v2: print the first readable file of each list.
    script = (
        "first() { for f; do [ -r $f ] && { cut -d' ' -f1 $f; return; }; done; echo missing; };"
        "first /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max;"
        "first /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max;"
        "first /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"
        " /sys/fs/cgroup/cpu.max;"
        "awk '/^Max open files/ {print $5} /^Max processes/ {print $4}' /proc/self/limits"
    )
    manager.run(sh(image, script, limits=limits), sink)
    memory, pids, quota, nproc, nofile = bytes(sink.stdout).decode().split()
    assert (int(memory), int(pids), int(quota)) == (256 * 1024 * 1024, 321, 150000)
    assert 0 < int(nofile) <= 16384 and 0 < int(nproc) <= 16384


def test_pids_are_limited_by_default(manager, image, sink):
    manager.run(sh(image, "cat /sys/fs/cgroup/pids/pids.max || cat /sys/fs/cgroup/pids.max"), sink)
    assert bytes(sink.stdout).strip() == b"4096"


def test_the_requested_user_runs_the_command(manager, image, sink):
    manager.run(sh(image, "id -u; id -g", user="1000:135"), sink)
    assert bytes(sink.stdout) == b"1000\n135\n"


# invalid specs: typed errors before anything exists


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mounts": [VolumeMount("relative", "/x")]}, "absolute host path"),
        ({"mounts": [VolumeMount("/nonexistent-adj", "/x")]}, "does not exist"),
        ({"workdir": "relative"}, "workdir"),
        ({"user": "root;true"}, "user"),
        ({"limits": ResourceLimits(memory_bytes=1000)}, "memory"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_invalid_specs_raise_invalid_spec_before_anything_is_created(
    manager, image, kwargs, message
):
    with pytest.raises(InvalidSpec, match=message) as info:
        manager.create(ContainerSpec(image, ["true"], **kwargs))
    assert isinstance(info.value, ValueError) and isinstance(info.value, AdjutantError)
    assert ours(manager) == []


def test_invalid_network_and_empty_command_are_rejected(image):
    with pytest.raises(InvalidSpec, match="network"):
        ContainerSpec(image, ["true"], network="host")


# labels, list and reap


def test_reap_removes_exactly_the_matching_containers(manager, image):
    a = manager.create(
        ContainerSpec(image, ["sleep", "600"], task_id=1, labels={"adj.test": "reap"})
    )
    b = manager.create(
        ContainerSpec(image, ["sleep", "600"], task_id=2, labels={"adj.test": "reap"})
    )
    c = manager.create(
        ContainerSpec(image, ["sleep", "600"], task_id=3, labels={"adj.test": "keep"})
    )
    manager.start(a)
    assert manager.reap({LABEL_WORKER: WORKER_ID, "adj.test": "reap"}) == 2
    assert [x["id"] for x in ours(manager)] == [c.container_id]
    with pytest.raises(InvalidSpec, match="at least one label"):
        manager.reap({})
    manager.remove(c)
    del b


# signals, the GIL and fork


def _child_script(body: str) -> str:
    return textwrap.dedent(
        """
        import os, sys, time
        from koji_adjutant import ContainerSpec, PodmanManager
        mgr = PodmanManager(os.environ["KOJI_ADJUTANT_PODMAN_SOCKET"], worker_id=sys.argv[1])
        image = sys.argv[2]
        """
    ) + textwrap.dedent(body)


def test_sigint_during_run_raises_keyboard_interrupt_and_removes_the_container(manager, image):
    worker = f"{WORKER_ID}-sigint"
    script = _child_script(
        """
        print("ready", flush=True)
        try:
            mgr.run(ContainerSpec(image, ["sleep", "60"]))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, worker, image],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not manager.list_containers({LABEL_WORKER: worker}) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let it be running, not just created
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        child.kill()
    assert child.returncode == 3, err
    assert "interrupted" in out
    assert elapsed < 1.0 + 1.0, f"KeyboardInterrupt took {elapsed:.2f}s"  # ~200 ms tick + removal
    assert manager.list_containers({LABEL_WORKER: worker}) == []


def test_blocking_calls_release_the_gil(manager, image):
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.01)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        manager.run(ContainerSpec(image, ["sleep", "2"]))
    finally:
        done.set()
        counter.join()
    assert ticks > 50, f"the Python thread ran only {ticks} times during a 2 s run"


def test_a_forked_child_can_use_the_parents_manager(manager, image):
    script = _child_script(
        """
        assert mgr.run(ContainerSpec(image, ["true"])).exit_code == 0  # runtime built in parent
        pid = os.fork()
        if pid == 0:
            try:
                code = mgr.run(ContainerSpec(image, ["sh", "-c", "exit 4"])).exit_code
                os._exit(code)
            except BaseException:
                os._exit(99)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"{WORKER_ID}-fork", image],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip() == "4", done.stderr


def test_default_socket_comes_from_the_environment(podman_socket, monkeypatch):
    monkeypatch.setenv("KOJI_ADJUTANT_PODMAN_SOCKET", podman_socket)
    assert PodmanManager().socket == os.path.abspath(podman_socket.removeprefix("unix://"))
    assert PodmanManager(f"unix://{podman_socket}").ping() == "OK"


def test_a_dead_socket_is_a_container_error(tmp_path):
    with pytest.raises(ContainerError):
        PodmanManager(str(tmp_path / "none.sock")).ping()
    with pytest.raises(InvalidSpec):
        PodmanManager("tcp://host:1")


def test_reprs_read_like_calls(manager, image):
    assert repr(ResourceLimits(pids=5)) == "ResourceLimits(memory_bytes=None, cpus=None, pids=5)"
    assert repr(VolumeMount("/a", "/b")).startswith('VolumeMount(source="/a", target="/b"')
    assert repr(ContainerHandle(manager, "abc")) == 'ContainerHandle(container_id="abc")'
    assert ContainerHandle(manager, "abc") == ContainerHandle(manager, "abc")
    assert len({ContainerHandle(manager, "abc"), ContainerHandle(manager, "abc")}) == 1
    assert Path(str(VolumeMount("/a", "/b").source)) == Path("/a")


def test_a_sink_may_call_back_into_the_manager(manager, image):
    """Python code the core calls (a sink, a hook) may use the manager again: no panic."""
    seen: list[int] = []

    class Asking(RecordingSink):
        def write_stdout(self, data: bytes) -> None:
            seen.append(len(manager.list_containers({LABEL_WORKER: WORKER_ID})))

    assert manager.run(sh(image, "echo hi"), Asking()).exit_code == 0
    assert seen == [1]
