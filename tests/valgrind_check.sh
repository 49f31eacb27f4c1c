#!/usr/bin/env bash
# Usage: valgrind_check.sh PROGRAM [ARGS...]
# Runs PROGRAM, and every process it starts (Criterion runs each test in a child), under
# memcheck. Fails if any process reported an error or a definite, indirect or possible leak.
# Needed because a child's --error-exitcode does not reach Criterion's verdict: the reports
# are read from the per-process logs instead.
set -u
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export WEFT_TEST_UNDER_VALGRIND=1 # slow-path bounds in tests that time a shutdown
# --fair-sched=yes: valgrind runs one thread at a time, and its default lock lets a thread that
# spins in user code (a task yielding in a loop until another thread injects work) take the lock
# straight back, starving the others: the lone-yielder test timed out in 3 of 6 runs, on every
# commit (session 20), and passed 4 of 4 with a fair lock.
valgrind --fair-sched=yes --trace-children=yes --leak-check=full --show-leak-kinds=definite,indirect,possible \
  --errors-for-leak-kinds=definite,indirect,possible --log-file="$dir/vg.%p" "$@"
rc=$?
bad=$(grep -L "ERROR SUMMARY: 0 errors" "$dir"/vg.*)
if [ -n "$bad" ]; then
  cat $bad
  echo "valgrind: errors or leaks reported (above)"
  exit 1
fi
echo "valgrind: $(ls "$dir" | wc -l) processes, 0 errors, 0 leaks"
exit $rc
