"""One kojid task in a process of its own, for tests that signal it (tests/test_faults.py).

``python tests/kojidtask.py '<json>'`` does what a forked kojid task does: kojid's SIGTERM
handler (``main()`` of builder/kojid raises SystemExit, and task children inherit it), an
exclusive host session and its subsession, kojid's options, and the handler run through
``koji.daemon.TaskManager.runTask`` (kojidloader.run_task). The JSON names the hub, the host,
the task, its method (``build_arch`` or ``createrepo``), kojid's options and the kojid source
(null: koji_adjutant.kojid.compat). adjutant.conf comes from KOJI_ADJUTANT_CONFIG.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import koji
import kojidloader
from koji_adjutant.kojid import make_handlers


def _shutdown(*args: Any) -> None:
    raise SystemExit


def main(args: dict[str, Any]) -> None:
    signal.signal(signal.SIGTERM, _shutdown)  # kojid's main() handler, inherited by tasks
    source = args.get("kojid_source")
    handlers = make_handlers(kojidloader.load_kojid(source) if source else None)
    master = koji.ClientSession(
        args["hub_url"],
        {"user": args["host"], "password": "x", "max_retries": 0, "use_fast_upload": True},
    )
    master.login()
    master.exclusiveSession(force=True)
    session = master.subsession()
    options = kojidloader.kojid_options(**args["options"])
    kojidloader.run_task(getattr(handlers, args["method"]), session, options, args["task_id"])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
