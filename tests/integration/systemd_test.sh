#!/usr/bin/env bash
# The systemd unit under workers: does what systemd does with the shipped
# etc/switchboard.service.in (no systemd runs here), with `workers = 2`.
# It reads Type, ExecStart, ExecReload, KillMode, KillSignal, SendSIGKILL,
# TimeoutStopSec and RuntimeDirectory(Mode) from the unit and:
#   1. starts ExecStart (the built binary, a test config) in a session of
#      its own, the stand-in for the unit's cgroup, with RUNTIME_DIRECTORY
#      set and the folder made as systemd makes it; ready means every
#      worker is (the master's /readyz), as Type=simple has no notice;
#   2. runs ExecReload with $MAINPID substituted as systemd does (a word of
#      its own, no shell) after adding a plugin to the config: every worker
#      must load it (and keep its pid), its copies in RUNTIME_DIRECTORY;
#   3. stops as KillMode says: KillSignal to every process of the session
#      (control-group) or to the main process only (mixed, process), then
#      waits TimeoutStopSec for the main process; the test fails if the
#      SIGKILL systemd would send then is needed, if the master does not
#      exit 0 (a non-zero status marks the unit failed), if a process of the
#      session is left, or if a plugin copy is left in RUNTIME_DIRECTORY.
# Steps 1 and 3 run twice: once on a settled service, once while a worker
# is being replaced (a stop that comes in the middle of a respawn).
# With systemd-analyze installed, `systemd-analyze verify` checks the unit
# offline first. SB_TEST_WRAPPER is put before the binary (valgrind).
# Skipped (77) without redis-server or curl.
#   systemd_test.sh UNIT_IN SWITCHBOARD PLUGIN_DIR
set -euo pipefail
unit_in=$1 bin=$(realpath "$2") plugins=$(realpath "$3")
command -v redis-server >/dev/null || { echo "redis-server missing: skipped"; exit 77; }
command -v curl >/dev/null || { echo "curl missing: skipped"; exit 77; }
tmp=$(mktemp -d)
main=""
redis=""
fail() {
  echo "FAIL: $*" >&2
  [ -f "$tmp/log" ] && tail -n 40 "$tmp/log" >&2
  exit 1
}
cleanup() {
  if [ -n "$sid" ]; then
    for p in $(session_pids); do kill -KILL "$p" 2>/dev/null || true; done
  fi
  if [ -n "$redis" ]; then
    kill "$redis" 2>/dev/null || true
    wait "$redis" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the unit, read as systemd reads it --------------------------------
# As `cmake --install` writes it with the default prefix (etc/CMakeLists.txt).
unit=$tmp/switchboard.service
sed -e 's|@CMAKE_INSTALL_FULL_BINDIR@|/usr/local/bin|g' \
  -e 's|@CMAKE_INSTALL_FULL_SYSCONFDIR@|/usr/local/etc|g' "$unit_in" >"$unit"
! grep -n '@[A-Z_]*@' "$unit" || fail "a placeholder the test does not fill"
# The last assignment of KEY in [Service] (comments and other sections
# skipped), or $2 when the unit does not set it (systemd's default).
unit_key() {
  local v
  v=$(awk -v k="$1" '
    /^\[/ { sect = $0; next }
    sect == "[Service]" && $0 !~ /^[#;]/ {
      i = index($0, "=")
      if (i && substr($0, 1, i - 1) == k) v = substr($0, i + 1)
    }
    END { print v }' "$unit")
  echo "${v:-$2}"
}
type=$(unit_key Type simple)
exec_start=$(unit_key ExecStart "")
exec_reload=$(unit_key ExecReload "")
kill_mode=$(unit_key KillMode control-group)
kill_signal=$(unit_key KillSignal SIGTERM)
send_sigkill=$(unit_key SendSIGKILL yes)
timeout_stop=$(unit_key TimeoutStopSec 90)
runtime_dir=$(unit_key RuntimeDirectory "")
runtime_mode=$(unit_key RuntimeDirectoryMode 0755)
echo "unit: Type=$type KillMode=$kill_mode KillSignal=$kill_signal" \
  "SendSIGKILL=$send_sigkill TimeoutStopSec=$timeout_stop" \
  "RuntimeDirectory=$runtime_dir ExecReload=$exec_reload"
case $type in
  simple | exec) ;;
  *) fail "Type=$type: this test knows how systemd starts simple and exec services only" ;;
esac
[[ $timeout_stop =~ ^[0-9]+s?$ ]] || fail "TimeoutStopSec=$timeout_stop: seconds expected"
timeout_stop=${timeout_stop%s}
sig=${kill_signal#SIG}

# ---- the test's machine ---------------------------------------------------
free_ports() { # N consecutive free ports below the ephemeral range
  python3 - "$1" <<'PY'
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
PY
}
redis-server --port 0 --unixsocket "$tmp/r.sock" --save "" --appendonly no \
  --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis=$!
for _ in $(seq 1 100); do [ -S "$tmp/r.sock" ] && break; sleep 0.05; done
[ -S "$tmp/r.sock" ] || fail "redis-server did not start"

# The processes of the session $sid (the service's, led by its main
# process): the stand-in for the unit's cgroup.
sid=""
session_pids() {
  local f s rest
  for f in /proc/[0-9]*/stat; do
    s=$(cat "$f" 2>/dev/null) || continue
    rest=${s##*) }
    # shellcheck disable=SC2086
    set -- $rest # state ppid pgrp session ...
    if [ "${4:-}" = "$sid" ]; then
      f=${f#/proc/}
      echo "${f%/stat}"
    fi
  done
  return 0
}

# ---- the unit's command lines with this build's paths ----------------------
# ExecStart: the installed binary is this build's, the config the test's;
# any other word stays as the unit has it.
read -ra start_words <<<"$exec_start"
[[ ${start_words[0]} == /* ]] || fail "ExecStart=$exec_start: an absolute path without prefix expected"
[[ ${start_words[0]} == */switchboard ]] || fail "ExecStart runs ${start_words[0]}"
start_words[0]=$bin

run_once() { # $1: settled | respawning
  local what=$1
  local port admin ini run
  port=$(free_ports 1)
  admin=$(free_ports 3)
  ini="$tmp/$what.ini"
  run="$tmp/run-$what/$runtime_dir"
  cat >"$ini" <<INI
[server]
host = 127.0.0.1
port = $port
workers = 2
shutdown_timeout = 3
[admin]
host = 127.0.0.1
port = $admin
[cluster]
redis = unix:$tmp/r.sock
[plugin.nest]
file = $plugins/nest-example.so
INI
  local words=("${start_words[@]}") i
  for i in "${!words[@]}"; do
    if [ "${words[i]}" = -c ]; then words[i + 1]=$ini; fi
  done
  [[ " ${words[*]} " == *" -c $ini "* ]] || fail "ExecStart gives no -c CONFIG: $exec_start"
  if [ -n "$runtime_dir" ]; then
    mkdir -p "$run"
    chmod "$runtime_mode" "$run"
  fi
  : >"$tmp/log"
  # setsid: a session of its own (the cgroup); bash's background child is
  # not a group leader, so setsid execs the server in place and $! is it.
  # shellcheck disable=SC2086
  RUNTIME_DIRECTORY=${runtime_dir:+$run} setsid ${SB_TEST_WRAPPER:-} "${words[@]}" \
    </dev/null 2>"$tmp/log" &
  main=$!
  sid=$main
  local ready=""
  for _ in $(seq 1 600); do
    kill -0 "$main" 2>/dev/null || fail "$what: the service exited at start"
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz")" = 200 ]; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [ -n "$ready" ] || fail "$what: not ready in 60 s"
  local workers
  workers=$(session_pids | grep -vx "$main" | sort -n | tr '\n' ' ')
  [ "$(echo "$workers" | wc -w)" -ge 2 ] || fail "$what: workers in the session: $workers"
  echo "$what: master $main, workers $workers ready"

  if [ "$what" = settled ]; then
    # ExecReload, with the config changed: each worker loads a plugin.
    printf '[plugin.chat]\nfile = %s/chat.so\n' "$plugins" >>"$ini"
    local reload
    read -ra reload <<<"$exec_reload"
    for i in "${!reload[@]}"; do
      # shellcheck disable=SC2016 # the words as the unit spells them
      case ${reload[i]} in '$MAINPID' | '${MAINPID}') reload[i]=$main ;; esac
    done
    "${reload[@]}" || fail "ExecReload failed: ${reload[*]}"
    for w in 1 2; do
      for _ in $(seq 1 300); do
        grep -q "w$w \[reload\] 1 added, 0 changed, 0 removed, 0 failed" "$tmp/log" && break
        sleep 0.1
      done
      grep -q "w$w \[reload\] 1 added, 0 changed, 0 removed, 0 failed" "$tmp/log" ||
        fail "worker $w did not reload"
    done
    grep -q "\[master\] SIGHUP received: workers 1 (pid [0-9]*), 2 (pid [0-9]*) reload" "$tmp/log" ||
      fail "the master did not forward SIGHUP to both workers"
    local after
    after=$(session_pids | grep -vx "$main" | sort -n | tr '\n' ' ')
    [ "$after" = "$workers" ] || fail "workers changed by the reload: $workers -> $after"
    if [ -n "$runtime_dir" ]; then
      for p in $workers; do
        compgen -G "$run/chat.g1.$p.*" >/dev/null ||
          fail "no copy of chat for worker $p in RUNTIME_DIRECTORY: $(ls "$run")"
      done
    fi
    echo "settled: ExecReload reloaded both workers"
  else
    # A worker dies, and ExecReload runs every few ms while the master
    # replaces it (a worker that ran under 10 s restarts after 100 ms): a
    # reload that reaches the new worker before its handlers must wait for
    # them, not kill it. Then the stop.
    local victim reload
    victim=$(echo "$workers" | cut -d' ' -f1)
    kill -KILL "$victim"
    read -ra reload <<<"$exec_reload"
    for i in "${!reload[@]}"; do
      # shellcheck disable=SC2016 # the words as the unit spells them
      case ${reload[i]} in '$MAINPID' | '${MAINPID}') reload[i]=$main ;; esac
    done
    for _ in $(seq 1 150); do
      "${reload[@]}" || fail "ExecReload failed: ${reload[*]}"
      sleep 0.002
    done
    for _ in $(seq 1 300); do
      [ "$(grep -c "\[server\] gateway 'default' listening on" "$tmp/log")" -ge 3 ] && break
      sleep 0.1
    done
    [ "$(grep -c "\[master\] worker . started" "$tmp/log")" -ge 3 ] ||
      fail "no worker replaced the killed one"
    if grep "\[master\] worker .* (killed by signal [^9]|exited with status)" -E "$tmp/log" >&2; then
      fail "a worker died of a reload while it started"
    fi
    echo "respawning: a worker replaced under $(grep -c "\[master\] SIGHUP received" "$tmp/log") reloads"
  fi

  # ---- the stop, as KillMode says ----
  local targets
  case $kill_mode in
    control-group) targets=$(session_pids) ;;
    mixed | process) targets=$main ;;
    none) fail "KillMode=none: systemd would leave the workers running" ;;
    *) fail "KillMode=$kill_mode unknown" ;;
  esac
  # shellcheck disable=SC2086
  kill -s "$sig" $targets
  local waited=0
  while kill -0 "$main" 2>/dev/null && [ "$(ps -o stat= -p "$main" | cut -c1)" != Z ] &&
    [ "$waited" -lt $((timeout_stop * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if [ "$(ps -o stat= -p "$main" 2>/dev/null | cut -c1)" != Z ] && kill -0 "$main" 2>/dev/null; then
    fail "$what: still running after TimeoutStopSec=$timeout_stop; systemd would SIGKILL it"
  fi
  local status=0
  wait "$main" || status=$?
  [ "$status" -eq 0 ] || fail "$what: the master exited with $status (systemd: failed)"
  local left
  left=$(session_pids | tr '\n' ' ')
  [ -z "${left// /}" ] || fail "$what: left in the cgroup after the master: $left"
  main=""
  grep -q "\[master\] every worker stopped" "$tmp/log" || fail "$what: no 'every worker stopped'"
  if [ -n "$runtime_dir" ] && [ -n "$(ls -A "$run")" ]; then
    fail "$what: plugin copies left in RUNTIME_DIRECTORY: $(ls "$run")"
  fi
  echo "$what: stopped by KillMode=$kill_mode in $((waited / 10)).$((waited % 10)) s, master exit 0, nothing left"
}

if command -v systemd-analyze >/dev/null; then
  # Offline: this build's binary and a config that exists, in a unit of the
  # same name (verify wants the ExecStart file to exist).
  mkdir -p "$tmp/verify"
  : >"$tmp/verify/empty.ini"
  sed -e "s|^ExecStart=.*|ExecStart=$bin -c $tmp/verify/empty.ini|" "$unit" \
    >"$tmp/verify/switchboard.service"
  if ! out=$(systemd-analyze verify --man=no "$tmp/verify/switchboard.service" 2>&1); then
    echo "$out" >&2
    fail "systemd-analyze verify"
  fi
  # Lines about the unit itself (the host's other units are not ours).
  if echo "$out" | grep -i "switchboard.service" >&2; then
    fail "systemd-analyze verify warns about the unit"
  fi
  echo "systemd-analyze verify: clean"
fi

run_once settled
run_once respawning
echo "ok"
