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

# The alert-rule tests run Prometheus's promtool. Debian's `prometheus` package ships it: only that
# binary is taken from the package (into the virtualenv), so no Prometheus server is installed or started.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  [ -x "$VENV/bin/promtool" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "promtool not found and apt is not available: install Prometheus's promtool on PATH" >&2
    return 0  # the alert tests fail and say so
  fi
  local tmp
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    # A fresh machine may not have the package lists yet.
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || true
  fi
  if dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb 2>/dev/null | tar -x -C "$tmp" ./usr/bin/promtool 2>/dev/null \
    && install -m 0755 "$tmp/usr/bin/promtool" "$VENV/bin/promtool"; then
    echo "installed promtool from the Debian package 'prometheus' into $VENV/bin"
  else
    echo "could not fetch promtool from the Debian package 'prometheus'; the alert tests will fail" >&2
  fi
  rm -rf "$tmp"
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
    ensure_promtool
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
