#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): the whole suite in the Release,
# ThreadSanitizer and AddressSanitizer+UBSan builds, the model checks, the valgrind subset and
# the benchmark harness's quick mode. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build test bench
jobs=$(nproc)
status=0
run_build() { # name, cmake args...; the tests run under the command in ${under[@]} (may be empty)
  local name=$1; shift
  echo "=== build $name"
  if ! { cmake -S . -B "build/$name" "$@" >/dev/null &&
         cmake --build "build/$name" -j"$jobs" >/dev/null; }; then
    echo "=== build $name FAILED"; status=1; return
  fi
  echo "=== test $name"
  (cd "build/$name" && "${under[@]}" ctest --output-on-failure -j1) || status=1
}
under=()
run_build release -DCMAKE_BUILD_TYPE=Release
# TSan dies at start if the kernel hands out 32 bits of mmap randomness (field notes): its tests
# run without address randomisation. Only running needs it; the build does not run TSan code.
if [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)" -gt 30 ]; then
  under=(setarch "$(uname -m)" -R)
fi
run_build tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=thread
# The TSan suite again with clang (#15): its TSan allows ~40k live tasks where gcc's stops at
# 8128 threads + fibers, so the stress matrix runs at its full live size (README).
run_build tsan-clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=thread
under=()
run_build asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=address
echo "=== bench quick (harness correctness, not speed)"
python3 bench/compare.py --quick --weft-bench build/release/bench/weft-bench \
  --out build/peers-quick || status=1
if ((status == 0)); then echo "ALL SUITES PASSED"; else echo "SOME SUITE FAILED"; fi
exit $status
