"""The README's first command: a real build of the bundled sample package, in containers.

``python -m koji_adjutant.demo`` (or ``make demo``) does what a Koji build of the sample would
do on a builder, with koji-adjutant in place of mock and the host's createrepo_c:

1. makes the SRPM of the bundled sample with rpmbuild in the task image;
2. makes (once per machine, then reuses) the dev distribution: the task image's own files as a
   handful of RPMs (:mod:`koji_adjutant.devdistro`), since no RPM distribution is reachable;
3. lays out a Koji topdir with a build tag repo of those RPMs (``pkglist``, ``toplink``,
   ``groups/comps.xml`` with the ``build`` group) and generates its repodata with
   ``CreaterepoAdapter``;
4. builds the sample SRPM with ``BuildArchAdapter`` in a buildroot installed from that repo
   alone (mock's bootstrap model), prints the buildroot's package list as kojid sends it to
   the hub, and kojid's result;
5. imports the built RPMs and makes a repo of them with ``CreaterepoAdapter``, printing
   kojid's createrepo result.

Everything runs in Podman containers through the podman service at
``$KOJI_ADJUTANT_PODMAN_SOCKET``; nothing is written outside ``--work-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from koji_adjutant import (
    BuildArchAdapter,
    ContainerSpec,
    CreaterepoAdapter,
    PodmanManager,
    TaskContext,
    VolumeMount,
)
from koji_adjutant.devdistro import ensure_dev_distro
from koji_adjutant.sample import SAMPLE_DIR, SPEC

TAG = "demo-build"
DEST_TAG = "demo-dest"
ARCH = "x86_64"
DIST = ".demo1"
RPM_NAME = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<release>[^-]+)\.(?P<arch>[^.]+)\.rpm$")


class Printer:
    """A LogSink that shows container output, indented, while it runs."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def _show(self, data: bytes) -> None:
        if not self.quiet:
            text = data.decode(errors="replace")
            sys.stdout.write("".join(f"    | {line}\n" for line in text.splitlines()))
            sys.stdout.flush()

    write_stdout = _show
    write_stderr = _show


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def make_srpm(mgr: PodmanManager, image: str, out: Path, printer: Printer) -> None:
    """rpmbuild -bs of the sample in the task image."""
    script = (
        "set -e; cd /out; "
        "rpmbuild -bs --define '_sourcedir /sample' --define '_srcrpmdir /out' "
        f"--define '_topdir /tmp/rpmbuild' --define 'dist {DIST}' /sample/{SPEC.name}"
    )
    spec = ContainerSpec(
        image,
        ["sh", "-c", script],
        mounts=[
            VolumeMount(SAMPLE_DIR, "/sample", read_only=True),
            VolumeMount(out, "/out", read_only=False),
        ],
        labels={"io.koji.adjutant.demo": "srpm"},
    )
    result = mgr.run(spec, printer)
    if result.exit_code != 0:
        raise SystemExit(f"making the SRPM failed (exit {result.exit_code})")


def import_rpms(topdir: Path, rpms: Iterable[Path], srpm_name: str) -> list[str]:
    """Store RPMs at Koji's package paths; returns their pkglist lines (``toplink/...``)."""
    build = RPM_NAME.match(srpm_name)
    if build is None:
        raise SystemExit(f"unexpected SRPM name {srpm_name}")
    lines = []
    for rpm in rpms:
        arch = RPM_NAME.match(rpm.name)
        if arch is None:
            continue
        rel = Path(
            "packages", build["name"], build["version"], build["release"], arch["arch"], rpm.name
        )
        (topdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rpm, topdir / rel)
        (topdir / rel).chmod(0o644)
        lines.append(f"toplink/{rel}")
    return lines


def make_repo(
    topdir: Path, tag: str, repo_id: int, pkglist: list[str], groups: dict[str, list[str]]
) -> Path:
    """The layout the hub's repo_init writes: repos/<tag>/<id>/{groups/comps.xml,<arch>/...}."""
    repo_dir = topdir / "repos" / tag / str(repo_id)
    arch_dir = repo_dir / ARCH
    (repo_dir / "groups").mkdir(parents=True)
    arch_dir.mkdir()
    (arch_dir / "toplink").symlink_to("../../../..")
    (arch_dir / "pkglist").write_text("".join(f"{line}\n" for line in pkglist))
    (arch_dir / "blocklist").write_text("")
    comps = ['<?xml version="1.0" encoding="UTF-8"?>', "<comps>"]
    for group, packages in groups.items():
        comps += [
            f"  <group><id>{group}</id><name>{group}</name><default>true</default>"
            "<uservisible>true</uservisible><packagelist>"
        ]
        comps += [f'    <packagereq type="mandatory">{p}</packagereq>' for p in packages]
        comps += ["  </packagelist></group>"]
    comps.append("</comps>")
    (repo_dir / "groups" / "comps.xml").write_text("\n".join(comps) + "\n")
    return arch_dir


