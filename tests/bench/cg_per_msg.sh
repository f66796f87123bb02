#!/usr/bin/env bash
# Instructions (and, with CG_CACHE=1, cache misses) per echoed message of
# Switchboard's hot path, counted by valgrind instead of timed: steady on a
# busy machine, where msgs/s are not.
#
# For each of "16 1" messages in flight it runs the server under
# valgrind --tool=callgrind twice: once driven by `sb_loadgen echo` (identity,
# CG_CONNS connections, CG_DURATION s) and once with the same connections
# open and idle for as long. Ir per message is
#     (Ir of the echo run - Ir of the idle run) / sb_dispatch calls
# so that start-up, shutdown, the handshakes and the idle loop cancel out.
# With CG_CACHE=1 the same is done under cachegrind for D1 and LL misses
# (messages counted by sb_loadgen's reply count instead).
#
# Usage: tests/bench/cg_per_msg.sh [BUILD_DIR]     (default: <repo>/build)
# Settings: CG_INFLIGHT ("16 1"), CG_CONNS (4), CG_DURATION (3),
#           CG_PORT (31500), CG_KEEP (a folder to keep the outputs in),
#           CG_CACHE (0), CG_SERVER (a line added to [server], e.g.
#           "own_data_path = false" to count libwebsockets' data path)
# Output: one line per setting, e.g.
#     inflight=16 msgs=51234 ir_per_msg=3316 [d1_miss_per_msg=.. ll_miss_per_msg=..]
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath -m "${1:-$SRC/build}")
SB_BIN=$BUILD/core/switchboard
PLUGIN=$BUILD/plugins/nest-example.so
LOADGEN=$BUILD/tests/bench/sb_loadgen
INFLIGHTS=${CG_INFLIGHT:-16 1}
CONNS=${CG_CONNS:-4}
DURATION=${CG_DURATION:-3}
PORT=${CG_PORT:-31500}
CACHE=${CG_CACHE:-0}

for f in "$SB_BIN" "$PLUGIN" "$LOADGEN"; do
    [[ -e $f ]] || {
        echo "cg_per_msg.sh: $f missing (build switchboard nest-example sb_loadgen)" >&2
        exit 1
    }
done
command -v valgrind >/dev/null || {
    echo "cg_per_msg.sh: valgrind not found" >&2
    exit 77
}

TMP=$(mktemp -d)
KEEP=${CG_KEEP:-}
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        cp -r "$TMP"/. "$KEEP"/
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

DATA=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
MESSAGE="{\"event\":\"identity\",\"data\":\"$DATA\"}"

cat >"$TMP/sb.ini" <<EOF
[server]
host = 127.0.0.1
port = $PORT
log_level = warn
${CG_SERVER:-}

[plugin.nest-example]
file = $PLUGIN
EOF

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start TOOL OUT: the server under valgrind's TOOL writing to OUT.
start() {
    local tool=$1 out=$2 extra=()
    if [[ $tool == callgrind ]]; then
        extra=(--callgrind-out-file="$out" --compress-strings=no --compress-pos=no)
    else
        extra=(--cachegrind-out-file="$out" --cache-sim=yes)
    fi
    valgrind --tool="$tool" "${extra[@]}" "$SB_BIN" -c "$TMP/sb.ini" \
        >"$out.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 600); do
        port_open "$PORT" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "cg_per_msg.sh: the server did not start, see:" >&2
    tail -20 "$out.log" >&2
    exit 1
}

stop() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

# total Ir (callgrind) or the events line (cachegrind) of an output file.
summary() {
    awk '/^(summary|totals):/{ $1 = ""; print; exit }' "$1"
}

# Calls of sb_dispatch: every call site's "calls=" line after its cfn=.
dispatches() {
    awk '/^cfn=/{ f = ($0 ~ /^cfn=(\([0-9]+\) )?sb_dispatch$/); next }
         /^calls=/{ if (f) { split($0, a, /[= ]/); n += a[2] } f = 0; next }
         END { print n + 0 }' "$1"
}

# run TOOL MODE INFLIGHT: one server run; MODE is echo or idle.
run() {
    local tool=$1 mode=$2 infl=$3 out=$TMP/$1-$2-$3.out
    start "$tool" "$out"
    if [[ $mode == echo ]]; then
        "$LOADGEN" echo --port "$PORT" --conns "$CONNS" --inflight "$infl" \
            --duration "$DURATION" --warmup 0 --message "$MESSAGE" \
            --expect "\"$DATA\"" --no-spin >"$out.lg" 2>&1
    else
        "$LOADGEN" idle --port "$PORT" --conns "$CONNS" --pid "$SERVER_PID" \
            --settle $((DURATION + 1)) >"$out.lg" 2>&1
    fi
    stop
    echo "$out"
}

for infl in $INFLIGHTS; do
    e=$(run callgrind echo "$infl")
    i=$(run callgrind idle "$infl")
    msgs=$(dispatches "$e")
    ir_e=$(summary "$e" | awk '{print $1}')
    ir_i=$(summary "$i" | awk '{print $1}')
    line="inflight=$infl msgs=$msgs ir_echo=$ir_e ir_idle=$ir_i"
    line+=" ir_per_msg=$(awk -v a="$ir_e" -v b="$ir_i" -v n="$msgs" \
        'BEGIN { printf "%.0f", (n > 0 ? (a - b) / n : 0) }')"
    if [[ $CACHE == 1 ]]; then
        e=$(run cachegrind echo "$infl")
        i=$(run cachegrind idle "$infl")
        # sb_loadgen's count of replies stands in for sb_dispatch here.
        n=$(awk '/^mode=/{ for (k = 1; k <= NF; k++) if ($k ~ /^(replies|received)=/) {
            split($k, a, "="); print a[2]; exit } }' "$e.lg")
        # events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
        line+=$(paste <(summary "$e") <(summary "$i") | awk -v n="${n:-0}" '{
            d1 = ($5 + $8) - ($14 + $17); ll = ($3 + $6 + $9) - ($12 + $15 + $18);
            if (n > 0) printf " cg_msgs=%d d1_miss_per_msg=%.2f ll_miss_per_msg=%.3f", n, d1 / n, ll / n }')
    fi
    echo "$line"
done
