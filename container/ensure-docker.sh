#!/bin/sh
# Make sure a Docker engine is installed and running, idempotently.
#
#   container/ensure-docker.sh            # install docker.io + debootstrap if missing, start dockerd, wait
#
# Safe to run again and again: it installs nothing that is present and starts
# dockerd only when `docker info` does not answer.  Needs root for the install
# and start steps (CI runs as root); a user who already has a daemon needs nothing.
# Environment:
#   DOCKERD_LOG      where dockerd's output goes (default /var/log/dockerd.log)
#   DOCKER_WAIT_S    seconds to wait for `docker info` (default 60)
set -eu

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKER_WAIT_S=${DOCKER_WAIT_S:-60}

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing:$missing and not root; install them or run as root"
        exit 2
    fi
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if docker info >/dev/null 2>&1; then
    log "docker engine is running"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix:///var/run/docker.sock}" = "${DOCKER_HOST}" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for it"
    exit 2
fi

if [ "$(id -u)" -ne 0 ]; then
    log "no Docker daemon answers and only root can start one here"
    exit 2
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: the daemon must outlive this script and the CI step that called it.
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
fi

i=0
while ! docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt "$DOCKER_WAIT_S" ]; then
        log "dockerd did not answer within ${DOCKER_WAIT_S}s; last lines of $DOCKERD_LOG:"
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 1
done
log "docker engine is running"
