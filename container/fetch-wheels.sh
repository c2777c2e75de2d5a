#!/bin/sh
# Download every wheel of container/requirements.lock into a wheelhouse on the host,
# so the image builds with no network (`pip install --no-index --find-links`).
#
#   container/fetch-wheels.sh [DIR]          # default DIR: container/wheels (git-ignored)
#   LOCK=container/releases/2.0.1/requirements.lock container/fetch-wheels.sh container/releases/2.0.1/wheels
#
# `python run.py docker build` runs this itself when the wheelhouse is incomplete.
# WHEELS_INDEX_URL names another index (default PyPI).
#
# Hashes are checked on download (--require-hashes) and again in the image.
# The machine's pip configuration (local find-links, extra indexes, a constraints
# file) is ignored on purpose: the wheelhouse must hold exactly the locked files
# from PyPI.  Wheels only, for CPython 3.11 / manylinux_2_28 x86_64 (the image's
# platform), whatever the host runs.  Wheels already present (with a locked hash) are
# not fetched again; wheels the lock no longer names are removed.
set -eu
cd "$(dirname "$0")/.."

LOCK=${LOCK:-container/requirements.lock}
DIR=${1:-container/wheels}
PYTHON=${PYTHON:-python3}
[ -f "$LOCK" ] || { echo "fetch-wheels: $LOCK is missing (container/lock.sh makes it)" >&2; exit 2; }
mkdir -p "$DIR"

# Independent of the machine's pip configuration; keep only the CA bundle setting.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT PIP_REQUIREMENT PIP_NO_INDEX PIP_PREFER_BINARY 2>/dev/null || true
[ -n "${PIP_CERT:-}" ] || { [ -f /etc/ssl/certs/ca-certificates.crt ] && export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; } || true

# One pass over the lock: drop wheels it no longer names or whose hash it does not list,
# and say whether every pin already has its wheel (then pip is not asked at all).
check() {
    "$PYTHON" - "$LOCK" "$DIR" <<'PY'
import hashlib, re, sys
from pathlib import Path
lock, wheels = Path(sys.argv[1]), Path(sys.argv[2])
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
pins = {}
for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
    m = re.match(r"([A-Za-z0-9_.-]+)==([^\s;\\]+)", block)
    if m:
        pins[(norm(m[1]), m[2])] = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
have = set()
for whl in sorted(wheels.glob("*.whl")):
    key = tuple([norm(whl.name.split("-")[0]), whl.name.split("-")[1]])
    if key not in pins or hashlib.sha256(whl.read_bytes()).hexdigest() not in pins[key]:
        whl.unlink()
        print(f"fetch-wheels: removed {whl.name} (not in the lock, or another hash)", file=sys.stderr)
    else:
        have.add(key)
sys.exit(0 if have == set(pins) else 1)
PY
}

if ! check; then
    "$PYTHON" -m pip download -q --index-url "${WHEELS_INDEX_URL:-https://pypi.org/simple}" \
        --require-hashes --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64 \
        --platform manylinux1_x86_64 --platform linux_x86_64 \
        -r "$LOCK" -d "$DIR"
    check || { echo "fetch-wheels: the wheelhouse is still incomplete" >&2; exit 1; }
fi
echo "fetch-wheels: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR" >&2