def createrepo(
    adapter: CreaterepoAdapter, work: Path, task_id: int, arch_dir: Path, printer: Printer
) -> None:
    """kojid's createrepo task, then the hub's repoDone: repodata moved into the repo."""
    task_dir = work / f"task-{task_id}"
    task_dir.mkdir()
    result = adapter.run(TaskContext(task_id, task_dir), repo_dir=arch_dir, sink=printer)
    print(
        f"    createrepo result (kojid's [uploadpath, files]): {json.dumps(result.kojid_result())}"
    )
    shutil.copytree(result.repodata_dir, arch_dir / "repodata")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--image",
        default=os.environ.get("KOJI_ADJUTANT_TEST_IMAGE", "localhost/koji-adjutant-task:dev"),
    )
    parser.add_argument(
        "--socket", default=None, help="podman socket (default $KOJI_ADJUTANT_PODMAN_SOCKET)"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("build/demo"))
    parser.add_argument("--quiet", action="store_true", help="do not show container output")
    args = parser.parse_args(argv)

    work: Path = args.work_dir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    work.chmod(0o755)
    printer = Printer(args.quiet)
    mgr = PodmanManager(args.socket, worker_id="koji-adjutant-demo")
    started = time.monotonic()

    step(f"Task image {args.image}")
    print(
        f"    image id {mgr.ensure_image_available(args.image, pull_policy='if-not-present')[:12]}"
    )

    step("Making the sample's SRPM with rpmbuild in a container")
    out = work / "srpms"
    out.mkdir()
    make_srpm(mgr, args.image, out, printer)
    sample_srpm = next(out.glob("koji-adjutant-hello-*.src.rpm"))
    print(f"    {sample_srpm.name}")

    step("The dev distribution: the task image's own files as RPMs (made once, then reused)")
    distro = ensure_dev_distro(mgr, args.image, sink=None if args.quiet else printer)
    print(f"    {distro.directory} (made in {distro.build_seconds:.1f} s)")
    for rpm in distro.rpms:
        print(f"    {rpm.name}")

    topdir = work / "koji"
    topdir.mkdir()
    pkglist = import_rpms(topdir, distro.rpms, distro.srpm.name)
    build_repo = make_repo(
        topdir, TAG, 1, pkglist, {name: list(pkgs) for name, pkgs in distro.groups.items()}
    )
    createrepo_adapter = CreaterepoAdapter(mgr, args.image)

    step(f"createrepo for the build tag repo {build_repo.relative_to(work)} (CreaterepoAdapter)")
    createrepo(createrepo_adapter, work, 1001, build_repo, printer)

    step(
        f"buildArch of {sample_srpm.name} for {ARCH} (BuildArchAdapter): the buildroot is"
        " installed from the tag's repo alone"
    )
    task_dir = work / "task-1002"
    task_dir.mkdir()
    srpm = task_dir / sample_srpm.name
    shutil.copy2(sample_srpm, srpm)
    srpm.chmod(0o644)
    adapter = BuildArchAdapter(mgr, args.image, cache=False)

    def buildroot_ready(packages: list[dict[str, object]]) -> None:
        print("    buildroot ready; the list kojid sends to host.setBuildRootList:")
        for p in sorted(packages, key=lambda p: str(p["name"])):
            print(
                f"      {p['name']}-{p['version']}-{p['release']}.{p['arch']}"
                f"  payloadhash {p['payloadhash']}"
            )

    build = adapter.run(
        TaskContext(1002, task_dir),
        srpm,
        ARCH,
        repo=str(build_repo),
        repo_id=1,
        tag_name=TAG,
        build_config={"id": 1, "name": TAG, "arches": ARCH, "extra": {"rpm.macro.dist": DIST}},
        keep_srpm=True,
        sink=printer,
        on_buildroot_ready=buildroot_ready,
    )
    print(f"    bootstrap image {args.image} (id {build.image_id[:12]}, {build.image_digest})")
    print("    kojid's buildArch result:")
    print("      " + json.dumps(build.kojid_result(brootid=1), indent=2).replace("\n", "\n      "))

    step("Importing the build and making a repo of it (CreaterepoAdapter)")
    built = import_rpms(topdir, [Path(p) for p in build.rpms], Path(build.srpms[0]).name)
    dest_repo = make_repo(topdir, DEST_TAG, 2, built, {"build": []})
    createrepo(createrepo_adapter, work, 1003, dest_repo, printer)

    step(f"Done in {time.monotonic() - started:.1f} s. Results under {work}:")
    for path in sorted(build.rpms):
        print(f"    {path}")
    print(f"    {dest_repo / 'repodata'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
