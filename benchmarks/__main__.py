"""Runs the benchmarks: ``python -m benchmarks [--only NAME]... [--quick]`` (``make bench``).

Every ``benchmarks/bench_*.py`` module exposes ``run(args) -> list[dict]`` returning rows
``{"name", "ratio", "goal", "met", "detail"}`` and prints its own table; this driver runs the
selected modules in benchmark order (P1, P2, ...) and prints all rows at the end.

``--only`` takes a benchmark id (P1 to P7; a module runs if it provides that id, and
gets ``args.selected`` so it runs only the ids asked for) or a module name (``container`` or
``bench_container``: the whole module). Results are ratios; a goal that is not met is a
finding, not a failure: the exit status is 0 unless a benchmark crashed (1) or the
arguments name nothing (2).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import benchmarks
from benchmarks import common

#: Benchmark ids of modules that do not declare ``BENCHMARKS`` themselves.
KNOWN_IDS: dict[str, tuple[str, ...]] = {
    "bench_container": ("P1", "P2"),
    "bench_logsink": ("P2",),
    "bench_buildarch": ("P3", "P6"),
    "bench_createrepo": ("P4",),
}


@dataclass
class Entry:
    """One discovered benchmark module."""

    name: str  # e.g. bench_container
    ids: tuple[str, ...]
    module: ModuleType | None
    import_error: str | None

    @property
    def short(self) -> str:
        return self.name.removeprefix("bench_")

    def order(self) -> tuple[int, str]:
        numbers = [int(m.group(1)) for i in self.ids if (m := re.match(r"P(\d+)", i))]
        return (min(numbers) if numbers else 99, self.name)


def discover() -> list[Entry]:
    """Imports every bench_*.py module; an import failure is kept and reported if selected."""
    entries = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if not info.name.startswith("bench_"):
            continue
        module: ModuleType | None = None
        error = None
        try:
            module = importlib.import_module(f"benchmarks.{info.name}")
        except Exception:
            error = traceback.format_exc()
        declared = getattr(module, "BENCHMARKS", None) if module else None
        ids = tuple(i.upper() for i in (declared or KNOWN_IDS.get(info.name, ())))
        entries.append(Entry(info.name, ids, module, error))
    return sorted(entries, key=Entry.order)


def select(entries: Sequence[Entry], only: Sequence[str]) -> list[tuple[Entry, set[str] | None]]:
    """The modules to run, each with the ids asked of it (None: all of them)."""
    if not only:
        return [(entry, None) for entry in entries]
    wanted = {name.upper() for name in only}
    chosen: list[tuple[Entry, set[str] | None]] = []
    for entry in entries:
        if {entry.name.upper(), entry.short.upper()} & wanted:
            chosen.append((entry, None))
        elif ids := set(entry.ids) & wanted:
            chosen.append((entry, ids))
    return chosen


def unmatched(entries: Sequence[Entry], only: Sequence[str]) -> list[str]:
    known = {n.upper() for e in entries for n in (e.name, e.short, *e.ids)}
    return [name for name in only if name.upper() not in known]


def machine() -> str:
    """nproc, memory, kernel and podman version, printed with the results."""
    import os

    memory = "?"
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    podman = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=False)
    return (
        f"{os.cpu_count()} CPUs, {memory} RAM, Linux {platform.release()}, "
        f"{podman.stdout.strip() or 'podman ?'}, Python {platform.python_version()}"
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="a benchmark id (P1..P7) or module name (container, buildarch, ...); repeatable",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="measured rounds per benchmark (default: each benchmark's own)",
    )
    parser.add_argument("--image", default=common.IMAGE, help="task image (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the benchmark modules and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    entries = discover()
    if args.list:
        for entry in entries:
            state = "import failed" if entry.import_error else ""
            print(f"{entry.short:<12} {' '.join(entry.ids):<8} {state}")
        return 0
    missing = unmatched(entries, args.only)
    if missing:
        names = ", ".join(f"{e.short} ({' '.join(e.ids)})" for e in entries)
        print(f"--only {' '.join(missing)}: no such benchmark; have {names}", file=sys.stderr)
        return 2

    print(f"koji-adjutant benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    rows: list[dict[str, object]] = []
    crashed: list[str] = []
    for entry, ids in select(entries, args.only):
        label = f"{entry.name} ({', '.join(sorted(ids) if ids else entry.ids) or 'all'})"
        print(f"\n=== {label}")
        if entry.module is None:
            print(entry.import_error, file=sys.stderr)
            crashed.append(f"{entry.name}: import failed")
            continue
        module_args = argparse.Namespace(**vars(args))
        module_args.selected = ids
        started = time.perf_counter()
        try:
            produced = entry.module.run(module_args)
        except Exception:
            traceback.print_exc()
            crashed.append(f"{entry.name}: {sys.exc_info()[1]!r}")
            continue
        print(f"=== {entry.name} took {time.perf_counter() - started:.0f} s")
        rows.extend(dict(row) for row in produced or [])

    common.print_table("Summary (ratios measured side by side, interleaved, in this run)", rows)
    for failure in crashed:
        print(f"CRASHED {failure}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
