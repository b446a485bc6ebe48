#!/usr/bin/env bash
# Installs dfwatch as a systemd service running from this checkout's .venv.
#   sudo scripts/install-service.sh [--config /etc/dfwatch/dfwatch.yaml] [--dry-run]
# Creates the 'dfwatch' system user, /etc/dfwatch/dfwatch.yaml (from configs/default.yaml, if
# missing), /etc/systemd/system/dfwatch.service, then enables and starts the service.
# Put the model bundle where the service user can read it (e.g. /var/lib/dfwatch/bundle) and set
# model.bundle and streams in the configuration first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONFIG=/etc/dfwatch/dfwatch.yaml
DRY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "install-service.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
DFWATCH=$ROOT/.venv/bin/dfwatch
UNIT=/etc/systemd/system/dfwatch.service
run() { if [ -n "$DRY" ]; then echo "+ $*"; else "$@"; fi; }

[ -x "$DFWATCH" ] || { echo "install-service.sh: $DFWATCH missing; run scripts/setup.sh first" >&2; exit 1; }
[ -n "$DRY" ] || [ "$(id -u)" = 0 ] || { echo "install-service.sh: run as root (sudo)" >&2; exit 1; }
command -v systemctl >/dev/null || { echo "install-service.sh: systemctl not found: this needs systemd" >&2; exit 1; }

id dfwatch >/dev/null 2>&1 || run useradd --system --no-create-home --home-dir /var/lib/dfwatch \
  --shell /usr/sbin/nologin dfwatch
for g in video render; do getent group "$g" >/dev/null && run usermod -aG "$g" dfwatch; done
run install -d -m 0755 "$(dirname "$CONFIG")"
if [ ! -f "$CONFIG" ]; then  # the service's sockets live in its RuntimeDirectory, /run/dfwatch
  if [ -n "$DRY" ]; then echo "+ write $CONFIG from configs/default.yaml with endpoints.runtime_dir: /run/dfwatch"
  else sed 's|^  runtime_dir: null |  runtime_dir: /run/dfwatch |' configs/default.yaml > "$CONFIG"; chmod 0644 "$CONFIG"; fi
fi
unit=$(sed -e "s|@DFWATCH@|$DFWATCH|" -e "s|@CONFIG@|$CONFIG|" scripts/systemd/dfwatch.service)
if [ -n "$DRY" ]; then echo "+ write $UNIT:"; echo "$unit"; else echo "$unit" > "$UNIT"; fi
run "$DFWATCH" config check "$CONFIG" >/dev/null
run systemctl daemon-reload
run systemctl enable --now dfwatch.service
echo "install-service.sh: installed; follow it with: journalctl -u dfwatch -f"
echo "  verdicts: $DFWATCH watch --config $CONFIG   (as root or a member of group dfwatch)"
