#!/usr/bin/env bash
# Installs dfwatch as a systemd service running from this checkout's .venv:
#   sudo scripts/install-service.sh [--config /etc/dfwatch/dfwatch.yaml] [--dry-run]
# The same as `sudo .venv/bin/dfwatch service install ...` (daemon/service/install.py), which a
# pip-installed dfwatch runs as `sudo dfwatch service install`.
set -euo pipefail
cd "$(dirname "$0")/.."
DFWATCH=$PWD/.venv/bin/dfwatch
[ -x "$DFWATCH" ] || { echo "install-service.sh: $DFWATCH missing; run scripts/setup.sh first" >&2; exit 1; }
exec "$DFWATCH" service install "$@"
