#!/usr/bin/env bash
# Installs the host packages the build and the tests need, when missing (Debian/Ubuntu).
# podman + runc run the containers (crun fails on cgroup v1 hybrid hosts), catatonit is the
# init podman runs as PID 1 of every task container (it reaps what a build leaves behind),
# debootstrap makes the dev task image, rpm/createrepo-c/dnf let the tests build RPMs and repos
# on the host.
set -euo pipefail
need=()
for pair in podman:podman runc:runc catatonit:catatonit debootstrap:debootstrap rpmbuild:rpm \
            createrepo_c:createrepo-c \
            mergerepo_c:createrepo-c dnf:dnf curl:curl python3:python3 ; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# kojid reads RPM headers with rpm's Python bindings; the venv reaches Debian's through the
# PyPI "rpm" shim (the bindings are not on PyPI).
[[ -d /usr/lib/python3/dist-packages/rpm ]] || need+=(python3-rpm)
if ((${#need[@]})); then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    echo "installing host packages: ${need[*]}"
    if [[ $(id -u) != 0 ]]; then echo "need root to install ${need[*]}" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
