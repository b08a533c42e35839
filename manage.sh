#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./manage.sh run    create the virtualenv if needed, then run the main job (`syncworker run`)
#   ./manage.sh test   create the virtualenv if needed, then lint, type-check and run the test suite
set -euo pipefail

cd "$(dirname "$0")"
VENV="${SYNCWORKER_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
  local extras="$1" stamp
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "syncworker needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # Reinstall only when the dependency list changed (or the extras asked for did).
  stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras:-base}"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
    touch "$stamp"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  run)
    ensure_venv ""
    exec "$VENV/bin/syncworker" run "$@"
    ;;
  test)
    ensure_venv dev
    echo "== ruff check"; "$VENV/bin/ruff" check .
    echo "== ruff format --check"; "$VENV/bin/ruff" format --check .
    echo "== mypy (strict on worker/ and tasks/)"; "$VENV/bin/mypy" worker tasks models
    echo "== pytest"
    set +e
    "$VENV/bin/python" -m pytest "$@"
    status=$?
    set -e
    if [ "$status" -eq 5 ]; then
      echo "pytest collected no tests: that is a failure, not a pass" >&2
      exit 1
    fi
    exit "$status"
    ;;
  *)
    echo "usage: ./manage.sh run|test [args...]" >&2
    exit 2
    ;;
esac
