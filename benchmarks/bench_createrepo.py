"""P4: kojid's createrepo step over 4000 small RPMs, in the adapter's container versus
``createrepo_c`` run directly on the host with the same flags and inputs.

Two measurements, each as interleaved pairs (the order alternates within each pair, after one
unmeasured warm-up pair), reported as the median of the per-pair wall-time ratios:

* fresh: ``CreaterepoAdapter.run`` (container create, exec, remove included) versus the host's
  ``createrepo_c --error-exit-val -vd -o OUT -i PKGLIST -g COMPS ARCHDIR`` writing its output
  to a log file, as kojid's ``log_output`` does. Goal: ratio <= 1.3.
* update: the adapter with ``--update`` against the previous repo, in which exactly one of
  the 4000 packages differs, versus a fresh adapter run of the same repo.

The RPMs are made once by rpmbuild (160 noarch builds of 25 subpackages, run in parallel) and
cached under ``build/bench-cache/createrepo``; the Koji layout (packages/ hard links, repos/
with pkglist, toplink, blocklist and comps) is rebuilt from the cache on every run.

Run alone: ``KOJI_ADJUTANT_PODMAN_SOCKET=$PWD/build/podman.sock .venv/bin/python -m
benchmarks.bench_createrepo [--pairs N] [--quick]``; ``make bench`` runs it with the others.
A third row times ``--update`` against fresh for createrepo_c alone on the host, so the
update row can be read against what createrepo_c itself gains.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from koji_adjutant import CreaterepoAdapter, PodmanManager, TaskContext

from benchmarks import common

__all__ = ["BENCHMARKS", "ensure_rpms", "make_layout", "run"]

BENCHMARKS = ("P4",)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "bench-cache" / "createrepo"
GOAL = 1.3
#: 159 builds of 25 packages + one of 24 + the package that changes between the two repos.
BUILDS = 160
PER_BUILD = 25
PACKAGES = BUILDS * PER_BUILD
ARCH = "x86_64"
TAG = "bench-build"
CACHE_VERSION = "1"  # bump when the generated RPMs change

_SPEC = """\
%global debug_package %{{nil}}
Name: {name}
Version: 1.0
Release: {release}
Summary: koji-adjutant benchmark package
License: MIT
BuildArch: noarch
%description
Benchmark data.
%{{lua:
for i = 1, {subpackages} do
  local n = "{name}-p" .. i
  print("%package -n " .. n .. "\\nSummary: benchmark subpackage\\n")
  print("%description -n " .. n .. "\\nBenchmark data.\\n")
  print("%files -n " .. n .. "\\n/usr/share/{name}/p" .. i .. "\\n")
end
}}
%prep
%build
%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo main > %{{buildroot}}/usr/share/{name}/main
for i in $(seq 1 {subpackages}); do echo $i > %{{buildroot}}/usr/share/{name}/p$i; done
%files
/usr/share/{name}/main
"""


@dataclass(frozen=True)
class Build:
    name: str
    release: str
    subpackages: int

    @property
    def nvr(self) -> str:
        return f"{self.name}-1.0-{self.release}"


def _builds() -> list[Build]:
    builds = [Build(f"adjbench-b{i:03d}", "1", PER_BUILD - 1) for i in range(BUILDS - 1)]
    builds.append(Build(f"adjbench-b{BUILDS - 1:03d}", "1", PER_BUILD - 2))
    # The package that changes: release 1 in the old repo, 2 in the new one.
    builds += [Build("adjbench-solo", "1", 0), Build("adjbench-solo", "2", 0)]
    return builds


def _rpmbuild(build: Build, rpm_dir: Path) -> None:
    target = rpm_dir / build.nvr
    if target.is_dir():
        return
    with tempfile.TemporaryDirectory(prefix="adjbench-rpmbuild-") as top:
        spec = Path(top) / f"{build.name}.spec"
        spec.write_text(
            _SPEC.format(name=build.name, release=build.release, subpackages=build.subpackages)
        )
        argv = ["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", str(spec)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"rpmbuild of {build.nvr} failed:\n{proc.stdout}{proc.stderr}")
        partial = rpm_dir / f".{build.nvr}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for rpm in (Path(top) / "RPMS" / "noarch").glob("*.rpm"):
            shutil.move(str(rpm), partial / rpm.name)
        partial.rename(target)


def ensure_rpms(cache: Path = CACHE) -> Path:
    """The benchmark's RPMs, one directory per build, made once (in parallel) and cached."""
    rpm_dir = cache / f"rpms-v{CACHE_VERSION}"
    rpm_dir.mkdir(parents=True, exist_ok=True)
    missing = [b for b in _builds() if not (rpm_dir / b.nvr).is_dir()]
    if missing:
        started = time.perf_counter()
        workers = os.cpu_count() or 2
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda b: _rpmbuild(b, rpm_dir), missing))
        print(f"built {len(missing)} builds in {time.perf_counter() - started:.0f}s")
    return rpm_dir


