#!/usr/bin/env bash
# The README's first command: install what is missing, build (Release), run the walkthrough.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build test
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)"
for demo in build/release/examples/walkthrough_*; do
  [ -x "$demo" ] || continue
  echo "=== $(basename "$demo")"
  "$demo"
done
