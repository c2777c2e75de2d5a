#!/usr/bin/env bash
# One-command set-up for a fresh machine (only Python 3.11+ and this repo needed):
#   ./dev.sh demo    create .venv from the hash-locked dependencies, then run the demo recipe offline
#   ./dev.sh test    the same set-up, then the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv
LOCK=container/requirements.lock

setup() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.installed-$(cat pyproject.toml "$LOCK" 2>/dev/null | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  # The lock pins every distribution by hash, so the host venv runs exactly what the image runs.
  # PIP_CONFIG_FILE=/dev/null keeps a machine's own find-links and constraints out of it.
  export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
  unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL || true
  if [ -f "$LOCK" ]; then
    "$VENV/bin/pip" install -q --require-hashes --no-deps -r "$LOCK"
    "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . 2>/dev/null \
      || "$VENV/bin/pip" install -q --no-deps -e .
    "$VENV/bin/pip" install -q "pytest>=8.0" "moto[server]>=5.0"  # test tools, not part of the image
  else
    "$VENV/bin/pip" install -q -e ".[test]"
  fi
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/python" run.py run recipes/demo.toml --workdir "${WORKDIR:-work/demo}" "$@" ;;
  test)
    setup
    exec "$VENV/bin/python" -m pytest "$@" ;;
  setup)
    setup ;;
  *)
    echo "usage: ./dev.sh demo | test [pytest args] | setup" >&2
    exit 2 ;;
esac
