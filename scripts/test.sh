#!/usr/bin/env bash
# Runs the whole dfwatch test suite with the venv's pytest; arguments go to pytest
# (e.g. scripts/test.sh -k protocol -x).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test.sh: no .venv here; run scripts/setup.sh first" >&2; exit 1; }
exec .venv/bin/python -m pytest "$@"
