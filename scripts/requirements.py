#!/usr/bin/env python3
"""Prints the requirements of pyproject.toml's optional-dependency groups, one per line.

    scripts/requirements.py test dev --without koji   # every requirement but koji's
    scripts/requirements.py test --only koji          # koji's alone

The Makefile installs the test environment from here, so pyproject.toml is the one list.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def name_of(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].strip().lower()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("groups", nargs="+")
    parser.add_argument("--without", action="append", default=[])
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    seen: list[str] = []
    for group in args.groups:
        for requirement in extras[group]:
            name = name_of(requirement)
            if name in args.without or (args.only and name not in args.only):
                continue
            if requirement not in seen:
                seen.append(requirement)
    print("\n".join(seen))


if __name__ == "__main__":
    main()
