#!/usr/bin/env bash
# The cost of hot reload under load: one client load (sb_loadgen echo, 100
# connections, 1 message in flight each) runs against a plugin that is
# replaced every RELOAD_EVERY seconds by alternating two builds (SIGHUP),
# and the script reports the load's latency percentiles next to a run
# without reloads, and the longest time a reload held the loop (the
# "... ms in all" of each reload's summary line: dlopen of the new build,
# its init, the swap and the handover all run inside one loop callback).
#
# Usage: tests/bench/reload_bench.sh   (BENCH_BUILD_DIR, BENCH_DURATION=10,
#        RELOAD_EVERY=0.2, BENCH_PORT=31500, BENCH_SERVER_CPU/LOAD_CPU)
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath -m "${BENCH_BUILD_DIR:-$SRC/build}")
DURATION=${BENCH_DURATION:-10}
EVERY=${RELOAD_EVERY:-0.2}
PORT=${BENCH_PORT:-31500}
SCPU=${BENCH_SERVER_CPU:-0}
LCPU=${BENCH_LOAD_CPU:-1}
BIN=$BUILD/core/switchboard
LOADGEN=$BUILD/tests/bench/sb_loadgen
PLUGINS=$BUILD/plugins
for f in "$BIN" "$LOADGEN" "$PLUGINS/test-reload-a.so" "$PLUGINS/test-reload-b.so"; do
  [ -e "$f" ] || { echo "missing $f: build first (cmake --build $BUILD)" >&2; exit 1; }
done
OUT=$BUILD/bench
mkdir -p "$OUT"
tmp=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cp "$PLUGINS/test-reload-a.so" "$tmp/current.so"
cat >"$tmp/reload.ini" <<INI
[server]
host = 127.0.0.1
port = $PORT
log_level = info
[plugin.r]
file = current.so
INI

run() { # label reloads(0|1)
  taskset -c "$SCPU" "$BIN" -c "$tmp/reload.ini" 2>"$tmp/log" &
  server=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$tmp/log" && break; sleep 0.05; done
  local reloader=""
  if [ "$2" = 1 ]; then
    (
      build=b
      end=$((SECONDS + DURATION + 3))
      while [ $SECONDS -lt $end ]; do
        cp "$PLUGINS/test-reload-$build.so" "$tmp/next.so" && mv "$tmp/next.so" "$tmp/current.so"
        kill -HUP "$server" 2>/dev/null || exit 0
        [ $build = b ] && build=a || build=b
        sleep "$EVERY"
      done
    ) &
    reloader=$!
  fi
  local line
  line=$(taskset -c "$LCPU" "$LOADGEN" echo --port "$PORT" --conns 100 --inflight 1 \
    --message '{"event":"ask","data":1}' --duration "$DURATION" --warmup 1 2>/dev/null | grep '^mode=')
  [ -n "$reloader" ] && { kill "$reloader" 2>/dev/null || true; wait "$reloader" 2>/dev/null || true; }
  kill -TERM "$server"; wait "$server" || true
  server=""
  local reloads longest
  reloads=$(grep -c "now at generation" "$tmp/log" || true)
  longest=$(grep -o '[0-9.]* ms in all' "$tmp/log" | sort -n | tail -1 | cut -d' ' -f1)
  grep -q "disconnected" "$tmp/log" && echo "warning: a client was disconnected during $1" >&2
  echo "$1|$(echo "$line" | sed 's/.*msgs_per_s=\([0-9]*\).*p99_us=\([0-9.]*\).*p999_us=\([0-9.]*\).*max_us=\([0-9.]*\).*/\1|\2|\3|\4/')|$reloads|${longest:--}"
}

{
  echo "| run | msgs/s | p99 µs | p99.9 µs | max µs | reloads | longest reload on the loop (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for spec in "no reloads:0" "a reload every ${EVERY} s:1"; do
    r=$(run "${spec%%:*}" "${spec##*:}")
    echo "| ${r//|/ | } |"
  done
  echo
  echo "$(nproc) cores; server on core $SCPU, sb_loadgen on core $LCPU; 100 connections, 1 in flight, ${DURATION} s; $(date -u '+%Y-%m-%d %H:%M UTC')."
} | tee "$OUT/reload.md"
