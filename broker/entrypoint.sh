#!/bin/sh
# Entry point of the `broker` service: build Mosquitto's password and ACL files from the
# environment (or Docker secrets), then exec mosquitto (or the command given as arguments).
#
# Nothing secret is stored in the image or the repository: the files are written at every start
# into BROKER_RUN_DIR (a tmpfs in compose.yaml), so changing a password in .env and restarting
# the broker is the whole rotation procedure.
#
# Inputs (each *_PASSWORD may also come from a file named by *_PASSWORD_FILE, e.g. a secret):
#   MQTT_INGESTOR_PASSWORD, MQTT_SCORER_PASSWORD, MQTT_API_PASSWORD, MQTT_ALERTS_PASSWORD
#                            pipeline users (required)
#   MQTT_SIMULATOR_PASSWORD  the demo simulator's user; empty = no simulator user
#   MQTT_DEVICES             device credentials, "user:password" separated by spaces or newlines
#   MQTT_DEVICES_FILE        a file of "user:password" lines ("#" comments); default
#                            /mosquitto/secrets/devices when it exists
#   BROKER_CONFIG_DIR        where mosquitto.conf, acl and acl.d/ are (/mosquitto/config)
#   BROKER_RUN_DIR           where passwd, acl and healthcheck are written (/mosquitto/run)
set -eu

config_dir="${BROKER_CONFIG_DIR:-/mosquitto/config}"
run_dir="${BROKER_RUN_DIR:-/mosquitto/run}"
devices_file="${MQTT_DEVICES_FILE:-/mosquitto/secrets/devices}"

die() { echo "broker entrypoint: $*" >&2; exit 64; }

# secret NAME: the value of $NAME, or the content of the file named by $NAME_FILE.
secret() {
  eval "value=\${$1:-}"
  eval "file=\${$1_FILE:-}"
  if [ -z "$value" ] && [ -n "$file" ]; then
    [ -r "$file" ] || die "$1_FILE=$file is not readable"
    value="$(cat "$file")"
  fi
  printf '%s' "$value"
}

# The same rule as a sensor id (core/topics.py): user names end up in topic names via %u.
valid_user() {
  printf '%s' "$1" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
}

umask 077
mkdir -p "$run_dir"
passwd="$run_dir/passwd.new"
names="$run_dir/users.new"
: > "$passwd"
: > "$names"

add_user() {  # add_user USER PASSWORD
  valid_user "$1" || die "invalid MQTT user name '$1' (must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\$)"
  [ -n "$2" ] || die "empty password for MQTT user '$1'"
  if grep -qxF -- "$1" "$names"; then die "MQTT user '$1' is defined twice"; fi
  printf '%s\n' "$1" >> "$names"
  # -b takes the password as an argument: any character works (the -U batch format would cut
  # it at a ':'). Only processes of this container could see it, for the instant it runs.
  mosquitto_passwd -b "$passwd" "$1" "$2"
}

for role in ingestor scorer api alerts; do
  var="MQTT_$(echo "$role" | tr 'a-z' 'A-Z')_PASSWORD"
  pw="$(secret "$var")"
  [ -n "$pw" ] || die "$var is not set (set it in .env, see .env.example)"
  add_user "$role" "$pw"
done
sim_pw="$(secret MQTT_SIMULATOR_PASSWORD)"
if [ -n "$sim_pw" ]; then add_user simulator "$sim_pw"; fi

# A random password for the health check user, readable by the health check only.
hc_pw="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
add_user healthcheck "$hc_pw"
printf '%s' "$hc_pw" > "$run_dir/healthcheck"

add_devices() {  # reads "user:password" lines on stdin
  while IFS= read -r line || [ -n "$line" ]; do
    line="$(printf '%s' "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')"
    case "$line" in ''|'#'*) continue ;; esac
    case "$line" in *:*) ;; *) die "device entry without ':' (expected user:password)" ;; esac
    add_user "${line%%:*}" "${line#*:}"
  done
}
if [ -n "${MQTT_DEVICES:-}" ]; then
  printf '%s\n' "$MQTT_DEVICES" | tr ' \t' '\n\n' | add_devices
fi
if [ -r "$devices_file" ]; then
  add_devices < "$devices_file"
fi

mv "$passwd" "$run_dir/passwd"
rm -f "$names"

cp "$config_dir/acl" "$run_dir/acl"
for extra in "$config_dir"/acl.d/*.acl; do
  [ -e "$extra" ] || continue
  printf '\n# --- %s\n' "$(basename "$extra")" >> "$run_dir/acl"
  cat "$extra" >> "$run_dir/acl"
done

# Started as root, mosquitto drops to its own user: let it read the files and write its store.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$run_dir" "$run_dir/passwd" "$run_dir/acl" "$run_dir/healthcheck"
  if [ -d /mosquitto/data ]; then chown -R mosquitto:mosquitto /mosquitto/data; fi
fi
chmod 0600 "$run_dir/passwd" "$run_dir/acl"
chmod 0644 "$run_dir/healthcheck"

users="$(cut -d: -f1 "$run_dir/passwd" | tr '\n' ' ')"
echo "broker entrypoint: $(wc -l < "$run_dir/passwd" | tr -d ' ') MQTT users: $users" >&2

if [ "$#" -eq 0 ]; then
  set -- mosquitto -c "$config_dir/mosquitto.conf"
fi
exec "$@"
