#!/bin/bash
# Chaos mode finds the ordering bug planted in examples/chaos_bank.c, reproducibly:
#   1. without WEFT_CHAOS the example passes, 20 runs out of 20, on one worker;
#   2. some seed in 1..SEEDS breaks its invariant (exit 1, a negative balance);
#   3. each seed replays: the same seed gives the same output, run after run.
# Usage: chaos_check.sh path/to/chaos_bank [SEEDS]
set -u
bin=$1
seeds=${2:-32}
unset WEFT_CHAOS WEFT_WORKERS
for i in $(seq 20); do
  out=$("$bin") || { echo "FAIL: without chaos, run $i broke the invariant: $out"; exit 1; }
  [ "$out" = "balance 20" ] || { echo "FAIL: without chaos, run $i printed: $out"; exit 1; }
done
found=
for seed in $(seq "$seeds"); do
  out=$(WEFT_CHAOS=$seed "$bin")
  rc=$?
  [ $rc -le 1 ] || { echo "FAIL: seed $seed: exit $rc: $out"; exit 1; }
  for again in 1 2 3; do
    out2=$(WEFT_CHAOS=$seed "$bin")
    [ "$out2" = "$out" ] || { echo "FAIL: seed $seed is not reproducible: '$out' then '$out2'"; exit 1; }
  done
  if [ $rc -eq 1 ] && [ -z "$found" ]; then found=$seed; fi
done
[ -n "$found" ] || { echo "FAIL: no seed in 1..$seeds found the planted bug"; exit 1; }
echo "chaos found the planted bug with seed $found (of 1..$seeds); each seed replayed 4 times"
