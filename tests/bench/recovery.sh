#!/usr/bin/env bash
# Session recovery figures (issue 13), one process:
#  1. the cost of history: sb_loadgen broadcast through the chat plugin,
#     without [recovery] and with it (every room message numbered and kept);
#  2. a recovery storm: tests/bench/recovery_storm.mjs (N clients drop, M
#     messages are published, all resume at once).
# With CLUSTER=1, the same with [cluster] and a private redis-server
# (history and sessions in Redis): 1. on one node, with Redis' CPU per
# message too; 2. on two nodes, each client resuming on the node it did
# not join, with Redis' CPU for the storm (utime+stime from /proc) and the
# nodes' RSS summed.
# usage: tests/bench/recovery.sh [BUILD=build] — env: SUBS (2000), RUNS (3),
# DURATION (5), STORM_N (10000), STORM_M (50), PORT (18791, and PORT+1),
# SB_NODE_MODULES (holding ws), LOADGEN (build's sb_loadgen), CLUSTER (0).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
SUBS=${SUBS:-2000} RUNS=${RUNS:-3} DURATION=${DURATION:-5}
STORM_N=${STORM_N:-10000} STORM_M=${STORM_M:-50} PORT=${PORT:-18791}
LOADGEN=${LOADGEN:-$B/tests/bench/sb_loadgen}
NM=${SB_NODE_MODULES:-$B/node/node_modules}
CLUSTER=${CLUSTER:-0}
tmp=$(mktemp -d /tmp/sb-recovery-bench.XXXX)
pid= pid2= rpid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; [[ -n $pid2 ]] && kill $pid2 2>/dev/null; [[ -n $rpid ]] && kill $rpid 2>/dev/null; rm -rf "$tmp"' EXIT

cluster_section=
if [[ $CLUSTER == 1 ]]; then
    command -v redis-server >/dev/null || { echo "recovery.sh: redis-server missing" >&2; exit 77; }
    redis-server --port 0 --unixsocket "$tmp/r.sock" --save '' --appendonly no \
        >"$tmp/redis.log" 2>&1 &
    rpid=$!
    for _ in $(seq 100); do [[ -S $tmp/r.sock ]] && break; sleep 0.1; done
    cluster_section="[cluster]\nredis = unix:$tmp/r.sock\n"
fi
redis_ticks() { if [[ -n $rpid ]]; then awk '{print $14 + $15}' "/proc/$rpid/stat"; else echo 0; fi; }

start() { # start EXTRA_SECTION [PORT] (sets pid, or pid2 for a second node)
    local port=${2:-$PORT}
    local name=sb$port
    printf '[server]\nhost = 127.0.0.1\nport = %s\nlog_level = warn\nmax_connections = 15000\n[plugin.chat]\nfile = %s/plugins/chat.so\n%b%b' \
        "$port" "$B" "$cluster_section" "$1" >"$tmp/$name.ini"
    "$B/core/switchboard" -c "$tmp/$name.ini" >"$tmp/$name.log" 2>&1 &
    if [[ $port == "$PORT" ]]; then pid=$!; else pid2=$!; fi
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
    echo "the server did not start:" >&2; cat "$tmp/$name.log" >&2; exit 1
}
stop() {
    kill -TERM "$pid"; wait "$pid" || true; pid=
    if [[ -n $pid2 ]]; then kill -TERM "$pid2"; wait "$pid2" || true; pid2=; fi
    [[ -n $rpid ]] && redis-cli -s "$tmp/r.sock" FLUSHALL >/dev/null
    return 0
}

text=$(printf '%064d' 0)
for run in $(seq "$RUNS"); do
    for mode in off history; do
        if [[ $mode == history ]]; then start '[recovery]\n'; else start ''; fi
        r0=$(redis_ticks)
        line=$("$LOADGEN" broadcast --port "$PORT" --conns "$SUBS" \
            --join '{"event":"join","data":{"room":"bench"}}' \
            --message "{\"event\":\"say\",\"data\":{\"room\":\"bench\",\"text\":\"$text\"}}" \
            --window 64 --duration "$DURATION" --warmup 1 --pid "$pid" --label "$mode")
        # Server CPU per published room message (µs), from its CPU share.
        # Redis' CPU (cluster) over the whole run, warmup included: an upper
        # bound per message.
        rticks=$(($(redis_ticks) - r0))
        awk -v run="$run" -v mode="$mode" -v rt="$rticks" -v hz="$(getconf CLK_TCK)" \
            -v secs="$((DURATION + 1))" -v cl="$CLUSTER" '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            us = 0; rus = 0
            if (v["published_per_s"] > 0) {
                us = v["srv_cpu"] * 1e6 / v["published_per_s"]
                rus = rt / hz * 1e6 / (v["published_per_s"] * secs)
            }
            printf "run=%s cluster=%s history=%s deliveries_per_s=%s published_per_s=%s srv_cpu=%s us_per_message=%.1f", run, cl, mode, v["deliveries_per_s"], v["published_per_s"], v["srv_cpu"], us
            if (cl == 1) printf " redis_cpu_s=%.2f redis_us_per_message=%.1f", rt / hz, rus
            printf " mismatches=%s\n", v["mismatches"]
        }' <<<"$(head -1 <<<"$line")"
        stop
    done
done

start '[recovery]\nhistory_size = 1000\n'
ports=$PORT pids=$pid
if [[ $CLUSTER == 1 ]]; then
    start '[recovery]\nhistory_size = 1000\n' $((PORT + 1))
    ports="$PORT,$((PORT + 1))" pids="$pid,$pid2"
fi
r0=$(redis_ticks)
[[ $CLUSTER == 1 ]] && redis-cli -s "$tmp/r.sock" CONFIG RESETSTAT >/dev/null
SB_NODE_MODULES=$NM node "$SRC/tests/bench/recovery_storm.mjs" "$ports" "$pids" "$STORM_N" "$STORM_M"
echo "server_cpu_s=$(ps -o times= -p "$pid")${pid2:+ node2_cpu_s=$(ps -o times= -p "$pid2")}"
if [[ $CLUSTER == 1 ]]; then
    echo "redis_cpu_s_storm=$(awk -v t=$(($(redis_ticks) - r0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }') (joins, drops, publishes and resumes)"
    # The commands Redis ran (INFO commandstats; those a script calls are
    # counted too), and their time: in all and for the main ones.
    redis-cli -s "$tmp/r.sock" INFO commandstats | tr -d '\r' | awk -F'[:,=]' '
        /^cmdstat_/ { n = substr($1, 9); calls[n] = $3; us[n] = $5; total += $5; all += $3 }
        END {
            printf "redis_commands_storm=%d redis_command_cpu_s_storm=%.2f:", all, total / 1e6
            for (n in us) if (calls[n] > all / 50) printf " %s=%d/%.2fs", n, calls[n], us[n] / 1e6
            printf "\n"
        }'
fi
stop
