#!/bin/bash
# Instructions per echo message of examples/echo_server, under callgrind (deterministic enough
# for an A/B, unlike wall time on a shared VM): the server runs with one worker under callgrind,
# bench/echo_load (native) sends N1 and then, against a fresh server, N2 messages over CONNS
# connections; (Ir(N2) - Ir(N1)) / (N2 - N1) leaves out start-up, accepts and shutdown.
#   bench/echo_instructions.sh SERVER_BUILD [LOAD_BUILD] [CONNS=100] [N1=20000] [N2=60000]
set -euo pipefail
server_build=${1:?usage: $0 SERVER_BUILD [LOAD_BUILD] [CONNS] [N1] [N2]}
load_build=${2:-$server_build}
conns=${3:-100} n1=${4:-20000} n2=${5:-60000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # messages -> total instructions of the server process
  local port=$((20000 + RANDOM % 20000))
  WEFT_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" \
    "$server_build/examples/echo_server" "$port" >/dev/null 2>"$out/vg.$1" &
  local pid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  "$load_build/bench/echo_load" "$port" "$conns" 120 1 "$1" >"$out/load.$1"
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$out/cg.$1"
}
a=$(run "$n1")
b=$(run "$n2")
echo "Ir($n1) = $a, Ir($n2) = $b, per message: $(( (b - a) / (n2 - n1) ))"