@dataclass(frozen=True)
class Layout:
    topdir: Path
    old_arch_dir: Path  # with repodata, as the hub leaves a finished repo
    new_arch_dir: Path  # in INIT state: what a createrepo task gets


def _write_repo(topdir: Path, repo_id: int, builds: Sequence[Build], rpm_dir: Path) -> Path:
    """repos/<tag>/<repo_id>/ as repo_init writes it; returns the arch dir."""
    repo_dir = topdir / "repos" / TAG / str(repo_id)
    arch_dir = repo_dir / ARCH
    arch_dir.mkdir(parents=True)
    (repo_dir / "groups").mkdir()
    (repo_dir / "groups" / "comps.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<comps>\n  <group>\n    <id>build</id>\n'
        "    <name>build</name>\n    <packagelist>\n"
        '      <packagereq type="mandatory">adjbench-b000</packagereq>\n'
        "    </packagelist>\n  </group>\n</comps>\n"
    )
    os.symlink("../../../..", arch_dir / "toplink")
    lines = []
    for build in builds:
        for rpm in sorted((rpm_dir / build.nvr).iterdir()):
            lines.append(f"toplink/packages/{build.name}/1.0/{build.release}/noarch/{rpm.name}\n")
    (arch_dir / "pkglist").write_text("".join(lines))
    (arch_dir / "blocklist").write_text("")
    return arch_dir


