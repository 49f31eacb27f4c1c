#!/usr/bin/env bash
# Installs the Debian packages weft's build, tests and benchmarks need, if any is missing.
# Usage: scripts/deps.sh [build|test|bench]...   (as root on Debian; no-op when all present)
set -euo pipefail
declare -A sets=(
  [build]="build-essential cmake pkg-config libck-dev"
  [test]="libcriterion-dev g++ relacy-dev valgrind gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user clang libclang-rt-14-dev"
  [bench]="libtbb-dev golang-go libboost-fiber-dev librust-tokio-dev librust-num-cpus-dev cargo clang libomp-14-dev gnuplot-nox python3"
)
# cargo (Debian's: rustc 1.63) builds the Tokio peers offline from Debian's crates (the
# librust-*-dev sources): without it a fresh machine skipped Tokio in every comparison (42 s to
# build here, within compare.py --quick's 120 s limit).
# Servers (issue 12): the HTTP example's parser, curl for its test, wrk for its benchmark.
sets[build]+=" libhttp-parser-dev"
sets[test]+=" curl"
sets[bench]+=" wrk"
want=()
for s in "${@:-build}"; do
  for p in ${sets[$s]}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || want+=("$p")
  done
done
if ((${#want[@]})); then
  echo "deps: installing ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
