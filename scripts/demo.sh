#!/usr/bin/env bash
# The README's first command: install what the build needs if missing, build the library and the
# walkthrough programs only (Release, in build/demo: no tests, benchmarks or cross-builds), run
# the notebook walkthrough.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF \
  -DWEFT_BUILD_EXAMPLES=ON >/dev/null
demos=()
for src in examples/walkthrough_*.c; do demos+=("$(basename "$src" .c)"); done
cmake --build build/demo -j"$(nproc)" --target "${demos[@]}"
for demo in "${demos[@]}"; do
  echo "=== $demo"
  "build/demo/examples/$demo"
done
