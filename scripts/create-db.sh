#!/usr/bin/env bash
# Create the database named in DATABASE_URL if it does not exist (local `make run`).
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL is not set}"
db="${DATABASE_URL##*/}"; db="${db%%\?*}"
admin="${DATABASE_URL%/*}/postgres"
if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$admin" -qc "CREATE DATABASE \"$db\""
  echo "created database $db"
fi
