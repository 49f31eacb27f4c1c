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
valgrind --trace-children=yes --leak-check=full --show-leak-kinds=definite,indirect,possible \
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
