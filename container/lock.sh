#!/bin/sh
# Regenerate container/requirements.lock from pyproject.toml's [project].dependencies.
#
#   container/lock.sh [extra uv arguments, e.g. --upgrade-package astropy]
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

"$UV" pip compile pyproject.toml \
    --generate-hashes \
    --python-version 3.11.2 \
    --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "container/lock.sh" \
    --output-file container/requirements.lock \
    "$@" >/dev/null
echo "container/requirements.lock: $(grep -c '==' container/requirements.lock) distributions, sha256 $(sha256sum container/requirements.lock | cut -c1-16)…" >&2
