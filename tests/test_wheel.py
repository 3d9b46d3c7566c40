"""`make wheel`, installed as an admin installs it: a clean venv, then what kojid needs.

The wheel is built by the Makefile's own recipe (reusing cargo's target dir, so it takes
seconds after `make develop`) and installed into a venv without system site-packages, from
the file alone. koji's client library comes from PyPI (kojid itself is not there): the plugin
file is loaded with koji's PluginTracker, as kojid loads it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What koji's client library needs (its requests-gssapi only serves GSSAPI logins and needs
#: Kerberos headers to build: the Makefile leaves it out as well).
KOJI_DEPS = ("defusedxml", "python-dateutil", "requests", "six")

pytestmark = pytest.mark.slow


def _run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def _venv_of_this_python() -> Path:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "maturin").exists():
        if os.environ.get("CI"):
            pytest.fail(f"no maturin in {venv}: run `make venv`", pytrace=False)
        pytest.skip(f"no maturin in {venv}")
    return venv


def test_the_wheel_installs_in_a_clean_venv_and_kojid_loads_the_plugin(tmp_path: Path) -> None:
    venv = _venv_of_this_python()
    dist = tmp_path / "dist"
    # the Makefile's recipe, without remaking the venv it builds with
    _run(
        [
            *("make", "--no-print-directory", "-o", f"{venv}/.ready", "wheel"),
            *(f"VENV={venv}", f"DIST={dist}"),
        ],
        cwd=REPO,
        timeout=1800,
    )
    (wheel,) = dist.glob("*.whl")
    match = re.fullmatch(
        r"koji_adjutant-(.+)-cp39-abi3-(manylinux_2_\d+|linux)_x86_64\.whl", wheel.name
    )
    assert match, wheel.name
    version = match.group(1)
    assert wheel.stat().st_size < 10 * 1024**2

    target = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", target])
    assert "include-system-site-packages = false" in (target / "pyvenv.cfg").read_text()
    python = target / "bin" / "python"
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-index", wheel])  # nothing but the wheel: it has no dependencies
    away: dict[str, Any] = {
        "cwd": tmp_path,
        "env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    }

    found = _run([python, "-c", "import koji_adjutant, sys; print(koji_adjutant.__file__)"], **away)
    assert found.stdout.strip().startswith(str(target / "lib")), found.stdout
    shown = _run([target / "bin" / "koji-adjutant", "--version"], **away)
    assert shown.stdout.strip() == f"koji-adjutant {version}"
    # the base install has no prometheus_client: serve says which extra brings it
    served = subprocess.run(
        [target / "bin" / "koji-adjutant", "serve"], capture_output=True, text=True, **away
    )
    assert served.returncode == 2
    assert "pip install 'koji-adjutant[serve]'" in served.stderr
    requires = _run(
        [python, "-c", "import importlib.metadata as m; print(m.requires('koji-adjutant'))"],
        **away,
    )
    assert re.search(r"prometheus[-_]client>=0\.17 ?; extra == .serve.", requires.stdout)

    # what kojid's Python has besides: koji's client library
    _run([*pip, *KOJI_DEPS], timeout=600)
    _run([*pip, "--no-deps", "koji>=1.35"], timeout=600)
    load = (
        "import sys, koji.plugin\n"
        "tracker = koji.plugin.PluginTracker(path=[sys.argv[1]])\n"
        "plugin = tracker.load('adjutant')\n"
        "print(plugin.AdjutantBuildArchTask.Methods, plugin.AdjutantCreaterepoTask.Methods)\n"
        "import koji_adjutant.kojid.handlers as h; print(h.__file__)\n"
    )
    env = {
        **away["env"],
        "KOJI_ADJUTANT_CONFIG": str(tmp_path / "no-such.conf"),
        "KOJI_ADJUTANT_REAP_ON_START": "no",  # loading must not need a podman service
    }
    loaded = _run([python, "-c", load, REPO / "kojid_patch"], cwd=tmp_path, env=env)
    methods, where = loaded.stdout.splitlines()
    assert methods == "['buildArch'] ['createrepo']"
    assert where.startswith(str(target / "lib"))
