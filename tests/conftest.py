"""Shared fixtures: a podman manager on the tests' private service, the task image, and a
guard that no container carrying our labels outlives the session.

Tests that need podman are marked ``podman``. Without a podman service they are skipped on a
laptop, but when ``CI`` is set a missing service or image is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from koji_adjutant import ImageError, PodmanManager
from koji_adjutant.devdistro import DevDistro, ensure_dev_distro

IMAGE = os.environ.get("KOJI_ADJUTANT_TEST_IMAGE", "localhost/koji-adjutant-task:dev")
WORKER_ID = f"pytest-{os.getpid()}"
LABEL_TASK = "io.koji.adjutant.task_id"
LABEL_WORKER = "io.koji.adjutant.worker_id"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs podman and the task image: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_socket() -> str:
    socket = os.environ.get("KOJI_ADJUTANT_PODMAN_SOCKET", "")
    if not socket or not Path(socket.removeprefix("unix://")).is_socket():
        _unavailable(f"no podman service socket (KOJI_ADJUTANT_PODMAN_SOCKET={socket!r})")
    return socket


@pytest.fixture(scope="session")
def manager(podman_socket: str) -> Iterator[PodmanManager]:
    mgr = PodmanManager(podman_socket, worker_id=WORKER_ID)
    try:
        mgr.ping()
    except Exception as exc:  # the service is down: same rule as a missing socket
        _unavailable(f"podman service does not answer: {exc}")
    yield mgr
    # failed roots kept by this session's builds (tests that keep one remove it themselves)
    for kept in mgr.list_images({"io.koji.adjutant.kept.worker_id": WORKER_ID}):
        mgr.remove_image(str(kept["id"]))
    left = mgr.list_containers({LABEL_WORKER: WORKER_ID})
    mgr.reap({LABEL_WORKER: WORKER_ID})
    assert not left, f"containers left behind by the tests: {left}"


@pytest.fixture(scope="session")
def image(manager: PodmanManager) -> str:
    try:
        manager.ensure_image_available(IMAGE, pull_policy="never")
    except ImageError as exc:
        _unavailable(f"task image missing, run `make image`: {exc}")
    return IMAGE


@pytest.fixture(scope="session")
def dev_distro(manager: PodmanManager, image: str) -> DevDistro:
    """The task image's own files as RPMs (koji_adjutant.devdistro): what a Koji tag's repo
    holds for buildroots installed from the tag alone. Built once per machine and image."""
    return ensure_dev_distro(manager, image, pull_policy="never")


@pytest.fixture
def no_leaks(manager: PodmanManager) -> Iterator[None]:
    """Fails the test if it leaves any container of this worker behind."""
    yield
    left = manager.list_containers({LABEL_WORKER: WORKER_ID})
    manager.reap({LABEL_WORKER: WORKER_ID})
    assert left == [], f"containers left behind: {[c['id'][:12] for c in left]}"


class RecordingSink:
    """A LogSink that keeps each stream's bytes apart and remembers the order of chunks."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.chunks: list[tuple[str, bytes]] = []

    def write_stdout(self, data: bytes) -> None:
        self.stdout += data
        self.chunks.append(("stdout", data))

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data
        self.chunks.append(("stderr", data))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def podman_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The podman CLI against the same storage (for checks the API under test must not make)."""
    return subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, check=False
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """``path`` (made here) as a tmpfs of ``size`` for the block: a real full disk. Needs
    root, as the podman tests do; without it, a skip on a laptop and a failure in CI."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _unavailable(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def bridge_gateway() -> str:
    """The host's address on podman's default bridge, reachable from bridge containers."""
    out = podman_cli(
        "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}"
    )
    gateway = out.stdout.strip()
    if out.returncode != 0 or not gateway:
        pytest.fail(f"cannot find podman's bridge gateway: {out.stderr}", pytrace=False)
    return gateway


@pytest.fixture
def http_dir() -> Iterator[tuple[Path, str]]:
    """Serves a fresh directory over HTTP to containers on podman's bridge: (dir, base URL).

    The server listens on this machine only for the test's duration; containers reach it
    through the bridge gateway, so no traffic leaves the host.
    """
    import functools
    import http.server
    import tempfile
    import threading

    root = Path(tempfile.mkdtemp(prefix="adj-http-"))
    root.chmod(0o755)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://{bridge_gateway()}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
