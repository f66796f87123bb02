#!/bin/sh
# Overload figures (README, "Overload"): runs the overload integration test,
# which starts the real server and drives it with real clients over
# 127.0.0.1, and prints the figures it measures for each overload:
#   - descriptors: a hard limit of 200 descriptors with max_connections =
#     5000; clients past the headroom (503), /healthz at the limit, then
#     accept() failing (every descriptor taken): the server's CPU time over
#     3 s, the log lines, its RSS;
#   - non-readers: 200 room members that read nothing, a producer of 10 KB
#     room messages, a 32 MiB send_queue_budget: the producer's rate, the
#     server's CPU and RSS, and a healthy member's latency during and after.
# Usage: tests/bench/overload.sh [BUILD_DIR]   (default: build)
set -eu
build=${1:-build}
test_bin="$build/tests/integration/test_overload"
if [ ! -x "$test_bin" ]; then
    cmake --build "$build" --target test_overload switchboard -j2
fi
echo "machine: $(nproc) CPU(s), $(uname -sr)"
CK_VERBOSITY=silent "$test_bin" 2>&1 | grep -E '^(descriptors|budget):'