def make_layout(base: Path, rpm_dir: Path) -> Layout:
    """A Koji topdir of the cached RPMs (hard links) with the old and the new repo."""
    topdir = base / "koji"
    for build in _builds():
        target = topdir / "packages" / build.name / "1.0" / build.release / "noarch"
        target.mkdir(parents=True)
        for rpm in (rpm_dir / build.nvr).iterdir():
            os.link(rpm, target / rpm.name)
    builds = _builds()
    common, solo_v1, solo_v2 = builds[:-2], builds[-2], builds[-1]
    old = _write_repo(topdir, 1, [*common, solo_v1], rpm_dir)
    new = _write_repo(topdir, 2, [*common, solo_v2], rpm_dir)
    # The old repo is finished: its repodata made as kojid would, moved in as repoDone does.
    out = base / "old-repo-work" / "repo"
    out.mkdir(parents=True)
    subprocess.run(
        _host_command(old, out), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shutil.move(str(out / "repodata"), str(old / "repodata"))
    return Layout(topdir=topdir, old_arch_dir=old, new_arch_dir=new)


def _host_command(arch_dir: Path, out: Path) -> list[str]:
    """kojid's createrepo_c command line for a repo with packages (no --update)."""
    comps = arch_dir.parent / "groups" / "comps.xml"
    return [
        shutil.which("createrepo_c") or "/usr/bin/createrepo_c",
        "--error-exit-val",
        "-vd",
        "-o",
        str(out),
        "-i",
        str(arch_dir / "pkglist"),
        "-g",
        str(comps),
        str(arch_dir),
    ]


def _package_count(repodata: Path) -> int:
    repomd = ET.parse(repodata / "repomd.xml").getroot()
    ns = {"repo": "http://linux.duke.edu/metadata/repo"}
    for data in repomd.findall("repo:data", ns):
        if data.attrib["type"] == "primary":
            location = data.find("repo:location", ns)
            assert location is not None
            with gzip.open(repodata.parent / location.attrib["href"]) as handle:
                head = handle.read(4096).decode()
            match = re.search(r'packages="(\d+)"', head)
            assert match is not None
            return int(match.group(1))
    raise ValueError(f"no primary metadata in {repodata}")


class Runner:
    """Fresh work dirs per run, removed afterwards; each method returns wall seconds."""

    def __init__(self, base: Path, layout: Layout, manager: PodmanManager, image: str) -> None:
        self.base = base
        self.layout = layout
        self.adapter = CreaterepoAdapter(manager, image, pull_policy="if-not-present")
        self.counter = 0
        self.checked = False

    def _work(self) -> Path:
        self.counter += 1
        work = self.base / "work" / str(self.counter)
        work.mkdir(parents=True)
        return work

    def adapter_run(self, *, update: bool) -> float:
        work = self._work()
        ctx = TaskContext(100_000 + self.counter, work)
        old = self.layout.old_arch_dir / "repodata" if update else None
        started = time.perf_counter()
        result = self.adapter.run(ctx, repo_dir=self.layout.new_arch_dir, old_repodata=old)
        elapsed = time.perf_counter() - started
        log = (work / "createrepo.log").read_text()
        if update != (" --update " in log.splitlines()[0]):
            raise AssertionError(f"--update {'not ' if update else ''}used: {log[:500]}")
        self._check(Path(result.repodata_dir))
        shutil.rmtree(work)
        return elapsed

    def host_run(self, *, update: bool = False) -> float:
        """kojid's createrepo step on the host: the same command, the output to a log."""
        work = self._work()
        out = work / "repo"
        out.mkdir()
        argv = _host_command(self.layout.new_arch_dir, out)
        if update:
            # kojid copies the old repodata into the output dir and adds --update.
            shutil.copytree(self.layout.old_arch_dir / "repodata", out / "repodata")
            argv[-1:-1] = ["--update"]
        started = time.perf_counter()
        with open(work / "createrepo.log", "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            subprocess.run(argv, stdout=log, stderr=log, check=True)
        elapsed = time.perf_counter() - started
        self._check(out / "repodata")
        shutil.rmtree(work)
        return elapsed

    def _check(self, repodata: Path) -> None:
        count = _package_count(repodata)
        if count != PACKAGES:
            raise AssertionError(f"{repodata}: {count} packages, expected {PACKAGES}")


def run(args: object = None) -> list[dict[str, object]]:
    """The P4 rows ({name, ratio, goal, met, detail}); prints its table."""
    if not common.wants(args, "P4"):
        return []
    n = common.rounds(args, full=5, quick=2)
    image = common.image(args)
    rpm_dir = ensure_rpms()
    worker = common.worker_id("createrepo")
    manager = PodmanManager(common.podman_socket(), worker_id=worker)
    manager.ensure_image_available(image, pull_policy="if-not-present")
    CACHE.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="layout-", dir=CACHE))
    try:
        layout = make_layout(base, rpm_dir)
        runner = Runner(base, layout, manager, image)
        fresh = common.interleave(
            {"adapter": lambda: runner.adapter_run(update=False), "host": runner.host_run}, n
        )
        update = common.interleave(
            {
                "update": lambda: runner.adapter_run(update=True),
                "fresh": lambda: runner.adapter_run(update=False),
                "host update": lambda: runner.host_run(update=True),
                "host fresh": runner.host_run,
            },
            n,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
        manager.reap({common.LABEL_WORKER: worker})  # after a failure; the error says why
    common.ensure_no_containers(worker)

    overhead = fresh.median("adapter") - fresh.median("host")
    rows = [
        common.goal_row(
            f"P4 createrepo, {PACKAGES} RPMs: adapter / host createrepo_c",
            fresh.ratio("adapter", "host"),
            "<=",
            GOAL,
            f"median of {n} interleaved pairs; adapter {fresh.median('adapter'):.2f}s "
            f"({fresh.spread('adapter')}), host {fresh.median('host'):.2f}s "
            f"({fresh.spread('host')}); container cost {overhead:.2f}s per task",
        ),
        {
            "name": f"P4 createrepo --update (1 of {PACKAGES} changed) / fresh, adapter",
            "ratio": update.ratio("update", "fresh"),
            "goal": None,
            "met": None,
            "detail": f"update {update.median('update'):.2f}s, fresh {update.median('fresh'):.2f}s",
        },
        {
            "name": f"P4 createrepo --update (1 of {PACKAGES} changed) / fresh, host",
            "ratio": update.ratio("host update", "host fresh"),
            "goal": None,
            "met": None,
            "detail": (
                f"update {update.median('host update'):.2f}s, "
                f"fresh {update.median('host fresh'):.2f}s (createrepo_c alone, for reference)"
            ),
        },
    ]
    common.print_table(f"createrepo (P4), {PACKAGES} RPMs, image {image}", rows)
    return rows


if __name__ == "__main__":
    run(common.module_args())
