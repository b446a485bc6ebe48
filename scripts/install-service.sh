#!/usr/bin/env bash
# Installs dfwatch as a systemd service running from this checkout's .venv.
#   sudo scripts/install-service.sh [--config /etc/dfwatch/dfwatch.yaml] [--dry-run]
# Creates the 'dfwatch' system user (in groups video and render where they exist),
# /etc/dfwatch/dfwatch.yaml (from configs/default.yaml if missing; always 0640 root:dfwatch),
# /usr/share/doc/dfwatch, /etc/systemd/system/dfwatch.service, and enables the service. It starts
# it only once model.bundle is set in the configuration (else it says what to do).
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
# webcams (/dev/video*) and GPUs (/dev/dri/render*), where the host has these groups
for g in video render; do if getent group "$g" >/dev/null; then run usermod -aG "$g" dfwatch; fi; done
run install -d -m 0755 "$(dirname "$CONFIG")"
if [ ! -f "$CONFIG" ]; then  # the service's sockets live in its RuntimeDirectory, /run/dfwatch
  if [ -n "$DRY" ]; then echo "+ write $CONFIG from configs/default.yaml with endpoints.runtime_dir: /run/dfwatch"
  else sed 's|^  runtime_dir: null |  runtime_dir: /run/dfwatch |' configs/default.yaml > "$CONFIG"; fi
fi
# camera passwords and key paths live here: readable by root and the service only
run chown root:dfwatch "$CONFIG"
run chmod 0640 "$CONFIG"
run install -d -m 0755 /usr/share/doc/dfwatch  # what the unit's Documentation= names
run install -m 0644 README.md docs/*.md /usr/share/doc/dfwatch/
unit=$(sed -e "s|@DFWATCH@|$DFWATCH|" -e "s|@CONFIG@|$CONFIG|" scripts/systemd/dfwatch.service)
if [ -n "$DRY" ]; then echo "+ write $UNIT:"; echo "$unit"; else echo "$unit" > "$UNIT"; fi
# the shard template (docs/SCALING.md): dfwatch@NAME runs with /etc/dfwatch/NAME.yaml; not enabled here
shard=$(sed -e "s|@DFWATCH@|$DFWATCH|" scripts/systemd/dfwatch@.service)
if [ -n "$DRY" ]; then echo "+ write /etc/systemd/system/dfwatch@.service"; else echo "$shard" > /etc/systemd/system/dfwatch@.service; fi
run "$DFWATCH" config check "$CONFIG" >/dev/null
run systemctl daemon-reload
has_bundle() {  # model.bundle set in the configuration (a missing file in a dry run: not set)
  [ -f "$CONFIG" ] && "$ROOT/.venv/bin/python" -c 'import sys
from engines.config import load_config
sys.exit(0 if load_config(sys.argv[1]).model.bundle else 1)' "$CONFIG"
}
if has_bundle; then
  run systemctl enable --now dfwatch.service
  echo "install-service.sh: installed and started; follow it with: journalctl -u dfwatch -f"
else
  run systemctl enable dfwatch.service
  echo "install-service.sh: installed and enabled, NOT started: model.bundle is not set in $CONFIG."
  echo "  Put a bundle where user dfwatch can read it (e.g. /var/lib/dfwatch/bundle), set model.bundle"
  echo "  and streams in $CONFIG, then: systemctl start dfwatch"
fi
echo "  verdicts: $DFWATCH watch --config $CONFIG   (as root or a member of group dfwatch)"
