#!/bin/sh
# Overload figures (README, "Overload"): runs the overload integration test,
# which starts the real server and drives it with real clients over
# 127.0.0.1, and prints the figures it measures for each overload:
#   - descriptors: a hard limit of 200 descriptors with max_connections =
#     5000; clients past the headroom (503), /healthz at the limit, then
#     accept() failing (every descriptor taken): the server's CPU time over
#     3 s, the log lines, its RSS;
#   - non-readers: room members that read nothing, a producer of 10 KB
#     room messages: the producer's rate, the server's CPU and RSS, and a
#     healthy member's latency during and after; run three times: 200
#     non-readers with a 32 MiB send_queue_budget (the suite's case), 500
#     with the default budget (256 MiB), and 500 with the budget off.
# Usage: tests/bench/overload.sh [BUILD_DIR]   (default: build)
set -eu
build=${1:-build}
test_bin="$build/tests/integration/test_overload"
if [ ! -x "$test_bin" ]; then
    cmake --build "$build" --target test_overload switchboard -j2
fi
echo "machine: $(nproc) CPU(s), $(uname -sr)"
CK_VERBOSITY=silent "$test_bin" 2>&1 | grep -E '^(descriptors|budget):'
for case in "500 256" "500 0"; do
    set -- $case
    SB_OVERLOAD_NONREADERS=$1 SB_OVERLOAD_BUDGET_MIB=$2 \
        CK_VERBOSITY=silent "$test_bin" 2>&1 | grep -E '^budget:' || true
done
