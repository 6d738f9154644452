#!/bin/sh
# Health check of the `broker` service: log in (as the `healthcheck` user the entrypoint made
# with a random password) and read a $SYS topic. Proves the listener, authentication and ACLs
# work, not only that a port is open.
set -eu
run_dir="${BROKER_RUN_DIR:-/mosquitto/run}"
exec mosquitto_sub -h "${BROKER_HEALTH_HOST:-127.0.0.1}" -p "${BROKER_HEALTH_PORT:-1883}" \
  -u healthcheck -P "$(cat "$run_dir/healthcheck")" \
  -t '$SYS/broker/uptime' -C 1 -W 5 -q 0
