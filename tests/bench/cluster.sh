#!/usr/bin/env bash
# The cluster benchmark (issue 12): broadcast to BENCH_BCAST_SUBS (10,000)
# chat members
#   1. in one process (no [cluster]: today's path),
#   2. across two nodes joined by a private Redis, the members split
#      between them and the publisher on the first,
#   3. Redis alone: redis-benchmark PUBLISH of a message of the same size
#      (-P 16), the broker's own ceiling;
# and prints a Markdown table with deliveries per second and per CPU-second
# (the servers' and Redis' CPU together: on a 2-core machine two nodes
# cannot show scaling, only what the broker costs). As in run.sh, the
# servers (and Redis) run on core BENCH_SERVER_CPU (0) and the load
# generator on BENCH_LOAD_CPU (1).
#
#   tests/bench/cluster.sh [BUILD_DIR]
# Environment: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_BCAST_SUBS
# (10000), BENCH_BCAST_WINDOW (64). Needs redis-server and redis-benchmark.
set -euo pipefail

BUILD=$(cd "${1:-build}" && pwd)
SB=${BENCH_SB:-$BUILD/core/switchboard}
LG=$BUILD/tests/bench/sb_loadgen
PLUGINS=$BUILD/plugins
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
SUBS=${BENCH_BCAST_SUBS:-10000}
WINDOW=${BENCH_BCAST_WINDOW:-64}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
DATA=$(printf 'x%.0s' $(seq 64))
JOIN='{"event":"join","data":{"room":"bench"}}'
MSG="{\"event\":\"say\",\"data\":{\"room\":\"bench\",\"text\":\"$DATA\"}}"

for tool in redis-server redis-benchmark; do
    command -v $tool >/dev/null || { echo "cluster.sh: $tool missing" >&2; exit 77; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

T=$(mktemp -d /tmp/sb-cbench-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "cluster.sh: nothing listens on $1" >&2
    return 1
}

# node NAME PORT [CLUSTER_LINES]: starts switchboard with chat; sets NODE_PID.
node() {
    cat >"$T/$1.ini" <<INI
[server]
host = 127.0.0.1
port = $2
max_connections = 20000
log_level = warn
$3
[plugin.chat]
file = $PLUGINS/chat.so
INI
    taskset -c "$SERVER_CPU" "$SB" -c "$T/$1.ini" >"$T/$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_port "$2"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run LABEL ARGS...: one broadcast run; prints "deliveries_per_s cpu".
run() {
    local label=$1
    shift
    taskset -c "$LOAD_CPU" "$LG" broadcast --conns "$SUBS" --join "$JOIN" --message "$MSG" \
        --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" \
        --label "$label" "$@" >"$T/$label.txt" 2>&1 || true
    grep '^# ' "$T/$label.txt" | sed 's/^# /  /' >&2
    grep '^mode=' "$T/$label.txt" | tr ' ' '\n' |
        grep -E '^(lg_busy|srv_cpu|extra_cpu|other_cpu)=' | tr '\n' ' ' >&2
    echo >&2
    local line
    line=$(grep '^mode=broadcast' "$T/$label.txt") || {
        cat "$T/$label.txt" >&2
        return 1
    }
    local dps srv extra
    dps=$(sed -E 's/.* deliveries_per_s=([0-9.]+).*/\1/' <<<"$line")
    srv=$(sed -E 's/.* srv_cpu=([-0-9.]+).*/\1/' <<<"$line")
    extra=$(sed -E 's/.* extra_cpu=([-0-9.]+).*/\1/' <<<"$line")
    awk -v d="$dps" -v s="$srv" -v e="$extra" \
        'BEGIN { c = s + (e > 0 ? e : 0); printf "%d %.2f\n", d, c }'
}

echo "single process..." >&2
P1=$(free_port)
node single "$P1" ""
read -r single_dps single_cpu < <(run single --port "$P1" --pid "$NODE_PID")
kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true

echo "two nodes and Redis..." >&2
taskset -c "$SERVER_CPU" redis-server --port 0 --unixsocket "$T/r.sock" --save "" --appendonly no \
    --dir "$T" >"$T/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do [[ -S $T/r.sock ]] && break; sleep 0.05; done
CL="[cluster]
redis = unix:$T/r.sock"
P1=$(free_port); P2=$(free_port)
node n1 "$P1" "$CL"; N1=$NODE_PID
node n2 "$P2" "$CL"; N2=$NODE_PID
read -r cl_dps cl_cpu < <(run cluster --port "$P1" --port2 "$P2" --pid "$N1" \
    --extra-pid "$N2" --extra-pid "$REDIS_PID")

echo "redis-benchmark PUBLISH..." >&2
# The bus message of one `said` is about the frame's size.
PAYLOAD=$(printf 'p%.0s' $(seq 160))
rb=$(taskset -c "$LOAD_CPU" redis-benchmark -s "$T/r.sock" -P 16 -n 1000000 -q \
    PUBLISH sb:r:chat:nobody "$PAYLOAD" 2>/dev/null | tr '\r' '\n' |
    grep -Eo '[0-9.]+ requests per second' | tail -1 | awk '{print int($1)}')

ratio=$(awk -v a="$cl_dps" -v b="$single_dps" 'BEGIN{printf "%.2f", a/b}')
per() { awk -v d="$1" -v c="$2" 'BEGIN{ if (c > 0) printf "%d", d/c; else print "-" }'; }
cat <<TABLE

| setup | deliveries/s | CPU (cores) | deliveries per CPU-second |
|---|---|---|---|
| one process, $SUBS members | $single_dps | $single_cpu | $(per "$single_dps" "$single_cpu") |
| two nodes + Redis, members split | $cl_dps | $cl_cpu | $(per "$cl_dps" "$cl_cpu") |
| Redis alone: PUBLISH, -P 16 | ${rb:-?} publishes/s | 1 | - |

Two nodes / one process: $ratio of the deliveries per second.
TABLE
echo
