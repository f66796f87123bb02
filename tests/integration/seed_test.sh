#!/usr/bin/env bash
# Runs the NestJS tutorial's client (seed_client.js) against the default
# config, etc/switchboard.ini. The copy made here changes nothing but the
# plugin file's folder, so that whichever build runs the test serves its own
# plugin; the port (3000) and path (/) are the default config's own.
#   seed_test.sh SWITCHBOARD PLUGIN_DIR NODE_MODULES DEFAULT_INI
set -euo pipefail
bin=$1 plugins=$2 modules=$3 ini=$4
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$modules/ws" ]; then
  echo "the npm 'ws' package is missing in $modules (scripts/test installs it)" >&2
  exit 1
fi
tmp=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
sed "s|^file = ../build/plugins/|file = $plugins/|" "$ini" >"$tmp/switchboard.ini"
grep -q "^file = $plugins/nest-example.so" "$tmp/switchboard.ini"

# shellcheck disable=SC2086
${SB_TEST_WRAPPER:-} "$bin" -c "$tmp/switchboard.ini" 2>"$tmp/log" &
server=$!
# Ready when our own server says it listens (another process on port 3000
# would answer a mere connect).
for _ in $(seq 1 300); do
  grep -q "listening on" "$tmp/log" && break
  kill -0 "$server" 2>/dev/null || {
    echo "the server did not start (is port 3000 taken?)" >&2
    cat "$tmp/log" >&2
    exit 1
  }
  sleep 0.1
done
NODE_PATH=$modules node "$here/seed_client.js"
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=""
grep -q "Client connected" "$tmp/log" && grep -q "Client disconnected" "$tmp/log" ||
  { echo "connect/disconnect hooks did not log" >&2; cat "$tmp/log" >&2; exit 1; }
if [ "$status" -ne 0 ]; then
  echo "server exited with $status" >&2
  cat "$tmp/log" >&2
  exit 1
fi
