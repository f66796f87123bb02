#!/usr/bin/env bash
# wss://: makes a self-signed certificate, serves a gateway with tls_cert /
# tls_key, and checks that a `ws` client trusting that certificate talks to
# it over TLS, and that plain ws:// on the same port is not served.
# With WORKERS above 1, the same under `workers = WORKERS` (joined by a
# private redis-server; 77, skipped, without one): each worker accepts on
# its own socket and hands the connection to lws with TLS, and the client
# runs 8 x WORKERS times so that every worker serves some. Under workers a
# second TLS gateway listens on another port with a certificate of its own:
# its clients trust only that one and send the same SNI name (localhost),
# so a connection served with the first gateway's certificate fails.
#   tls_test.sh SWITCHBOARD PLUGIN_DIR NODE_MODULES [WORKERS]
set -euo pipefail
bin=$1 plugins=$2 modules=$3 workers=${4:-1}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
server=""
redis=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  [ -n "$redis" ] && kill "$redis" 2>/dev/null && wait "$redis" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/tls.ini" <<INI
[server]
host = 127.0.0.1
port = $port
tls_cert = cert.pem
tls_key = key.pem
[plugin.nest]
file = $plugins/nest-example.so
INI
runs=1
port2=""
if [ "$workers" -gt 1 ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$tmp/key2.pem" -out "$tmp/cert2.pem" 2>/dev/null
  port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf '[gateway.second]\nport = %s\ntls_cert = cert2.pem\ntls_key = key2.pem\n' \
    "$port2" >>"$tmp/tls.ini"
  command -v redis-server >/dev/null || { echo "redis-server missing: skipped"; exit 77; }
  redis-server --port 0 --unixsocket "$tmp/r.sock" --save "" --appendonly no \
    --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  redis=$!
  for _ in $(seq 1 100); do [ -S "$tmp/r.sock" ] && break; sleep 0.05; done
  sed -i "s|^port = $port\$|port = $port\nworkers = $workers\nlog_connections = yes|" "$tmp/tls.ini"
  printf '[cluster]\nredis = unix:%s\n' "$tmp/r.sock" >>"$tmp/tls.ini"
  runs=$((8 * workers))
fi
# shellcheck disable=SC2086
${SB_TEST_WRAPPER:-} "$bin" -c "$tmp/tls.ini" 2>"$tmp/log" &
server=$!
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.1
done
if [ "$workers" -gt 1 ]; then
  # The master's sockets answer at once; wait for every worker to adopt
  # them (slow under valgrind), so no client times out in the queue.
  for w in $(seq 1 "$workers"); do
    for _ in $(seq 1 600); do
      [ "$(grep -c "w$w \[server\] gateway .* listening on" "$tmp/log")" -ge 2 ] && break
      sleep 0.1
    done
  done
fi
for _ in $(seq 1 "$runs"); do
  NODE_PATH=$modules node "$here/tls_client.js" "$port" "$tmp/cert.pem"
  if [ -n "$port2" ]; then
    NODE_PATH=$modules node "$here/tls_client.js" "$port2" "$tmp/cert2.pem"
  fi
done
if [ "$workers" -gt 1 ]; then
  # Every worker served some of them (the kernel spreads them: with 8 per
  # worker, two workers, one getting none happens about once in 30 000).
  for w in $(seq 1 "$workers"); do
    for g in default second; do
      grep -q "w$w \[server\] client .* connected from .* to gateway '$g'" "$tmp/log" ||
        { echo "worker $w served no client of $g" >&2; cat "$tmp/log" >&2; exit 1; }
    done
  done
fi
# Plain HTTP to the TLS port gets no WebSocket.
if printf 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' |
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; head -c 12 <&3" | grep -q "101"; then
  echo "plain ws:// was upgraded on a TLS port" >&2
  exit 1
fi
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=""
[ "$status" -eq 0 ] || { echo "server exited with $status" >&2; cat "$tmp/log" >&2; exit 1; }
