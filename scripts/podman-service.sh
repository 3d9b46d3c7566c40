#!/usr/bin/env bash
# Starts or stops a private podman API service for the tests, on a socket under the build dir.
# It runs with runc (crun fails on cgroup v1 hybrid hosts) and is stopped by its PID; nothing
# under /etc/containers is touched.
#   scripts/podman-service.sh start|stop|status   (BUILD_DIR, default ./build)
set -euo pipefail
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build}")
SOCK=$BUILD_DIR/podman.sock
PIDFILE=$BUILD_DIR/podman-service.pid
LOG=$BUILD_DIR/podman-service.log

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case ${1:-} in
start)
    mkdir -p "$BUILD_DIR"
    if running; then echo "podman service already running (pid $(cat "$PIDFILE"))"; exit 0; fi
    rm -f "$SOCK"
    # from the build dir: conmon writes an `oom` file into its working directory when the
    # kernel's OOM killer acts in a container (the memory limit tests), which is the service's
    (cd "$BUILD_DIR" && exec podman --runtime runc system service --time=0 "unix://$SOCK") >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 100); do
        if [[ -S $SOCK ]] && curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
            echo "podman service on $SOCK (pid $(cat "$PIDFILE"))"; exit 0
        fi
        running || { cat "$LOG" >&2; exit 1; }
        sleep 0.1
    done
    echo "podman service did not come up; log:" >&2; cat "$LOG" >&2; exit 1
    ;;
stop)
    if running; then
        pid=$(cat "$PIDFILE"); kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        echo "podman service stopped"
    fi
    rm -f "$PIDFILE" "$SOCK"
    ;;
status) running && echo "running on $SOCK" || { echo "not running"; exit 1; } ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
