#!/usr/bin/env bash
# The README's figure: closed-loop round trips against the pool and against a
# single-threaded loop, both at the same --block-us, with the same clients.
#   epoll_oneshot_pool/measure_pool_vs_loop.sh BUILD_DIR [BLOCK_US] [CLIENTS] [SECONDS]
# BUILD_DIR must hold epoll_oneshot_pool, pool_round_trips and epoll_et_server
# (poll_server is used when epoll_et_server was not built).
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [BLOCK_US] [CLIENTS] [SECONDS]}
block_us=${2:-1000}
clients=${3:-32}
seconds=${4:-5}
client=$build/epoll_oneshot_pool/pool_round_trips
loop=$build/epoll_et_server/epoll_et_server
[[ -x $loop ]] || loop=$build/poll_server/poll_server

# Starts a server on a free loopback port, runs the client against it, stops it.
measure() {
  local label=$1
  shift
  local out
  out=$(mktemp)
  "$@" --port 0 --block-us "$block_us" >"$out" &
  local pid=$!
  for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
  local port
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
  printf '%-40s ' "$label"
  "$client" --port "$port" --clients "$clients" --seconds "$seconds"
  kill -TERM "$pid"
  wait "$pid"
  rm -f "$out"
}

echo "block_us=$block_us clients=$clients seconds=$seconds cores=$(nproc) kernel=$(uname -r)"
measure "$(basename "$loop") (one thread)" "$loop"
measure "epoll_oneshot_pool --max-threads 8" "$build/epoll_oneshot_pool/epoll_oneshot_pool" \
  --min-threads 2 --max-threads 8
measure "epoll_oneshot_pool --max-threads 32" "$build/epoll_oneshot_pool/epoll_oneshot_pool" \
  --min-threads 2 --max-threads 32
