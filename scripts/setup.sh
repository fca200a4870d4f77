#!/usr/bin/env bash
# Set up a development environment from a fresh clone: system packages (when
# missing and we may install them), a virtualenv in .venv, and the project.
#   scripts/setup.sh          what the demo needs (graphviz's dot)
#   scripts/setup.sh --dev    plus what the tests need (chromium, redis-server)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
if [ "$dev" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
  else
    echo "missing system packages: ${need[*]} (install them with your package manager," \
         "e.g. 'sudo apt-get install ${need[*]}' or 'conda env create -f environment.yml')" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=demo
[ "$dev" = 1 ] && extras=dev
stamp=.venv/.installed-$extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  # build matplotlib's font cache now, not in the middle of a notebook's output
  .venv/bin/python -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot" 2>/dev/null || true
  touch "$stamp"
fi
