#!/usr/bin/env bash
# Switchboard benchmark: one command that builds what is missing, runs every
# server in turn pinned to one core with sb_loadgen on the other, and writes
# a Markdown table (absolute figures and ratios to the uWebSockets echo when
# BENCH_UWS_SRC gives its source, else to the raw libwebsockets echo), a
# CSV file and a gnuplot chart. Each server is started fresh for the
# idle-memory test and again for the echo tests, and every process the
# script starts is killed when it exits, however it exits.
#
# Usage: tests/bench/run.sh            (from anywhere; about 5 minutes)
#        tests/bench/run.sh --report   (redraw table and chart from the last
#                                       run's results)
#        BENCH_DURATION=3 BENCH_WARMUP=1 BENCH_IDLE_CONNS=2000 \
#        BENCH_BCAST_SUBS=2000 tests/bench/run.sh      (a smoke run)
#
# Settings (environment):
#   BENCH_BUILD_DIR    build folder (default: <repo>/build); results go to
#                      $BENCH_BUILD_DIR/bench, npm packages to .../bench-node
#   BENCH_SERVERS      which servers, in order (default: all of
#                      "switchboard switchboard-lws uws lws ws nest epoll")
#   BENCH_UWS_SRC      a uWebSockets source folder with its uSockets/
#                      subfolder (a git clone with submodules): the "uws"
#                      echo (tests/bench/uws_echo.cpp) is built against it
#                      into $BENCH_BUILD_DIR/bench/uws and the ratios are
#                      taken against it. Unset: the uws row is skipped;
#                      nothing is ever downloaded
#   BENCH_DURATION     measured seconds per echo/broadcast run (10)
#   BENCH_WARMUP       warm-up seconds before measuring (2)
#   BENCH_CONNS        echo connections (100)
#   BENCH_INFLIGHT     the pipelined echo's messages in flight (16)
#   BENCH_IDLE_CONNS   idle connections for the memory test (10000)
#   BENCH_BCAST_SUBS   broadcast subscribers (10000)
#   BENCH_REPEAT       rounds of the timed tests over all servers; each
#                      server's best run is kept (1)
#   BENCH_PORT         port the servers listen on (31000)
#   BENCH_SERVER_CPU / BENCH_LOAD_CPU   cores for server and load (0 / 1)
#   BENCH_QUIET_PCT    wait before each run while other processes use more
#                      than this % of the machine (15); BENCH_QUIET_WAIT caps
#                      the wait in seconds (60)
#   BENCH_OTHER_MAX    a timed run during which other processes took more
#                      than this share of the server's or the load
#                      generator's core (0.05) is run again, up to
#                      BENCH_RETRIES times (2); then it is marked noisy
#   SB_BIN, SB_PLUGIN  the Switchboard binary and nest-example plugin
#                      (default: $BUILD/core/switchboard, $BUILD/plugins/...)
#   BENCH_SB_LWS       the [server] line of the "switchboard-lws" variant
#                      (default "own_data_path = false": libwebsockets
#                      reads every connection, as before issue 17); the
#                      variant is skipped when it is set empty
#   BENCH_SB_BCAST_PLUGIN   the broadcast hook: a plugin .so that fans
#                      messages out, loaded as [plugin.<its file name>]
#                      (default: $BUILD/plugins/chat.so when it is there;
#                      "none" skips the test); BENCH_SB_BCAST_CONF adds lines
#                      to its section ("\n" between lines)
#   BENCH_BCAST_JOIN   text each subscriber sends once to join (default:
#                      chat's join of room "bench")
#   BENCH_BCAST_MSG    text the publisher sends (default: chat's say into
#                      "bench" of a 64-byte text)
#   BENCH_BCAST_EXPECT what each subscriber must receive (unchecked if empty)
#   BENCH_BCAST_WINDOW publisher's unacknowledged messages (64); the
#                      publisher joins too and its own copies are its acks
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath -m "${BENCH_BUILD_DIR:-$SRC/build}")
OUT=$BUILD/bench
NODE_DIR=$BUILD/bench-node
BENCH_BIN=$BUILD/tests/bench

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-100}
INFLIGHT=${BENCH_INFLIGHT:-16}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
BCAST_SUBS=${BENCH_BCAST_SUBS:-10000}
REPEAT=${BENCH_REPEAT:-1}
# Below the ephemeral range (32768-60999), so that no outgoing connection
# can hold it.
PORT=${BENCH_PORT:-31000}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
OTHER_MAX=${BENCH_OTHER_MAX:-0.05}
RETRIES=${BENCH_RETRIES:-2}
SERVERS=${BENCH_SERVERS:-switchboard switchboard-lws uws lws ws nest epoll}
UWS_SRC=${BENCH_UWS_SRC:-}
UWS_BIN=$OUT/uws/uws_echo
SB_BIN=${SB_BIN:-$BUILD/core/switchboard}
SB_PLUGIN=${SB_PLUGIN:-$BUILD/plugins/nest-example.so}
SB_LWS=${BENCH_SB_LWS-own_data_path = false}
# Broadcast hook. The chat plugin is the one fan-out in the tree: its `say`
# reaches every member of a room, the sender included, which is what the
# publisher's window needs (its own copies are its acks).
SB_BCAST_PLUGIN=${BENCH_SB_BCAST_PLUGIN:-$BUILD/plugins/chat.so}
[[ $SB_BCAST_PLUGIN != none ]] || SB_BCAST_PLUGIN=
SB_BCAST_CONF=${BENCH_SB_BCAST_CONF:-}

