#!/usr/bin/env bash
# Unpacks the Triton Inference Server of the nvidia-pytriton wheel (a real `tritonserver` with its
# Python backend; CPU) into DIR, with the small Python environment its backend runs model.py in
# (numpy < 2 and onnxruntime: the backend returns empty outputs with numpy 2).
#   scripts/install-triton.sh [DIR]    # default: .cache/tritonserver of this checkout
# Then 'dfwatch serve-models BUNDLE' finds it (elsewhere: DFWATCH_TRITONSERVER_DIR=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-$PWD/.cache/tritonserver}
WHEEL="nvidia-pytriton==0.7.0"
PY=${DFWATCH_PYTHON:-$PWD/.venv/bin/python}
BASE=$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3
[ -x "$DIR/pytriton/tritonserver/bin/tritonserver" ] && [ -x "$DIR/python/bin/python" ] && exit 0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps "$WHEEL" -d "$tmp" 2>&1 | grep -v "is ignored" || true
mkdir -p "$DIR"
"$PY" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for m in z.infolist():
    if m.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
        path = z.extract(m, sys.argv[2])
        if m.external_attr >> 16 & 0o111:
            import os; os.chmod(path, 0o755)' "$tmp"/nvidia_pytriton-*.whl "$DIR"
"$BASE" -m venv "$DIR/python"
"$DIR/python/bin/python" -m pip install -q --disable-pip-version-check "numpy<2" onnxruntime 2>&1 | grep -v "is ignored" || true
"$DIR/python/bin/python" -c "import numpy, onnxruntime" || { echo "install-triton.sh: the backend environment did not install" >&2; exit 1; }
echo "install-triton.sh: tritonserver and its Python backend environment in $DIR"
