#!/usr/bin/env bash
# The workers benchmark (issue 14): the identity echo of nest-example
# (94-byte messages, BENCH_CONNS connections, 1 and 16 in flight) against
#   1. one process (workers = 1, no master: today's path),
#   2. workers = 2 under a master, joined by a private Redis,
# and prints a Markdown table: messages per second, the CPU the server's
# processes used while measured (master and workers, read from /proc), the
# messages per CPU-second, and how the connections spread over the workers
# (switchboard_connections_total of the admin listener: under workers the
# master's, one sample per worker label).
# Nothing is pinned: two workers need both cores, and the load generator
# shares them, so on a 2-core machine the messages per second cannot show
# scaling; the cost per message (msgs per CPU-second) can.
#
#   tests/bench/workers.sh [BUILD_DIR]
# Environment: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONNS (100).
set -euo pipefail

BUILD=$(cd "${1:-build}" && pwd)
SB=${BENCH_SB:-$BUILD/core/switchboard}
LG=$BUILD/tests/bench/sb_loadgen
PLUGINS=$BUILD/plugins
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-100}
DATA=$(printf 'x%.0s' $(seq 64))
MESSAGE="{\"event\":\"identity\",\"data\":\"$DATA\"}"
TCK=$(getconf CLK_TCK)

command -v redis-server >/dev/null || { echo "workers.sh: redis-server missing" >&2; exit 77; }

T=$(mktemp -d /tmp/sb-wbench-XXXXXX)
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

# N consecutive free ports below the ephemeral range (the master's admin
# port and worker k's, port + k), where the load generator's own
# connections cannot take them.
free_ports_low() {
    python3 -c '
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    p = random.randrange(20000, 30000)
    try:
        socks = []
        for k in range(n):
            s = socket.socket(); s.bind(("127.0.0.1", p + k)); socks.append(s)
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
' "$1"
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "workers.sh: nothing listens on $1" >&2
    return 1
}

redis-server --port 0 --unixsocket "$T/r.sock" --save "" --appendonly no \
    --dir "$T" >"$T/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do [[ -S $T/r.sock ]] && break; sleep 0.05; done

# start NAME WORKERS: sets SRV_PID, PORT, ADMIN.
start() {
    PORT=$(free_port)
    ADMIN=$(free_ports_low $(($2 + 1)))
    local cl=""
    if (($2 > 1)); then cl="[cluster]
redis = unix:$T/r.sock"; fi
    cat >"$T/$1.ini" <<INI
[server]
host = 127.0.0.1
port = $PORT
log_level = warn
workers = $2
[admin]
host = 127.0.0.1
port = $ADMIN
$cl
[plugin.nest-example]
file = $PLUGINS/nest-example.so
INI
    "$SB" -c "$T/$1.ini" >"$T/$1.log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_port "$PORT"
    sleep 0.5
}

# The CPU ticks of the server: the process and its children (workers).
ticks() {
    local sum=0 p
    for p in $SRV_PID $(ps -o pid= --ppid "$SRV_PID"); do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$sum"
}

# run LABEL INFLIGHT: prints "msgs_per_s cpu_cores".
run() {
    "$LG" echo --port "$PORT" --conns "$CONNS" --inflight "$2" \
        --message "$MESSAGE" --expect "$MESSAGE" --duration "$DURATION" \
        --warmup "$WARMUP" --label "$1" >"$T/$1.txt" 2>&1 &
    local lg=$!
    sleep "$WARMUP"
    local t0 c0 t1 c1
    t0=$(date +%s.%N); c0=$(ticks)
    wait "$lg" || true
    t1=$(date +%s.%N); c1=$(ticks)
    local line
    line=$(grep '^mode=echo' "$T/$1.txt") || { cat "$T/$1.txt" >&2; return 1; }
    local rate
    rate=$(sed -E 's/.* msgs_per_s=([0-9.]+).*/\1/' <<<"$line")
    awk -v r="$rate" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$TCK" \
        'BEGIN { printf "%d %.2f\n", r, (c1 - c0) / hz / (t1 - t0) }'
}

# The connections each worker accepted: the admin listener's counter, one
# sample per worker under a master.
spread() {
    curl -s "http://127.0.0.1:$ADMIN/metrics" |
        awk '/^switchboard_connections_total/ {printf "%s%s", sep, $2; sep = " "} END {print ""}'
}

per() { awk -v d="$1" -v c="$2" 'BEGIN{ if (c > 0) printf "%d", d/c; else print "-" }'; }

ROWS=""
for W in 1 2; do
    start "w$W" "$W"
    for P in 1 16; do
        echo "workers=$W inflight=$P..." >&2
        read -r rate cpu < <(run "w$W-p$P" "$P")
        ROWS+="| $W | $CONNS x $P | $rate | $cpu | $(per "$rate" "$cpu") |
"
    done
    SPREAD[$W]=$(spread)
    kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true
done

cat <<TABLE

| workers | conns x in flight | msgs/s | server CPU (cores) | msgs per CPU-second |
|---|---|---|---|---|
$ROWS
Connections accepted per worker over the runs: 1 worker: ${SPREAD[1]}; 2 workers: ${SPREAD[2]}.
TABLE
