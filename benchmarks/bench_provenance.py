"""P7: the cost of a build's provenance (lockfile, SBOM, signed attestation) against a warm
buildArch of a small package.

Inputs are P3's (``bench_buildarch``): the tag's repo holds the dev distribution and 300
filler packages, its ``build`` group installs 305 packages, and the task is the bundled
sample koji-adjutant-hello (C, two RPMs) with the buildroot cache on and the user namespace
kojid gives buildArch containers. Setup (not measured): the repo, one cold build (so every
measured build is warm), an Ed25519 signing key.

Each round, back to back: a warm ``BuildArchAdapter.run`` of the sample (wall time around the
call), then everything the kojid glue does for the three files after the build
(``koji_adjutant.kojid.handlers.BuildArchMixin.write_provenance`` minus the hub upload):
``PodmanManager.inspect_image`` of the bootstrap image, reading the SRPM's and the outputs'
headers and SHA-256s, finding the 305 packages in the repo's pkglist/rpmlist.jsonl, writing
``buildroot_lock.json`` and ``sbom.spdx.json``, building, signing and writing
``provenance.intoto.json``. Ratio provenance / warm build, median of per-round ratios.
**Goal <= 0.05.** The detail splits the provenance into its parts (medians) and gives the
files' sizes.

Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock PYTHONPATH=tests
.venv/bin/python -m benchmarks.bench_provenance [--quick]``.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from koji_adjutant import BuildArchResult, PodmanManager, TaskContext
from koji_adjutant.devdistro import ensure_dev_distro
from koji_adjutant.provenance import (
    FILE_NAMES,
    ImageFacts,
    RepoFacts,
    facts_from_result,
    write_files,
)

from benchmarks import bench_buildarch, common

__all__ = ["BENCHMARKS", "run"]

BENCHMARKS = ("P7",)
GOAL = 0.05


@dataclass(frozen=True)
class Round:
    build: float
    parts: dict[str, float]
    sizes: dict[str, int]

    @property
    def provenance(self) -> float:
        return sum(self.parts.values())


def _signer(base: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from koji_adjutant.provenance.attestation import load_signer

    key = base / "provenance.key"
    key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return load_signer(key)


class Bench:
    def __init__(self, runner: bench_buildarch.Runner, manager: PodmanManager, image: str):
        self.runner = runner
        self.manager = manager
        self.image = image
        self.signer = _signer(runner.base)

    def build(self, repo: tuple[int, Path]) -> tuple[BuildArchResult, Path, float]:
        """One adapter run as bench_buildarch's Runner makes it, keeping the result."""
        runner = self.runner
        runner.task_id += 1
        work = runner.base / f"task-{runner.task_id}"
        work.mkdir()
        work.chmod(0o755)
        srpm = work / runner.koji.srpm.name
        shutil.copy(runner.koji.srpm, srpm)
        repo_id, arch_dir = repo
        started = time.perf_counter()
        try:
            result = runner.adapter.run(
                TaskContext(runner.task_id, work),
                srpm,
                bench_buildarch.ARCH,
                repo=str(arch_dir),
                repo_id=repo_id,
                tag_name=bench_buildarch.TAG,
                build_config=runner.config(),
            )
        finally:
            state = work / "result" / "state.log"
            if state.exists():
                log = bench_buildarch.StateLog.read(state)
                runner.saved += log.stored_images()
                runner.keys += log.fresh_keys()
        return result, srpm, time.perf_counter() - started

    def provenance(self, result: BuildArchResult, srpm: Path, repo: tuple[int, Path]) -> Round:
        """What the glue does for the three files, timed in parts."""
        repo_id, arch_dir = repo
        parts: dict[str, float] = {}
        t0 = time.perf_counter()
        inspected = self.manager.inspect_image(result.image_id)
        image = ImageFacts.from_inspect(self.image, inspected, source="bench")
        t1 = time.perf_counter()
        parts["inspect image"] = t1 - t0
        config = self.runner.config()
        facts = facts_from_result(
            result,
            task_id=self.runner.task_id,
            srpm_request=f"tasks/{self.runner.task_id}/{srpm.name}",
            srpm=srpm,
            arch=bench_buildarch.ARCH,
            keep_srpm=False,
            repo=RepoFacts(repo_id, bench_buildarch.TAG, bench_buildarch.ARCH, arch_dir.as_uri()),
            open_repo_file=lambda name: open(arch_dir / name, "rb"),
            image=image,
            build_config=config,
            buildroot_mode="tag",
            started=datetime.now(timezone.utc),
            finished=datetime.now(timezone.utc),
            worker_id="bench",
            kojid_options={"vendor": "Koji", "packager": "Koji", "distribution": "Koji"},
            buildhost="bench.example.org",
        )
        t2 = time.perf_counter()
        parts["headers + repo lookup"] = t2 - t1
        out = Path(tempfile.mkdtemp(prefix="prov-", dir=self.runner.base))
        write_files(facts, out, signer=self.signer)
        parts["write 3 files + sign"] = time.perf_counter() - t2
        sizes = {name: (out / name).stat().st_size for name in FILE_NAMES}
        if len(facts.packages) < bench_buildarch.MIN_GROUP:
            raise AssertionError(f"only {len(facts.packages)} buildroot packages")
        if any(not p.url for p in facts.packages):
            raise AssertionError("a buildroot package was not found in the repo")
        return Round(0.0, parts, sizes)


def measure(bench: Bench, repo: tuple[int, Path], rounds: int) -> list[dict[str, object]]:
    samples: list[Round] = []
    for _ in range(rounds):
        result, srpm, wall = bench.build(repo)
        if not result.cache_hit:
            raise AssertionError("a measured build must be warm")
        measured = bench.provenance(result, srpm, repo)
        samples.append(Round(wall, measured.parts, measured.sizes))
    ratio = statistics.median(r.provenance / r.build for r in samples)
    build = statistics.median(r.build for r in samples)
    prov = statistics.median(r.provenance for r in samples)
    parts = {k: statistics.median(r.parts[k] for r in samples) for k in samples[0].parts}
    sizes = samples[-1].sizes
    detail = (
        f"warm build {build:.2f} s, provenance {prov * 1000:.0f} ms ("
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts.items())
        + "); "
        + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items())
        + f"; {rounds} rounds"
    )
    return [common.goal_row("P7 provenance / warm buildArch", ratio, "<=", GOAL, detail)]


def run(args: object = None) -> list[dict[str, object]]:
    """The P7 row; prints its table."""
    if not common.wants(args, "P7"):
        return []
    image = common.image(args)
    rounds = common.rounds(args, full=5, quick=1)
    worker = common.worker_id("provenance")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    manager.ensure_image_available(image, pull_policy="never")
    base = Path(tempfile.mkdtemp(prefix="adj-bench-provenance-"))
    base.chmod(0o755)
    runner: bench_buildarch.Runner | None = None
    rows: list[dict[str, object]] = []
    try:
        distro = ensure_dev_distro(manager, image, pull_policy="never")
        koji = bench_buildarch.Koji(base, distro)
        runner = bench_buildarch.Runner(base, koji, manager, image)
        bench = Bench(runner, manager, image)
        repo = koji.new_repo()
        bench.build(repo)  # cold: installs and stores the root every measured build reuses
        rows = measure(bench, repo, rounds)
    except BaseException:
        manager.reap({common.LABEL_WORKER: worker})
        raise
    finally:
        left = runner.remove_images() if runner else []
        shutil.rmtree(base, ignore_errors=True)
    if left:
        raise RuntimeError(f"cache images not removed: {left}")
    common.ensure_no_containers(worker)
    common.print_table("provenance (P7)", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