# The messages: the identity envelope with 64 bytes of data (94 bytes), as
# in issue 6. Echo servers send it back whole; the gateways (Switchboard,
# NestJS) answer with the data alone, a JSON string.
DATA=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
MESSAGE="{\"event\":\"identity\",\"data\":\"$DATA\"}"
GATEWAY_REPLY="\"$DATA\""
BCAST_JOIN=${BENCH_BCAST_JOIN:-'{"event":"join","data":{"room":"bench"}}'}
BCAST_MSG=${BENCH_BCAST_MSG:-"{\"event\":\"say\",\"data\":{\"room\":\"bench\",\"text\":\"$DATA\"}}"}
BCAST_EXPECT=${BENCH_BCAST_EXPECT:-}
BCAST_WINDOW=${BENCH_BCAST_WINDOW:-64}

log() { printf '%s\n' "$*" >&2; }
die() {
    log "run.sh: $*"
    exit 1
}

# ---- processes: every server started is remembered and killed on exit ----

PIDS=()
SERVER_PID=

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "  (pid $pid ignored SIGTERM for 5 s: killing it)"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
}
trap cleanup EXIT
trap 'log "run.sh: interrupted"; exit 130' INT TERM

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME LOGFILE CMD...: starts CMD on the server core, waits until
# it accepts connections, sets SERVER_PID. taskset execs CMD, so the pid is
# the server's own (the idle test reads its /proc status).
start_server() {
    local name=$1 logf=$2
    shift 2
    if port_open "$PORT"; then
        die "port $PORT is already in use (set BENCH_PORT)"
    fi
    taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "  $name exited at start; its log ($logf):"
            sed 's/^/    /' "$logf" | tail -20 >&2
            SERVER_PID=
            return 1
        fi
        if port_open "$PORT"; then
            return 0
        fi
        sleep 0.05
    done
    log "  $name did not listen on port $PORT within 15 s"
    stop_pid "$SERVER_PID"
    SERVER_PID=
    return 1
}

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        stop_pid "$SERVER_PID"
        SERVER_PID=
    fi
}

# ---- a quiet machine -----------------------------------------------------

# Busy share of all cores over one second, in percent.
busy_pct() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 0) }'
}

NOISY=0
# Other work on the machine (builds, tests) skews every figure: wait for it.
wait_quiet() {
    local waited=0 pct
    NOISY=0
    pct=$(busy_pct)
    while ((pct > QUIET_PCT)); do
        if ((waited == 0)); then
            log "  machine busy (${pct}% of all cores used by others); waiting up to ${QUIET_WAIT}s"
        fi
        if ((waited >= QUIET_WAIT)); then
            log "  still busy (${pct}%): measuring anyway, result marked noisy"
            NOISY=1
            return
        fi
        sleep 2
        waited=$((waited + 3))
        pct=$(busy_pct)
    done
}

# ---- building ------------------------------------------------------------

build_tools() {
    if [[ ! -f $BUILD/CMakeCache.txt ]]; then
        log "configuring $BUILD"
        cmake -S "$SRC" -B "$BUILD" >"$OUT/logs/cmake.log" 2>&1 ||
            die "cmake failed, see $OUT/logs/cmake.log"
    fi
    log "building sb_loadgen lws_raw_echo ws_epoll_echo"
    if ! cmake --build "$BUILD" -j2 --target sb_loadgen lws_raw_echo \
        ws_epoll_echo >"$OUT/logs/build.log" 2>&1; then
        # A tree that does not build as a whole (work in progress elsewhere)
        # need not stop the benchmark while its tools are there.
        local t
        for t in sb_loadgen lws_raw_echo ws_epoll_echo; do
            [[ -x $BENCH_BIN/$t ]] ||
                die "building $t failed, see $OUT/logs/build.log (is SB_BUILD_BENCH on?)"
        done
        log "  the build failed (see $OUT/logs/build.log); using the tools already built"
    fi
}

