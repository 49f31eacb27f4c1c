#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): the whole suite in the Release,
# ThreadSanitizer and AddressSanitizer+UBSan builds, the model checks, the valgrind subset and
# the benchmark harness's quick mode. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build test bench
jobs=$(nproc)
status=0
run_build() { # name, cmake args...
  local name=$1; shift
  echo "=== build $name"
  cmake -S . -B "build/$name" "$@" >/dev/null
  cmake --build "build/$name" -j"$jobs" >/dev/null
  echo "=== test $name"
  (cd "build/$name" && ctest --output-on-failure -j1) || status=1
}
run_build release -DCMAKE_BUILD_TYPE=Release
# TSan dies at start if the kernel hands out 32 bits of mmap randomness (field notes).
if [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)" -gt 30 ]; then
  setarch_cmd=(setarch "$(uname -m)" -R)
else
  setarch_cmd=()
fi
"${setarch_cmd[@]}" bash -c "$(declare -f run_build); status=0; jobs=$jobs; run_build tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=thread; exit \$status" || status=1
# The TSan suite again with clang (#15): its TSan allows ~40k live tasks where gcc's stops at
# 8128 threads + fibers, so the stress matrix runs at its full live size (README).
"${setarch_cmd[@]}" bash -c "$(declare -f run_build); status=0; jobs=$jobs; run_build tsan-clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=thread; exit \$status" || status=1
run_build asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=address
if [ -x bench/compare.sh ] || [ -f bench/compare.sh ]; then
  echo "=== bench quick (harness correctness, not speed)"
  WEFT_BENCH=build/release/bench/weft-bench bash bench/compare.sh --quick --out build/peers-quick || status=1
fi
if ((status == 0)); then echo "ALL SUITES PASSED"; else echo "SOME SUITE FAILED"; fi
exit $status
