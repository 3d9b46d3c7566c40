#!/usr/bin/env bash
# End-to-end test against real Koji: a hub (koji's WSGI app on loopback, PostgreSQL from
# Debian) and kojid, both from the koji checkout KOJI_SRC, with koji-adjutant hooked in first
# as the plugin, then as the patch. Each time: newRepo (createrepo in a container), a build from
# an uploaded SRPM (rebuildSRPM and buildArch in containers) and one from a git repository
# served on 127.0.0.1 (buildSRPMFromSCM and buildArch), checked through the hub's API
# (scripts/e2e/driver.py), which prints each task's wall time and each container step's.
# Also checks that kojid_patch/*.patch applies to KOJI_SRC.
#
#   KOJI_SRC=<koji checkout> scripts/e2e/run.sh        (as root; `make e2e KOJI_SRC=...`)
#
# Everything lives in $BUILD_DIR/e2e (removed first); the services are stopped on every exit.
# Installs the Debian packages the hub and kojid need when missing. E2E_MODES="plugin patch"
# selects the hooks to test; E2E_KEEP=1 keeps the services' logs and data after success.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KOJI_SRC=$(realpath "${KOJI_SRC:?set KOJI_SRC to a koji source checkout}")
BUILD_DIR=$(realpath -m "${BUILD_DIR:-$ROOT/build}")
E2E=$BUILD_DIR/e2e
IMAGE=${IMAGE:-localhost/koji-adjutant-task:dev}
MODES=${E2E_MODES:-plugin patch}
VENV=${VENV:-$ROOT/.venv}
PATCH=$(ls "$ROOT"/kojid_patch/*.patch)
HOST=e2e-builder
WORKER=e2e-$$

log() { printf '\n=== %s\n' "$*"; }
die() { echo "e2e: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (kojid and its containers run as root)"
[[ -f $KOJI_SRC/builder/kojid && -d $KOJI_SRC/kojihub ]] || die "$KOJI_SRC is not a koji checkout"

log "the patch applies to $KOJI_SRC"
scratch=$(mktemp -d)
cp -a "$KOJI_SRC/builder" "$scratch/"
patch -d "$scratch" -p1 --dry-run <"$PATCH"
rm -rf "$scratch"

log "host packages"
need=()
for pkg in postgresql python3-venv python3-psycopg2 python3-cheetah python3-librepo python3-defusedxml \
           python3-dateutil python3-requests python3-rpm python3-dnf python3-six; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

rm -rf "$E2E"
mkdir -p "$E2E"/{topdir,kojid-work,mock,pgsock,logs,wheels}
chmod 0755 "$E2E" "$E2E/topdir"

pids=()
created_mock_dir=
stop_pid() {  # SIGTERM, then SIGKILL after 30 s
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    # newest first: kojid before the hub it logs out from
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
    if [[ -d $E2E/pg ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$E2E/pg" -m fast stop >/dev/null 2>&1
    fi
    if [[ -S $E2E/podman.sock ]]; then
        "$VENV/bin/python" -c "import koji_adjutant; print('leftover containers removed:',
            koji_adjutant.PodmanManager('$E2E/podman.sock', worker_id='$WORKER').reap(
            {'io.koji.adjutant.worker_id': '$WORKER'}))" 2>/dev/null
        BUILD_DIR=$E2E "$ROOT/scripts/podman-service.sh" stop >/dev/null
    fi
    [[ -n $created_mock_dir ]] && rmdir /etc/mock/koji /etc/mock 2>/dev/null
    if ((rc)); then
        echo "e2e FAILED; logs in $E2E/logs:" >&2
        tail -n 40 "$E2E"/logs/*.log >&2
    elif [[ -z ${E2E_KEEP:-} ]]; then
        rm -rf "$E2E/pg" "$E2E/topdir" "$E2E/kojid-work"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

log "koji-adjutant wheel for the system python (kojid's)"
"$VENV/bin/maturin" build --release --quiet -o "$E2E/wheels" >/dev/null
/usr/bin/python3 -m venv --system-site-packages "$E2E/venv"
"$E2E/venv/bin/pip" install -q --no-deps "$E2E"/wheels/koji_adjutant-*.whl
PY=$E2E/venv/bin/python
export PYTHONPATH=$KOJI_SRC:$ROOT/tests:$ROOT/scripts/e2e/stubs

log "PostgreSQL on $E2E/pgsock"
chown postgres "$E2E/pgsock"
mkdir "$E2E/pg" && chown postgres "$E2E/pg"
runuser -u postgres -- "$PG_BIN/initdb" -D "$E2E/pg" -A trust -U postgres >"$E2E/logs/initdb.log"
touch "$E2E/logs/postgres.log" && chown postgres "$E2E/logs/postgres.log"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$E2E/pg" -l "$E2E/logs/postgres.log" -w \
    -o "-c listen_addresses='' -k $E2E/pgsock" start >/dev/null
runuser -u postgres -- "$PG_BIN/createuser" -h "$E2E/pgsock" koji
runuser -u postgres -- "$PG_BIN/createdb" -h "$E2E/pgsock" -O koji koji
"$PG_BIN/psql" -q -h "$E2E/pgsock" -U koji koji -v ON_ERROR_STOP=1 \
    -f "$KOJI_SRC/schemas/schema.sql" >"$E2E/logs/schema.log"

log "hub"
mkdir -p "$E2E/hub/hub.conf.d"
cat >"$E2E/hub/hub.conf" <<EOF
[hub]
DBName = koji
DBUser = koji
DBHost = $E2E/pgsock
KojiDir = $E2E/topdir
LoginCreatesUser = Off
KojiWebURL = http://127.0.0.1/koji
EmailDomain = example.com
NotifyOnSuccess = False
DisableNotifications = True
CheckClientIP = False
EOF
mkdir -p "$E2E"/topdir/{packages,repos,work,scratch,repos-dist}
"$PY" "$ROOT/scripts/e2e/hub.py" "$E2E/hub/hub.conf" "$E2E/topdir" "$E2E/hub.port" \
    >"$E2E/logs/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -f $E2E/hub.port ]] && break; sleep 0.1; done
[[ -f $E2E/hub.port ]] || die "the hub did not start"
PORT=$(cat "$E2E/hub.port")
export E2E_HUB=http://127.0.0.1:$PORT/kojihub E2E_DB="host=$E2E/pgsock dbname=koji user=koji"
export E2E_DIR=$E2E E2E_IMAGE=$IMAGE E2E_HOST=$HOST E2E_PODMAN_SOCKET=$E2E/podman.sock

log "podman service"
BUILD_DIR=$E2E "$ROOT/scripts/podman-service.sh" start
podman --runtime runc image exists "$IMAGE" || die "task image $IMAGE missing (make image)"

# the build tag's content: the dev distribution (its build group) and adj-libgreet
"$PY" "$ROOT/scripts/e2e/driver.py" setup

# kojid scans /etc/mock/koji for buildroot configs on every loop and fails without the dir
if [[ ! -d /etc/mock/koji ]]; then mkdir -p /etc/mock/koji; created_mock_dir=1; fi

cat >"$E2E/adjutant.conf" <<EOF
[adjutant]
podman_socket = $E2E/podman.sock
worker_id = $WORKER
task_image = $IMAGE
pull_policy = never
buildroot_cache = no
log_dir = $E2E/logs/containers
EOF
export KOJI_ADJUTANT_CONFIG=$E2E/adjutant.conf

run_kojid() {  # mode kojid-script [plugin options]
    local mode=$1 script=$2
    shift 2
    cat >"$E2E/kojid-$mode.conf" <<EOF
[kojid]
server = $E2E_HUB
topurl = http://127.0.0.1:$PORT/kojifiles
topdir = $E2E/topdir
workdir = $E2E/kojid-work
mockdir = $E2E/mock
user = $HOST
password = $HOST
sleeptime = 1
max_retries = 3
retry_interval = 2
minspace = 1
maxjobs = 4
allowed_scms = 127.0.0.1?*:/adj-*:no:./get-sources
$(printf '%s\n' "$@")
EOF
    KOJID_LOG=$E2E/logs/kojid-$mode.log "$PY" "$ROOT/scripts/e2e/kojid_launcher.py" "$script" \
        -c "$E2E/kojid-$mode.conf" --fg --force-lock --verbose \
        >"$E2E/logs/kojid-$mode.out.log" 2>&1 &
    kojid_pid=$!
    pids+=("$kojid_pid")
}

stop_kojid() {
    stop_pid "$kojid_pid"
}

for mode in $MODES; do
    case $mode in
    plugin)
        log "kojid ($KOJI_SRC) with the plugin"
        run_kojid plugin "$KOJI_SRC/builder/kojid" \
            "plugins = adjutant" "pluginpath = $ROOT/kojid_patch"
        ;;
    patch)
        log "kojid ($KOJI_SRC) with the patch"
        mkdir -p "$E2E/patched/builder"
        cp "$KOJI_SRC/builder/kojid" "$E2E/patched/builder/kojid"
        patch -d "$E2E/patched" -p1 -s <"$PATCH"
        run_kojid patch "$E2E/patched/builder/kojid"
        ;;
    *) die "unknown mode $mode" ;;
    esac
    sleep 3
    kill -0 "$kojid_pid" 2>/dev/null || die "kojid ($mode) exited at start"
    "$PY" "$ROOT/scripts/e2e/driver.py" check "$mode"
    grep -q "koji-adjutant handles buildArch, createrepo" "$E2E/logs/kojid-$mode.out.log" \
        || die "kojid ($mode) did not log the adjutant handlers"
    stop_kojid
    left=$(podman --runtime runc ps -aq --filter "label=io.koji.adjutant.worker_id=$WORKER")
    [[ -z $left ]] || die "containers left after the $mode run: $left"
    echo "ok: no container left ($mode)"
done

log "e2e passed against $KOJI_SRC ($(git -C "$KOJI_SRC" describe --tags 2>/dev/null || echo unknown))"
