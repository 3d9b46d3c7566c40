#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: cargo tests, the extension built into the
# venv, a private podman service, then pytest. The service is stopped on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-$PWD/build}
VENV=${VENV:-.venv}

cargo test --quiet --lib 2>&1 | tail -n 5

scripts/podman-service.sh start
trap 'scripts/podman-service.sh stop' EXIT
export KOJI_ADJUTANT_PODMAN_SOCKET=$BUILD_DIR/podman.sock
export KOJI_ADJUTANT_TEST_IMAGE=${KOJI_ADJUTANT_TEST_IMAGE:-localhost/koji-adjutant-task:dev}

"$VENV/bin/python" -m pytest "$@"
