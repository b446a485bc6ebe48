#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the bundle's TensorRT engines (FP16), check them against
# torch (max error <= 1e-2 of max|torch|) and print throughput per part and batch size.
#   scripts/gpu-check.sh [BUNDLE]     (needs: scripts/setup.sh, then .venv/bin/pip install -e '.[gpu]')
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "gpu-check.sh: no .venv here; run scripts/setup.sh first" >&2; exit 1; }
exec .venv/bin/python -m daemon.benchmarks.gpu_check "$@"
