#!/bin/sh
# Regenerate container/requirements.lock from pyproject.toml's [project].dependencies.
#
#   container/lock.sh [extra uv arguments, e.g. --upgrade-package astropy]
#   container/lock.sh --release 2.0.1 [extra uv arguments]
#
# --release V locks another supported release (container/releases/V/pin.toml) into
# container/releases/V/requirements.lock: the same dependencies with jwst pinned to
# V, resolved with uv's --exclude-newer at the pin's exclude_newer date, so the
# release gets the dependencies of its own time (a newer astropy or gwcs has
# broken pinned jwst releases before).
#
# The lock is made for the image's interpreter (CPython 3.11.2 of Debian 12,
# manylinux_2_28 x86_64), not the host's: resolving on a newer 3.11.x can pick a
# release that refuses 3.11.2.  Every distribution is pinned with --hash lines;
# the image installs it with `pip install --require-hashes --no-deps` and the host
# venv with `pip install --require-hashes -r container/requirements.lock`.
# uv ignores pip's configuration (find-links, extra indexes, constraints), so the
# result depends only on PyPI.  uv itself is installed into a scratch venv if it
# is not on PATH (UV=/path/to/uv picks one).
set -eu
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
if [ -z "${UV:-}" ]; then
    if command -v uv >/dev/null 2>&1; then
        UV=uv
    else
        venv=${TMPDIR:-/tmp}/appliance-uv-$UV_VERSION
        if [ ! -x "$venv/bin/uv" ]; then
            python3 -m venv "$venv"
            PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= PIP_EXTRA_INDEX_URL= \
                "$venv/bin/pip" install -q "uv==$UV_VERSION"
        fi
        UV=$venv/bin/uv
    fi
fi

if [ "${1:-}" = --release ]; then
    release=${2:?--release needs a version, e.g. --release 2.0.1}
    shift 2
    dir=container/releases/$release
    [ -f "$dir/pin.toml" ] || { echo "lock.sh: $dir/pin.toml is missing (see docs/releases.md)" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The release's requirements: pyproject's dependencies, with jwst pinned to the release.
    python3 - "$dir/pin.toml" "$tmp/requirements.in" <<'PY'
import re, sys, tomllib
pin = tomllib.load(open(sys.argv[1], "rb"))
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
lines = [f"jwst=={pin['jwst']}" if re.match(r"jwst\b", d) else d for d in deps]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
    cutoff=$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['exclude_newer'])" "$dir/pin.toml")
    "$UV" pip compile "$tmp/requirements.in" \
        --generate-hashes \
        --no-annotate \
        --python-version 3.11.2 \
        --python-platform x86_64-manylinux_2_28 \
        --exclude-newer "${cutoff}T00:00:00Z" \
        --custom-compile-command "container/lock.sh --release $release" \
        --output-file "$dir/requirements.lock" \
        "$@" >/dev/null
    lock=$dir/requirements.lock
else
    "$UV" pip compile pyproject.toml \
        --generate-hashes \
        --python-version 3.11.2 \
        --python-platform x86_64-manylinux_2_28 \
        --custom-compile-command "container/lock.sh" \
        --output-file container/requirements.lock \
        "$@" >/dev/null
    lock=container/requirements.lock
fi
echo "$lock: $(grep -c '==' "$lock") distributions, sha256 $(sha256sum "$lock" | cut -c1-16)…" >&2
