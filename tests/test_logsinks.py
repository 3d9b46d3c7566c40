"""Log sinks (AC5/ST5): complete, bounded, live, readable, and failing loudly."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import LABEL_WORKER, WORKER_ID
from koji_adjutant import (
    CallbackSink,
    ContainerSpec,
    FileSink,
    InvalidSpec,
    LoggingSink,
    LogSinkError,
    PodmanManager,
    TeeSink,
)

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("no_leaks")]

MARKER = re.compile(
    rb"^\[koji-adjutant: (\d+) earlier bytes dropped to keep this log within (\d+) bytes\]\n"
)


def sh(image: str, script: str) -> ContainerSpec:
    return ContainerSpec(image, ["sh", "-c", script])


def test_100_mb_through_a_10_mb_cap_keeps_the_newest_bytes_in_bounded_memory(
    podman_socket, image, tmp_path
):
    # In a child process, so its peak RSS measures this run alone.
    log = tmp_path / "container.log"
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from koji_adjutant import ContainerSpec, FileSink, PodmanManager
        def rss_kb(field):
            for line in open("/proc/self/status"):
                if line.startswith(field):
                    return int(line.split()[1])
        mgr = PodmanManager({podman_socket!r}, worker_id={WORKER_ID!r})
        sink = FileSink({str(log)!r}, cap_bytes=10 * 1024 * 1024)
        before = rss_kb("VmRSS")
        # 12,500,000 lines of 8 digits: 112,500,000 bytes, numbered so order can be checked.
        program = "BEGIN {{ for (i = 0; i < 12500000; i++) printf \\"%08d\\\\n\\", i }}"
        spec = ContainerSpec({image!r}, ["awk", program])
        code = mgr.run(spec, sink).exit_code
        sink.finish()
        growth = rss_kb("VmHWM") - before
        print(json.dumps({{"code": code, "growth_kb": growth, "state": sink.state()}}, default=str))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["code"] == 0
    data = log.read_bytes()
    assert len(data) <= 10 * 1024 * 1024
    marker = MARKER.match(data)
    assert marker, data[:200]
    dropped, cap = int(marker.group(1)), int(marker.group(2))
    body = data[marker.end() :]
    assert (cap, dropped + len(body)) == (10 * 1024 * 1024, 112_500_000)
    assert report["state"]["bytes_dropped"] == dropped and report["state"]["finished"] is True
    # The newest bytes, intact: consecutive numbers up to the last one.
    lines = body.split(b"\n")
    assert lines[-1] == b""
    numbers = [int(x) for x in lines[:-1]]
    assert numbers[-1] == 12_499_999
    assert numbers == list(range(numbers[0], 12_500_000))
    assert report["growth_kb"] < 32 * 1024, f"peak RSS grew by {report['growth_kb']} KiB"


def test_stream_markers_keep_each_streams_lines_in_order(manager, image, tmp_path):
    sink = FileSink(tmp_path / "container.log", timestamps=True, stream_markers=True)
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf 'partial'"
    manager.run(sh(image, script), sink)
    sink.finish()
    text = (tmp_path / "container.log").read_text()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    per_stream: dict[str, list[str]] = {"stdout": [], "stderr": []}
    for line in text.splitlines():
        m = re.fullmatch(rf"{stamp} (stdout|stderr) [|+] (.*)", line)
        assert m, line
        per_stream[m.group(1)].append(m.group(2))
    assert per_stream["stdout"] == ["out1", "out2", "out3", "out4", "out5", "partial"]
    assert per_stream["stderr"] == ["err1", "err2", "err3", "err4", "err5"]
    assert oct((tmp_path / "container.log").stat().st_mode & 0o777) == "0o644"


def test_non_utf8_bytes_reach_the_file_unchanged(manager, image, tmp_path):
    sink = FileSink(tmp_path / "raw.log")
    manager.run(sh(image, r"printf 'a\377\376\000b\r\nlast'"), sink)
    assert (tmp_path / "raw.log").read_bytes() == b"a\xff\xfe\x00b\r\nlast"


def test_the_logging_sink_logs_stdout_at_info_and_stderr_at_warning(manager, image, caplog):
    caplog.set_level(logging.DEBUG, logger="koji_adjutant.build")
    manager.run(
        sh(image, r"echo hello; echo oops >&2; printf 'bad \377 byte'"),
        LoggingSink("koji_adjutant.build"),
    )
    records = [
        (r.name, r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "koji_adjutant.build"
    ]
    assert ("koji_adjutant.build", logging.INFO, "hello") in records
    assert ("koji_adjutant.build", logging.WARNING, "oops") in records
    assert ("koji_adjutant.build", logging.INFO, "bad \ufffd byte") in records


def test_callback_and_tee_sinks(manager, image, tmp_path):
    got: list[tuple[str, bytes]] = []
    tee = TeeSink(FileSink(tmp_path / "tee.log"), CallbackSink(lambda s, d: got.append((s, d))))
    manager.run(sh(image, "echo one; echo two >&2"), tee)
    assert (tmp_path / "tee.log").read_bytes() in (b"one\ntwo\n", b"two\none\n")
    assert b"".join(d for s, d in got if s == "stdout") == b"one\n"
    assert b"".join(d for s, d in got if s == "stderr") == b"two\n"
    with pytest.raises(TypeError):
        CallbackSink(42)
    with pytest.raises(TypeError):
        TeeSink(object())


def test_a_growing_log_read_every_second_reassembles_exactly(manager, image, tmp_path):
    """The way kojid's incremental_upload reads mock's logs: from the last offset, each second."""
    path = tmp_path / "build.log"
    sink = FileSink(path)
    uploaded = bytearray()
    reads = 0
    stop = threading.Event()

    def uploader() -> None:
        nonlocal reads
        offset = 0
        while True:
            finished = sink.state()["finished"]
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            uploaded.extend(chunk)
            offset += len(chunk)
            reads += 1
            if finished or stop.is_set():
                return
            time.sleep(1)

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        script = (
            "i=0; while [ $i -lt 40 ]; do seq $((i*1000)) $((i*1000+999));"
            " printf 'no newline '; i=$((i+1)); sleep 0.1; done"
        )
        manager.run(sh(image, script), sink)
    finally:
        sink.finish()
        thread.join(timeout=10)
        stop.set()
    assert reads >= 3, "the reader did not see the log grow"
    assert bytes(uploaded) == path.read_bytes()
    assert len(uploaded) > 40 * 1000 * 4


def test_a_failing_file_sink_fails_the_run_and_removes_the_container(manager, image):
    sink = FileSink("/dev/full")
    with pytest.raises(LogSinkError, match="/dev/full"):
        manager.run(sh(image, "echo data; sleep 30"), sink)
    assert manager.list_containers({LABEL_WORKER: WORKER_ID}) == []


def test_a_raising_callback_fails_the_run(manager, image):
    def refuse(stream: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        manager.run(sh(image, "echo data; sleep 30"), CallbackSink(refuse))


def test_a_log_exists_at_once_and_caps_are_validated(tmp_path):
    sink = FileSink(tmp_path / "logs" / "42" / "container.log")
    assert (tmp_path / "logs" / "42" / "container.log").exists()
    assert sink.state()["bytes_written"] == 0 and sink.state()["finished"] is False
    with pytest.raises(InvalidSpec):
        FileSink(tmp_path / "small.log", cap_bytes=10)


def test_a_sink_may_be_shared_by_several_runs(manager: PodmanManager, image, tmp_path):
    sink = FileSink(tmp_path / "root.log")
    manager.run(sh(image, "echo first"), sink)
    manager.run(sh(image, "echo second"), sink)
    sink.finish()
    assert (tmp_path / "root.log").read_text() == "first\nsecond\n"
    assert os.stat(tmp_path / "root.log").st_mode & 0o044 == 0o044
