#!/usr/bin/env bash
# Session recovery figures (issue 13), one process:
#  1. the cost of history: sb_loadgen broadcast through the chat plugin,
#     without [recovery] and with it (every room message numbered and kept);
#  2. a recovery storm: tests/bench/recovery_storm.mjs (N clients drop, M
#     messages are published, all resume at once).
# usage: tests/bench/recovery.sh [BUILD=build] — env: SUBS (2000), RUNS (3),
# DURATION (5), STORM_N (10000), STORM_M (50), PORT (18791),
# SB_NODE_MODULES (holding ws), LOADGEN (build's sb_loadgen).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
SUBS=${SUBS:-2000} RUNS=${RUNS:-3} DURATION=${DURATION:-5}
STORM_N=${STORM_N:-10000} STORM_M=${STORM_M:-50} PORT=${PORT:-18791}
LOADGEN=${LOADGEN:-$B/tests/bench/sb_loadgen}
NM=${SB_NODE_MODULES:-$B/node/node_modules}
tmp=$(mktemp -d /tmp/sb-recovery-bench.XXXX)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

start() { # start EXTRA_SECTION
    printf '[server]\nhost = 127.0.0.1\nport = %s\nlog_level = warn\nmax_connections = 15000\n[plugin.chat]\nfile = %s/plugins/chat.so\n%b' \
        "$PORT" "$B" "$1" >"$tmp/sb.ini"
    "$B/core/switchboard" -c "$tmp/sb.ini" >"$tmp/sb.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.1; done
    echo "the server did not start:" >&2; cat "$tmp/sb.log" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

text=$(printf '%064d' 0)
for run in $(seq "$RUNS"); do
    for mode in off history; do
        if [[ $mode == history ]]; then start '[recovery]\n'; else start ''; fi
        line=$("$LOADGEN" broadcast --port "$PORT" --conns "$SUBS" \
            --join '{"event":"join","data":{"room":"bench"}}' \
            --message "{\"event\":\"say\",\"data\":{\"room\":\"bench\",\"text\":\"$text\"}}" \
            --window 64 --duration "$DURATION" --warmup 1 --pid "$pid" --label "$mode")
        # Server CPU per published room message (µs), from its CPU share.
        awk -v run="$run" -v mode="$mode" '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            us = 0
            if (v["published_per_s"] > 0) us = v["srv_cpu"] * 1e6 / v["published_per_s"]
            printf "run=%s history=%s deliveries_per_s=%s published_per_s=%s srv_cpu=%s us_per_message=%.1f mismatches=%s\n", run, mode, v["deliveries_per_s"], v["published_per_s"], v["srv_cpu"], us, v["mismatches"]
        }' <<<"$(head -1 <<<"$line")"
        stop
    done
done

start '[recovery]\nhistory_size = 1000\n'
SB_NODE_MODULES=$NM node "$SRC/tests/bench/recovery_storm.mjs" "$PORT" "$pid" "$STORM_N" "$STORM_M"
echo "server_cpu_s=$(ps -o times= -p "$pid")"
stop
