#!/usr/bin/env bash
# Benchmarks (writes results.json and results.md into --out DIR, default ~/.cache/dfwatch/bench):
#   scripts/bench.sh --quick     # about 5 minutes: stages + 1 stream per model family end to end
#   scripts/bench.sh             # full: stages + 1, 2 and 4 streams per family end to end (about 20 minutes)
# Run it on an idle machine: other processes slow every stage 2-5x.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/dfwatch ] || { echo "bench.sh: no .venv here; run scripts/setup.sh first" >&2; exit 1; }
exec .venv/bin/dfwatch bench "$@"
