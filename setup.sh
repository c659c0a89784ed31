#!/usr/bin/env bash
# One command from a fresh clone to the course: creates .venv, installs everything, builds the
# student notebooks, checks the machine and opens JupyterLab on notebooks/00_start_here.ipynb.
#   bash setup.sh            set up (or update) and start JupyterLab
#   bash setup.sh --no-lab   set up only (what CI does)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup.sh needs Python 3.10 or newer (3.11 recommended); found: $("$PYTHON" --version 2>&1 || echo none)." >&2
  echo "Install it, or point PYTHON at it: PYTHON=python3.11 bash setup.sh" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating the virtual environment .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing the course and its dependencies (torch is pinned to the 2.13.0 wheel)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

echo "==> building the student notebooks from solutions/"
.venv/bin/course build-notebooks

echo "==> checking this machine"
.venv/bin/course check || echo "(course check found problems: see above)"

if [ "${1:-}" != "--no-lab" ]; then
  echo "==> starting JupyterLab (Ctrl-C to stop)"
  exec .venv/bin/course lab
fi
