#!/usr/bin/env bash
# koji's own builder unit tests (tests/test_builder of a koji checkout) on kojid with
# koji-adjutant's patch applied: once in a virtualenv without koji-adjutant (the patched kojid
# must work unchanged without the wheel) and once in the project's virtualenv (with it).
#
#   KOJI_SRC=<koji checkout> VENV=<project venv> BUILD_DIR=<scratch> scripts/upstream-tests.sh
#
# kojid imports dnf, librepo, Cheetah and multilib at the top; none is on PyPI, so modules the
# interpreter lacks are replaced by empty stand-ins (the builder tests do not reach them). One
# test sets the en_US.UTF-8 locale, which is generated when missing (Debian's `locales`).
set -euo pipefail

: "${KOJI_SRC:?KOJI_SRC must name a koji checkout}"
VENV=$(cd "${VENV:-.venv}" && pwd)
BUILD_DIR=${BUILD_DIR:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
patch_file="$here/kojid_patch/0001-kojid-run-buildArch-and-createrepo-in-containers.patch"
work="$BUILD_DIR/upstream"
rm -rf "$work"
mkdir -p "$work/src"

# the checkout as committed, with the patch
if git -C "$KOJI_SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$KOJI_SRC" archive HEAD | tar -x -C "$work/src"
else
    cp -a "$KOJI_SRC/." "$work/src"
fi
patch -d "$work/src" -p1 --quiet < "$patch_file"
grep -q "koji_adjutant.kojid.kojid_handlers" "$work/src/builder/kojid"

# en_US.UTF-8 for test_build_notification
if ! locale -a 2>/dev/null | grep -qi '^en_US\.utf-\?8$'; then
    if ! dpkg -s locales >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales >/dev/null
    fi
    sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
    locale-gen >/dev/null
fi

stubs() { # $1: python; writes stand-ins for the modules it cannot import
    local python=$1 dir=$2
    rm -rf "$dir" && mkdir -p "$dir"
    for mod in dnf librepo; do
        "$python" -c "import $mod" 2>/dev/null || echo "# stand-in: kojid imports $mod" > "$dir/$mod.py"
    done
    if ! "$python" -c "import Cheetah.Template" 2>/dev/null; then
        mkdir -p "$dir/Cheetah" && : > "$dir/Cheetah/__init__.py"
        printf 'class Template:\n    pass\n' > "$dir/Cheetah/Template.py"
    fi
    if ! "$python" -c "import multilib.multilib" 2>/dev/null; then
        mkdir -p "$dir/multilib" && : > "$dir/multilib/__init__.py" && : > "$dir/multilib/multilib.py"
    fi
}

run() { # $1: label, $2: python
    local label=$1 python=$2
    stubs "$python" "$work/stubs-$label"
    echo "== koji's tests/test_builder on the patched kojid, $label"
    (cd "$work/src" && PYTHONPATH="$work/stubs-$label" "$python" -m pytest -q -p no:cacheprovider tests/test_builder)
}

# 1. without koji-adjutant
plain="$work/venv-plain"
python3 -m venv "$plain"
"$plain/bin/pip" install -q --upgrade pip
"$plain/bin/pip" install -q pytest rpm defusedxml python-dateutil requests six
"$plain/bin/pip" install -q --no-deps "koji>=1.35"
if "$plain/bin/python" -c "import koji_adjutant" 2>/dev/null; then
    echo "koji_adjutant is importable in $plain: the run without the wheel proves nothing" >&2
    exit 1
fi
run without-wheel "$plain/bin/python"

# 2. with koji-adjutant (the project's virtualenv, extension built by `make develop`)
"$VENV/bin/python" -c "import koji_adjutant.kojid"
run with-wheel "$VENV/bin/python"
