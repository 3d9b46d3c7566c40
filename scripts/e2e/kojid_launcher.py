"""Run kojid from a koji source tree as its own __main__, logging into the e2e dir.

kojid's __main__ block logs to /var/log/kojid.log unconditionally; the launcher points that
one call at KOJID_LOG so the test leaves nothing behind, and otherwise runs kojid unchanged:
``runpy.run_path(..., run_name="__main__")`` makes kojid the ``__main__`` module, which is how
the adjutant plugin reaches kojid's classes.

Usage: kojid_launcher.py KOJID_SCRIPT [kojid options...]
"""

import os
import runpy
import sys

import koji

_add_file_logger = koji.add_file_logger


def _file_logger(logger: str, fn: str) -> None:
    if fn == "/var/log/kojid.log":
        fn = os.environ["KOJID_LOG"]
    _add_file_logger(logger, fn)


koji.add_file_logger = _file_logger
script = sys.argv[1]
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