# Builds the uWebSockets echo from BENCH_UWS_SRC (uSockets' C files with
# its epoll loop and no SSL, then uws_echo.cpp with the C++ standard
# uWebSockets' own build uses, without zlib: no compression). Sets UWS_SKIP
# and returns 1 when it cannot.
build_uws() {
    local dir=$OUT/uws f objs=() cxxstd=c++2b
    UWS_SKIP=
    if [[ -z $UWS_SRC ]]; then
        UWS_SKIP="no source folder (BENCH_UWS_SRC)"
        return 1
    fi
    if [[ ! -f $UWS_SRC/src/App.h || ! -f $UWS_SRC/uSockets/src/libusockets.h ]]; then
        UWS_SKIP="$UWS_SRC has no src/App.h or no uSockets/src/libusockets.h"
        return 1
    fi
    log "building the uWebSockets echo from $UWS_SRC"
    mkdir -p "$dir"
    : >"$OUT/logs/build-uws.log"
    for f in "$UWS_SRC"/uSockets/src/*.c "$UWS_SRC"/uSockets/src/eventing/epoll_kqueue.c \
        "$UWS_SRC"/uSockets/src/crypto/*.c; do
        [[ -f $f ]] || continue
        objs+=("$dir/$(basename "$f" .c).o")
        ${CC:-cc} -std=c11 -O3 -DLIBUS_NO_SSL -I"$UWS_SRC/uSockets/src" \
            -c "$f" -o "${objs[-1]}" >>"$OUT/logs/build-uws.log" 2>&1 || {
            UWS_SKIP="building uSockets failed (see $OUT/logs/build-uws.log)"
            return 1
        }
    done
    # g++ 12 knows C++23 as c++2b; older compilers stop at c++20.
    echo 'int main(){}' | ${CXX:-g++} -std=c++2b -x c++ - -o /dev/null 2>/dev/null ||
        cxxstd=c++20
    ${CXX:-g++} -std=$cxxstd -O3 -DLIBUS_NO_SSL -DUWS_NO_ZLIB \
        -I"$UWS_SRC/src" -I"$UWS_SRC/uSockets/src" \
        "$SRC/tests/bench/uws_echo.cpp" "${objs[@]}" -o "$UWS_BIN" \
        >>"$OUT/logs/build-uws.log" 2>&1 || {
        UWS_SKIP="building uws_echo failed (see $OUT/logs/build-uws.log)"
        return 1
    }
}

wants() {
    [[ " $SERVERS " == *" $1 "* ]]
}

# Brings Switchboard, its plugin and the broadcast plugin up to date. Its
# sources change under other hands: a failed build keeps the last binary
# (with a warning) and only a missing one skips it.
build_switchboard() {
    log "building switchboard nest-example"
    if ! cmake --build "$BUILD" -j2 --target switchboard nest-example \
        >"$OUT/logs/build-switchboard.log" 2>&1; then
        log "  the build failed (see $OUT/logs/build-switchboard.log)"
        if [[ -x $SB_BIN && -f $SB_PLUGIN ]]; then
            log "  using the Switchboard binary already built, which may be stale"
        fi
    fi
    # The default broadcast plugin; without it the broadcast test is skipped.
    if [[ -z ${BENCH_SB_BCAST_PLUGIN:-} ]]; then
        cmake --build "$BUILD" -j2 --target chat \
            >>"$OUT/logs/build-switchboard.log" 2>&1 || true
    fi
    [[ -x $SB_BIN && -f $SB_PLUGIN ]]
}

# npm packages go to the build folder, never into the source tree. The
# scripts are ES modules, which resolve packages from their own folder, so
# they are copied next to node_modules.
setup_node() {
    local nest=$SRC/tests/bench/nest stamp=$NODE_DIR/.installed-from
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "node or npm not found"
        return 1
    fi
    mkdir -p "$NODE_DIR"
    cp "$nest"/*.js "$NODE_DIR"/
    # Reinstall whenever package.json or the lock file changed.
    if [[ ! -d $NODE_DIR/node_modules ]] ||
        ! cat "$nest"/package*.json | cmp -s - "$stamp"; then
        log "installing the Node baselines' packages into $NODE_DIR"
        rm -f "$stamp"
        cp "$nest"/package*.json "$NODE_DIR"/
        if [[ -f $nest/package-lock.json ]]; then
            (cd "$NODE_DIR" && npm ci --no-audit --no-fund) \
                >"$OUT/logs/npm.log" 2>&1 || return 1
        else
            (cd "$NODE_DIR" && npm install --no-audit --no-fund) \
                >"$OUT/logs/npm.log" 2>&1 || return 1
        fi
        cat "$nest"/package*.json >"$stamp"
    fi
}

# ---- servers -------------------------------------------------------------

# server_setup NAME [broadcast]: sets LABEL, CMD (array) and EXPECT for the
# server, or returns 1 with SKIP set to the reason.
server_setup() {
    local name=$1 mode=${2:-echo} conf
    SKIP=
    case $name in
    switchboard | switchboard-lws)
        LABEL="Switchboard"
        if [[ ! -x $SB_BIN ]]; then
            SKIP="no binary at $SB_BIN"
            return 1
        fi
        if [[ ! -f $SB_PLUGIN ]]; then
            SKIP="no nest-example plugin at $SB_PLUGIN"
            return 1
        fi
        if [[ $name == switchboard-lws ]]; then
            LABEL="Switchboard, libwebsockets data path"
            if [[ -z $SB_LWS ]]; then
                SKIP="BENCH_SB_LWS (the variant's [server] line) is not set"
                return 1
            fi
        fi
        if [[ $mode == broadcast && ! -f $SB_BCAST_PLUGIN ]]; then
            SKIP="no broadcast plugin (BENCH_SB_BCAST_PLUGIN=${SB_BCAST_PLUGIN:-none})"
            return 1
        fi
        conf=$OUT/$name-$mode.ini
        {
            echo "; written by tests/bench/run.sh"
            echo "[server]"
            echo "host = 127.0.0.1"
            echo "port = $PORT"
            # Logging every one of 10,000 connections is not what is measured.
            echo "log_level = warn"
            # The default limit is 10,000; the broadcast test needs one more.
            echo "max_connections = 20000"
            if [[ $name == switchboard-lws ]]; then
                echo "$SB_LWS"
            fi
            echo
            echo "[plugin.nest-example]"
            echo "file = $SB_PLUGIN"
            if [[ $mode == broadcast ]]; then
                # Broadcast hook: the plugin that fans messages out.
                echo
                echo "[plugin.$(basename "$SB_BCAST_PLUGIN" .so)]"
                echo "file = $SB_BCAST_PLUGIN"
                if [[ -n $SB_BCAST_CONF ]]; then
                    printf '%b\n' "$SB_BCAST_CONF"
                fi
            fi
        } >"$conf"
        CMD=("$SB_BIN" -c "$conf")
        EXPECT=$GATEWAY_REPLY
        ;;
    uws)
        LABEL="uWebSockets echo (C++, epoll)"
        if [[ $UWS_OK != 1 ]]; then
            SKIP=$UWS_SKIP
            return 1
        fi
        CMD=("$UWS_BIN" "$PORT")
        EXPECT=$MESSAGE
        if [[ $mode == broadcast ]]; then
            SKIP="an echo server"
            return 1
        fi
        ;;
    lws)
        LABEL="libwebsockets raw echo"
        CMD=("$BENCH_BIN/lws_raw_echo" "$PORT")
        EXPECT=$MESSAGE
        if [[ $mode == broadcast ]]; then
            SKIP="an echo server"
            return 1
        fi
        ;;
    ws)
        LABEL="Node ws echo"
        [[ $NODE_OK == 1 ]] || {
            SKIP="Node packages unavailable"
            return 1
        }
        if [[ $mode == broadcast ]]; then
            LABEL="Node ws broadcast loop"
            CMD=(node "$NODE_DIR/ws-echo.js" "$PORT" --broadcast "$BCAST_JOIN")
        else
            CMD=(node "$NODE_DIR/ws-echo.js" "$PORT")
        fi
        EXPECT=$MESSAGE
        ;;
    nest)
        LABEL="NestJS gateway (ws adapter)"
        [[ $NODE_OK == 1 ]] || {
            SKIP="Node packages unavailable"
            return 1
        }
        if [[ $mode == broadcast ]]; then
            SKIP="the sample gateway has no broadcast"
            return 1
        fi
        CMD=(node "$NODE_DIR/gateway.js" "$PORT")
        EXPECT=$GATEWAY_REPLY
        ;;
    epoll)
        LABEL="epoll echo, coalesced (loadgen check)"
        CMD=("$BENCH_BIN/ws_epoll_echo" "$PORT")
        EXPECT=$MESSAGE
        if [[ $mode == broadcast ]]; then
            SKIP="an echo server"
            return 1
        fi
        ;;
    *)
        die "unknown server '$name' in BENCH_SERVERS"
        ;;
    esac
}

# ---- measuring -----------------------------------------------------------

# kv FILE KEY: the value of KEY in the "mode=" line of FILE.
kv() {
    [[ -f $1 ]] || return 0
    awk -v k="$2" '/^mode=/{ for (i = 1; i <= NF; i++) { n = index($i, "=");
        if (substr($i, 1, n - 1) == k) { print substr($i, n + 1); exit } } }' "$1"
}

loadgen() {
    taskset -c "$LOAD_CPU" "$BENCH_BIN/sb_loadgen" "$@"
}

# measure DST KEY ARGS...: runs `sb_loadgen ARGS` once and keeps the run in
# DST if it beats what DST holds (from an earlier round): a clean run beats a
# noisy one, then the higher KEY wins. A run during which other processes
# took more than BENCH_OTHER_MAX of a core (sb_loadgen's other_cpu) is noisy
# and is run again, up to BENCH_RETRIES times; a kept noisy run is marked
# with a "noisy=1" line.
measure() {
    local dst=$1 key=$2 tries=0 f v other clean best best_clean
    shift 2
    while :; do
        tries=$((tries + 1))
        f=${dst%.txt}.round$ROUND.try$tries.txt
        wait_quiet
        loadgen "$@" >"$f" 2>&1 || true
        grep '^# ' "$f" | sed 's/^# /  /' >&2 || sed 's/^/  /' "$f" >&2
        check_run "$f"
        # other_cpu is -1 when sb_loadgen cannot tell (cores not pinned);
        # then the check before the run decides.
        other=$(kv "$f" other_cpu)
        clean=1
        if [[ -z $other || $other == -* ]]; then
            [[ $NOISY == 0 ]] || clean=0
        elif awk -v o="$other" -v m="$OTHER_MAX" 'BEGIN{exit !(o > m)}'; then
            clean=0
        fi
        best=-1
        best_clean=0
        if [[ -f $dst ]]; then
            best=$(kv "$dst" "$key")
            best=${best:--1}
            grep -qs '^noisy=1' "$dst" || best_clean=1
        fi
        v=$(kv "$f" "$key")
        if [[ -n $v ]] && { ((clean > best_clean)) || { ((clean == best_clean)) &&
            awk -v a="$v" -v b="$best" 'BEGIN{exit !(a > b)}'; }; }; then
            cp "$f" "$dst"
            ((clean == 1)) || echo "noisy=1" >>"$dst"
        fi
        if ((clean == 0 && tries <= RETRIES)); then
            log "  other processes used ${other:-some} of a core meanwhile: measuring again"
            continue
        fi
        return 0
    done
}

# Flags results that cannot be trusted.
check_run() {
    local f=$1 v
    v=$(kv "$f" mismatches)
    if [[ -n $v && $v != 0 ]]; then
        log "  WARNING: $v replies differed from the expected text"
    fi
    v=$(kv "$f" errors)
    if [[ -n $v && $v != 0 ]]; then
        log "  WARNING: $v connection errors"
    fi
    v=$(kv "$f" lg_busy)
    if [[ -n $v ]] && awk -v c="$v" 'BEGIN{exit !(c > 0.9)}'; then
        log "  note: sb_loadgen was busy ${v} of the time: it may be the limit here"
    fi
}

run_echo() {
    measure "$OUT/raw/$1-echo$2.txt" msgs_per_s \
        echo --port "$PORT" --conns "$CONNS" --inflight "$2" \
        --duration "$DURATION" --warmup "$WARMUP" --expect "$EXPECT" \
        --pid "$SERVER_PID" --label "$1"
}

# Memory is not disturbed by other processes the way time is: one run.
run_idle() {
    local f=$OUT/raw/$1-idle.txt
    wait_quiet
    loadgen idle --port "$PORT" --conns "$IDLE_CONNS" --pid "$SERVER_PID" \
        --label "$1" >"$f" 2>&1 || true
    grep '^# ' "$f" | sed 's/^# /  /' >&2 || sed 's/^/  /' "$f" >&2
    check_run "$f"
}

run_broadcast() {
    local name=$1 expect=()
    if [[ -n $BCAST_EXPECT ]]; then
        expect=(--expect "$BCAST_EXPECT")
    elif [[ $name == ws ]]; then
        expect=(--expect "$BCAST_MSG")
    fi
    measure "$OUT/raw/$name-bcast.txt" deliveries_per_s \
        broadcast --port "$PORT" --conns "$BCAST_SUBS" \
        --join "$BCAST_JOIN" --message "$BCAST_MSG" "${expect[@]}" \
        --window "$BCAST_WINDOW" --duration "$DURATION" --warmup "$WARMUP" \
        --pid "$SERVER_PID" --label "$name"
}

# Runs `fn NAME` with the server NAME started fresh in MODE (echo or
# broadcast), then stops it.
with_server() {
    local name=$1 mode=$2 fn=$3
    server_setup "$name" "$mode" || return 0
    if start_server "$name" "$OUT/logs/$name-$mode.log" "${CMD[@]}"; then
        sleep 0.5
        "$fn" "$name"
        stop_server
    fi
}

echo_tests() {
    run_echo "$1" 1
    run_echo "$1" "$INFLIGHT"
}

bench_all() {
    local name active=()
    for name in $SERVERS; do
        if server_setup "$name"; then
            active+=("$name")
            echo "$name|$LABEL" >>"$OUT/raw/servers"
        else
            log "== $name: skipped ($SKIP)"
            echo "$name|${LABEL:-$name}|$SKIP" >>"$OUT/raw/skipped"
        fi
    done
    # Memory: one run per server, each on a freshly started process (echo
    # runs would leave their buffers and heap behind).
    ROUND=1
    for name in "${active[@]}"; do
        server_setup "$name"
        log "== $LABEL: idle connections"
        with_server "$name" idle run_idle
    done
    # Time: BENCH_REPEAT rounds over all servers rather than repeats of one
    # server in a row, so that a slow spell of the machine (other work on
    # the host, which no counter here shows) does not fall on one server
    # only; the best run of each server is kept.
    for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
        for name in "${active[@]}"; do
            server_setup "$name"
            log "== $LABEL: echo (round $ROUND of $REPEAT)"
            with_server "$name" echo echo_tests
        done
        for name in "${active[@]}"; do
            if server_setup "$name" broadcast; then
                log "== $LABEL: broadcast (round $ROUND of $REPEAT)"
                with_server "$name" broadcast run_broadcast
            elif [[ $name == switchboard* && $ROUND == 1 ]]; then
                log "== $name: broadcast skipped ($SKIP)"
            fi
        done
    done
}

# ---- report --------------------------------------------------------------

fmt_int() {
    awk -v v="$1" 'BEGIN { if (v == "") { print "–"; exit }
        v = sprintf("%.0f", v); s = ""; n = length(v);
        for (i = 1; i <= n; i++) { s = s substr(v, i, 1);
            if ((n - i) % 3 == 0 && i < n) s = s "," } print s }'
}

fmt_dec() {
    if [[ -z $1 ]]; then echo "–"; else printf '%.1f' "$1"; fi
}

ratio() {
    if [[ -z $1 || -z $2 ]]; then
        echo "–"
        return
    fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "–";
        else printf "%.2f×\n", a / b }'
}

report() {
    local md=$OUT/results.md csv=$OUT/results.csv dat=$OUT/chart.dat
    local name label e1 e16 p99 kib bc ref_e1 ref_e16 ref_p99 ref_kib r
    # The ratios are taken against uWebSockets when it ran, else against
    # the raw libwebsockets echo.
    local ref=lws
    [[ ! -f $OUT/raw/uws-echo1.txt ]] || ref=uws
    ref_e1=$(kv "$OUT/raw/$ref-echo1.txt" msgs_per_s)
    ref_e16=$(kv "$OUT/raw/$ref-echo$INFLIGHT.txt" msgs_per_s)
    ref_p99=$(kv "$OUT/raw/$ref-echo1.txt" p99_us)
    ref_kib=$(kv "$OUT/raw/$ref-idle.txt" kib_per_conn)

    {
        echo "| server | msgs/s, 1 in flight | × $ref | msgs/s, $INFLIGHT in flight | × $ref | p99 µs, 1 in flight | × $ref | KiB per idle connection | × $ref | broadcast deliveries/s |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    } >"$md"
    echo "server,label,echo1_msgs_per_s,echo1_p50_us,echo1_p99_us,echo1_p999_us,echo1_max_us,echo${INFLIGHT}_msgs_per_s,echo${INFLIGHT}_p50_us,echo${INFLIGHT}_p99_us,idle_conns,idle_kib_per_conn,bcast_subscribers,bcast_deliveries_per_s,bcast_published_per_s,echo1_lg_busy,echo${INFLIGHT}_lg_busy,noisy" >"$csv"
    : >"$dat"

    while IFS='|' read -r name label; do
        local f1=$OUT/raw/$name-echo1.txt fp=$OUT/raw/$name-echo$INFLIGHT.txt
        local fidle=$OUT/raw/$name-idle.txt fb=$OUT/raw/$name-bcast.txt
        e1=$(kv "$f1" msgs_per_s)
        e16=$(kv "$fp" msgs_per_s)
        p99=$(kv "$f1" p99_us)
        kib=$(kv "$fidle" kib_per_conn)
        bc=$(kv "$fb" deliveries_per_s)
        local noisy=0 shown=$label
        if grep -qs '^noisy=1' "$f1" "$fp" "$fb"; then
            noisy=1
            shown="$label (noisy)"
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$shown" \
            "$(fmt_int "$e1")" "$(ratio "$e1" "$ref_e1")" \
            "$(fmt_int "$e16")" "$(ratio "$e16" "$ref_e16")" \
            "$(fmt_int "$p99")" "$(ratio "$p99" "$ref_p99")" \
            "$(fmt_dec "$kib")" "$(ratio "$kib" "$ref_kib")" \
            "$(if [[ -n $bc ]]; then fmt_int "$bc"; else echo "–"; fi)" >>"$md"
        echo "$name,\"$label\",$e1,$(kv "$f1" p50_us),$p99,$(kv "$f1" p999_us),$(kv "$f1" max_us),$e16,$(kv "$fp" p50_us),$(kv "$fp" p99_us),$(kv "$fidle" opened),$kib,$(kv "$fb" subscribers),$bc,$(kv "$fb" published_per_s),$(kv "$f1" lg_busy),$(kv "$fp" lg_busy),$noisy" >>"$csv"
        # Chart rows: short names, NaN where a figure is missing.
        # Chart rows: short names, NaN where a figure is missing, a colour
        # per server (Switchboard strong, the reference echo grey).
        local short colour
        case $name in
        switchboard) short="Switchboard" colour=0x1f5fa8 ;;
        switchboard-lws) short="Switchboard\\nlws path" colour=0x5b9bd5 ;;
        uws) short="uWebSockets\\necho" colour=0x7b4ea3 ;;
        lws) short="lws raw\\necho" colour=0xe8872e ;;
        ws) short="Node ws\\necho" colour=0x4e9a47 ;;
        nest) short="NestJS\\ngateway" colour=0xc0504d ;;
        epoll) short="epoll echo\\n(loadgen check)" colour=0xa6a6a6 ;;
        *) short=$name colour=0x777777 ;;
        esac
        [[ $noisy == 0 ]] || short="$short *"
        printf '"%s" %s %s %s %s %d\n' "$short" "${e1:-NaN}" "${e16:-NaN}" \
            "${p99:-NaN}" "${kib:-NaN}" "$colour" >>"$dat"
    done <"$OUT/raw/servers"

    {
        echo
        echo "$(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(uname -sr);" \
            "server on core $SERVER_CPU, sb_loadgen on core $LOAD_CPU, 127.0.0.1;" \
            "$CONNS connections, ${#MESSAGE}-byte messages; ${DURATION} s measured after ${WARMUP} s warm-up" \
            "(best of $REPEAT); idle: $IDLE_CONNS connections; broadcast: $BCAST_SUBS subscribers," \
            "publisher window $BCAST_WINDOW. $(date -u '+%Y-%m-%d %H:%M UTC')."
        if [[ -f $OUT/raw/ws-bcast.txt ]]; then
            echo
            echo "Node ws broadcast: ws-echo.js --broadcast, a loop of ws.send() over the subscribers."
        fi
        if [[ -f $OUT/raw/epoll-echo1.txt ]]; then
            echo
            echo "The epoll echo is a minimal server that shows the load generator's ceiling, not a contender."
        fi
        if [[ -s $OUT/raw/skipped ]]; then
            echo
            while IFS='|' read -r name label r; do
                echo "Skipped: $name ($r)."
            done <"$OUT/raw/skipped"
        fi
    } >>"$md"
    [[ -n $ref_e1 ]] || echo "(No $ref echo figures: ratios are blank.)" >>"$md"
}

chart() {
    local dat=$OUT/chart.dat png=$OUT/chart.png
    command -v gnuplot >/dev/null || {
        log "gnuplot not found: no chart"
        return 0
    }
    [[ -s $dat ]] || return 0
    gnuplot >"$OUT/logs/gnuplot.log" 2>&1 <<EOF || log "gnuplot failed, see $OUT/logs/gnuplot.log"
set terminal pngcairo size 1400,960 font "DejaVu Sans,11"
set output "$png"
set encoding utf8
set datafile missing "NaN"
set style fill solid 0.9 border rgb "#444444"
set boxwidth 0.6
set grid ytics lc rgb "#e0e0e0"
set border 3
set tics nomirror
set xtics scale 0 font ",10"
set key off
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.12, 0
set bmargin 4
set multiplot layout 2,2 title "WebSocket echo: $CONNS connections, ${#MESSAGE}-byte messages, server on core $SERVER_CPU, load on core $LOAD_CPU" font ",13"
$(if grep -qs ' \*"' "$dat"; then echo 'set label 1 "* disturbed by other processes: see results.md" at screen 0.01, 0.015 font ",10"'; fi)
fk(v) = v >= 1e6 ? sprintf("%.2fM", v / 1e6) : sprintf("%.0fk", v / 1e3)
set title "messages/s, 1 in flight (higher is better)"
set format y "%.0fk"
plot "$dat" using 0:(\$2/1e3):6:xtic(1) with boxes lc rgb variable, \
     "" using 0:(\$2/1e3):(fk(\$2)) with labels offset 0,0.8 font ",10"
set title "messages/s, $INFLIGHT in flight (higher is better)"
set format y "%.1fM"
plot "$dat" using 0:(\$3/1e6):6:xtic(1) with boxes lc rgb variable, \
     "" using 0:(\$3/1e6):(fk(\$3)) with labels offset 0,0.8 font ",10"
set title "p99 latency in µs, 1 in flight (lower is better)"
set format y "%.0f"
plot "$dat" using 0:4:6:xtic(1) with boxes lc rgb variable, \
     "" using 0:4:(sprintf("%.0f", \$4)) with labels offset 0,0.8 font ",10"
set title "server memory per idle connection, KiB (lower is better)"
set format y "%.1f"
plot "$dat" using 0:5:6:xtic(1) with boxes lc rgb variable, \
     "" using 0:5:(sprintf("%.1f", \$5)) with labels offset 0,0.8 font ",10"
unset multiplot
EOF
}

# ---- main ----------------------------------------------------------------

mkdir -p "$OUT/raw" "$OUT/logs"
if [[ ${1:-} == --report ]]; then
    # Only redraw the table and chart from the last run's raw results.
    [[ -s $OUT/raw/servers ]] || die "no results in $OUT/raw"
    report
    chart
    cat "$OUT/results.md"
    exit 0
elif [[ $# -gt 0 ]]; then
    die "usage: run.sh [--report]  (settings are environment variables)"
fi
rm -f "$OUT"/raw/*
for cpu in "$SERVER_CPU" "$LOAD_CPU"; do
    [[ -d /sys/devices/system/cpu/cpu$cpu ]] || die "no core $cpu on this machine"
done
build_tools

if wants switchboard || wants switchboard-lws; then
    build_switchboard || log "Switchboard not available: $SB_BIN or $SB_PLUGIN missing (see $OUT/logs/build-switchboard.log)"
fi
UWS_OK=0
UWS_SKIP=
if wants uws; then
    if build_uws; then
        UWS_OK=1
    else
        log "uWebSockets: $UWS_SKIP, skipped"
    fi
fi
NODE_OK=0
if wants ws || wants nest; then
    if setup_node; then
        NODE_OK=1
    else
        log "npm install failed (see $OUT/logs/npm.log): skipping the Node servers"
    fi
fi

# The idle test needs IDLE_CONNS descriptors in the server and in sb_loadgen.
need=$((IDLE_CONNS > BCAST_SUBS ? IDLE_CONNS : BCAST_SUBS))
need=$((need + 256))
if (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null ||
        die "open files limit $(ulimit -n) is below $need (ulimit -n)"
fi

bench_all

report
chart
log ""
cat "$OUT/results.md"
log ""
log "results: $OUT/results.md, $OUT/results.csv, chart: $OUT/chart.png"
