"""koji_adjutant.records: the append-only store task processes write and ``serve`` reads."""

from __future__ import annotations

import datetime
import json
import logging
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tmpfs
from koji_adjutant import records


def finished(state: Path | str, task_id: int, **overrides: object) -> bool:
    values: dict[str, object] = {
        "task_id": task_id,
        "method": "buildArch",
        "arch": "x86_64",
        "outcome": "ok",
        "started": 1_700_000_000.0,
        "finished": 1_700_000_090.5,
        "peak_memory_bytes": 512 * 1024**2,
        "cpu_seconds": 81.25,
        "bytes_written": 4096,
        "reason": None,
    }
    values.update(overrides)
    return records.record_finished(str(state), **values)  # type: ignore[arg-type]


def test_records_round_trip_with_their_fields(tmp_path: Path) -> None:
    state = tmp_path / "state"  # made on first write
    started = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert finished(state, 7, started=started, finished=started.timestamp() + 60)
    assert finished(state, 8, outcome="refused", reason="no image for aarch64")
    assert records.record_reaped(str(state), container_id="c0ffee", task_id=7)
    assert records.record_reaped(str(state), container_id="deadbeef", task_id=None)

    everything = records.read_records(str(state))
    assert [r["kind"] for r in everything] == ["finished", "finished", "reaped", "reaped"]
    first = everything[0]
    assert first["task_id"] == 7 and first["outcome"] == "ok" and first["arch"] == "x86_64"
    assert first["started"] == started.timestamp()
    assert first["finished"] == started.timestamp() + 60
    assert first["peak_memory_bytes"] == 512 * 1024**2 and first["cpu_seconds"] == 81.25
    assert len({r["id"] for r in everything}) == 4
    assert everything[1]["reason"] == "no image for aarch64"
    assert [r["container_id"] for r in records.read_records(str(state), kind="reaped")] == [
        "c0ffee",
        "deadbeef",
    ]
    # one JSON object per line, each line starting with the kind
    lines = (state / records.RECORDS_NAME).read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith('{"kind":') for line in lines)
    assert all(json.loads(line)["kind"] for line in lines)


def test_state_dir_comes_from_the_option_then_the_environment() -> None:
    assert records.state_dir("/x", environ={records.STATE_DIR_ENV: "/y"}) == "/x"
    assert records.state_dir(None, environ={records.STATE_DIR_ENV: "/y"}) == "/y"
    assert records.state_dir(None, environ={}) == records.DEFAULT_STATE_DIR


def test_a_bad_outcome_is_logged_and_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not finished(tmp_path, 1, outcome="great")
    assert not finished(tmp_path, "one")  # type: ignore[arg-type]
    assert records.read_records(str(tmp_path)) == []
    assert "outcome must be one of ok, failed, refused, not 'great'" in caplog.text


def test_a_long_reason_is_cut(tmp_path: Path) -> None:
    assert finished(tmp_path, 1, outcome="failed", reason="x" * 10_000)
    (record,) = records.read_records(str(tmp_path))
    assert record["reason"] == "x" * records.MAX_REASON


def _writer(state: str, worker: int, count: int, max_bytes: int) -> None:
    for n in range(count):
        ok = records.record_finished(
            state,
            task_id=worker * 100_000 + n,
            method="createrepo",
            arch=None,
            outcome="ok",
            started=0,
            finished=1,
            reason="r" * (n % 300),  # lines of different lengths
            max_bytes=max_bytes,
        )
        assert ok


def _run_writers(state: Path, workers: int, count: int, max_bytes: int) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_writer, args=(str(state), w, count, max_bytes)) for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0


def test_concurrent_appends_from_many_processes_never_mix_lines(tmp_path: Path) -> None:
    _run_writers(tmp_path, workers=8, count=250, max_bytes=records.MAX_BYTES)
    data = (tmp_path / records.RECORDS_NAME).read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b""
    parsed = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON
    assert len(parsed) == 8 * 250
    assert {r["task_id"] for r in parsed} == {w * 100_000 + n for w in range(8) for n in range(250)}
    # each process's own records stay in its order
    for worker in range(8):
        mine = [r["task_id"] for r in parsed if r["task_id"] // 100_000 == worker]
        assert mine == sorted(mine)


def test_rotation_bounds_the_store_and_keeps_the_newest(tmp_path: Path) -> None:
    max_bytes = 20_000
    _run_writers(tmp_path, workers=6, count=300, max_bytes=max_bytes)
    current = tmp_path / records.RECORDS_NAME
    rotated = tmp_path / records.ROTATED_NAME
    assert rotated.exists(), "the store never rotated"
    # each file is at most max_bytes plus the lines appended while a rotation waited
    for path in (current, rotated):
        assert path.stat().st_size < max_bytes + 6 * 1024, path
    kept = records.read_records(str(tmp_path))
    assert 0 < len(kept) < 6 * 300  # the oldest are gone
    for path in (current, rotated):  # no torn or merged line anywhere
        for line in path.read_bytes().splitlines():
            assert json.loads(line)["kind"] == "finished"
    # at least a file's worth of the newest records is kept (lines are at most ~600 bytes)
    assert len(kept) >= max_bytes // 600
    assert finished(tmp_path, 424242, max_bytes=max_bytes)
    assert records.read_records(str(tmp_path))[-1]["task_id"] == 424242
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        records.RECORDS_NAME,
        records.ROTATED_NAME,
        records.LOCK_NAME,
    ]


def test_symlinks_are_never_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / records.RECORDS_NAME).symlink_to(target)
    assert not finished(state, 1)
    assert target.read_text() == "precious\n"
    assert "a symlink, which is never followed" in caplog.text
    assert records.read_records(str(state)) == []

    caplog.clear()
    real = tmp_path / "real"
    real.mkdir()
    linked = tmp_path / "linked-state"
    linked.symlink_to(real)
    assert not finished(linked, 2)
    assert list(real.iterdir()) == []
    assert "never followed" in caplog.text
    assert records.read_records(str(linked)) == []


def test_a_state_dir_that_is_a_file_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.write_text("")
    assert not records.record_reaped(str(state), container_id="c", task_id=1)
    assert "cannot record to" in caplog.text
    assert records.read_records(str(state)) == []


def test_unparsable_lines_are_skipped_and_a_record_after_a_cut_line_is_found(
    tmp_path: Path,
) -> None:
    assert finished(tmp_path, 1)
    path = tmp_path / records.RECORDS_NAME
    with open(path, "ab") as handle:
        handle.write(b'{"kind":"finished","task_id":2,"meth')  # a write cut short
    assert finished(tmp_path, 3)
    with open(path, "ab") as handle:
        handle.write(b"garbage\n[1,2]\n\n")
    assert [r["task_id"] for r in records.read_records(str(tmp_path))] == [1, 3]


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs: a real full disk."""
    with tmpfs(tmp_path / "tiny", "16k") as mount:
        yield mount


def test_a_full_disk_is_a_warning_never_an_exception(
    tiny_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filler = tiny_fs / "filler"
    with open(filler, "wb") as handle:
        try:
            handle.write(b"f" * 64 * 1024)
        except OSError:
            pass
    written = [finished(tiny_fs, n, reason="r" * 200) for n in range(40)]
    assert False in written, "the disk never filled"
    assert "No space left on device" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING
    kept_before = len(records.read_records(str(tiny_fs)))
    # room again: the next record is readable, whatever the full disk cut short
    filler.unlink()
    assert finished(tiny_fs, 999)
    after = records.read_records(str(tiny_fs))
    assert after[-1]["task_id"] == 999
    assert len(after) == kept_before + 1
