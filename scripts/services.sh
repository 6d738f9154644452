#!/usr/bin/env bash
# Make sure the machine's PostgreSQL and Mosquitto answer on 127.0.0.1 (start them if not).
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p 5432 && (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && exit 0
  sleep 0.2
done
echo "PostgreSQL or Mosquitto did not come up" >&2
exit 1
