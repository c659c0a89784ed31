#!/usr/bin/env bash
# One command from a fresh clone to the course: creates .venv, installs everything (torch: the CPU
# build on Linux without an NVIDIA GPU), builds the student notebooks, checks the machine and opens
# JupyterLab on notebooks/00_start_here.ipynb. The steps live in course_lib/setup.py, which Windows
# users without bash run directly: python -m course_lib.setup
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
exec "$PYTHON" -m course_lib.setup "$@"
