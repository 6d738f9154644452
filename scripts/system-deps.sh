#!/usr/bin/env bash
# System packages the test suite needs beyond Python: installed only when missing.
# PostgreSQL and Mosquitto are expected (the README's prerequisites); the rest is installed here.
set -euo pipefail
need=()
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v dot >/dev/null || need+=(graphviz)
command -v chromium >/dev/null || need+=(chromium chromium-driver)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
# Docker Compose v2 binary into .venv for the compose.yaml checks (a no-op once there).
bash "$(dirname "$0")/install-compose.sh"
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's prometheus package starts a daemon on :9090; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
pkill -x prometheus 2>/dev/null || true
pkill -f prometheus-node-exporter 2>/dev/null || true
