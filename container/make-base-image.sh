#!/bin/sh
# Build a Debian 12 (bookworm) base image with Python 3.11 from Debian's own
# packages, for machines that cannot pull from a container registry.
#
#   container/make-base-image.sh [TAG]        # default TAG: appliance-base:bookworm
#
# It runs debootstrap (minbase + python3, python3-venv, ca-certificates) into a
# scratch directory and imports the tree with `docker import`.  The result
# (about 40 s, ~290 MB, Python 3.11.2) is what the Dockerfile's BASE_IMAGE
# build argument accepts in place of python:3.11-slim-bookworm:
#
#   python run.py docker build --base-image appliance-base:bookworm
#
# Idempotent: if TAG already exists it is kept (FORCE=1 rebuilds it).
# Environment:
#   DEBIAN_MIRROR   mirror URI (default: the first bookworm URI in the machine's apt sources,
#                   else http://deb.debian.org/debian)
#   SUITE           default bookworm
#   FORCE=1         rebuild even if TAG exists
# Needs root (debootstrap) and a running Docker engine (container/ensure-docker.sh).
set -eu

TAG=${1:-appliance-base:bookworm}
SUITE=${SUITE:-bookworm}
log() { printf 'make-base-image: %s\n' "$*" >&2; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG already exists (FORCE=1 rebuilds it)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "debootstrap needs root"
    exit 2
fi
command -v debootstrap >/dev/null 2>&1 || { log "debootstrap is missing (container/ensure-docker.sh installs it)"; exit 2; }

mirror_from_apt() {
    # deb822 sources: the URIs line of the stanza whose Suites include $SUITE
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (uri != "" && has) { print uri; exit } uri=""; has=0; next }
            /^URIs:/   { uri=$2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has=1 }
            END { if (uri != "" && has) print uri }' "$f" | grep -v security | head -n 1
    done
    # one-line sources
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { u=$2; if (u ~ /^\[/) u=$3; print u }' "$f"
    done
}
MIRROR=${DEBIAN_MIRROR:-$(mirror_from_apt | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

ROOTFS=$(mktemp -d /tmp/appliance-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT INT TERM

log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
        log "debootstrap failed; last lines of its log:"; tail -n 20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# Trim what an image never needs: package caches, lists, docs, man pages, locales.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/* "$ROOTFS"/var/cache/debconf/*-old
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

log "importing as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $SUITE minbase + python3 from $MIRROR" \
    - "$TAG" >/dev/null
docker image inspect --format "make-base-image: $TAG {{.Id}} {{.Size}} bytes" "$TAG" >&2
docker run --rm "$TAG" python3 --version >&2
