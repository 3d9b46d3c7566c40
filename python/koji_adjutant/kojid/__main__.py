"""``python -m koji_adjutant.kojid reap``: kept for existing timers; the same as
``koji-adjutant reap`` (:mod:`koji_adjutant.cli.reap`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from koji_adjutant.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
