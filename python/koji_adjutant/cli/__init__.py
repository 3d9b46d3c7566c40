"""``koji-adjutant``: the operator's command line (a console script of the wheel).

Each subcommand is a module of this package with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (taking the parsed arguments, returning the exit status). They are
found by listing the package, so adding a command is adding a module. Commands that act on a
builder read the same configuration as the kojid plugin (``adjutant.conf`` and the
``KOJI_ADJUTANT_*`` variables; ``--config`` names another file).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _commands() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def parser() -> argparse.ArgumentParser:
    from koji_adjutant import __version__

    top = argparse.ArgumentParser(
        prog="koji-adjutant", description="Operate koji-adjutant on a Koji builder."
    )
    top.add_argument("--version", action="version", version=f"koji-adjutant {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _commands():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
