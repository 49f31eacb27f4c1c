#!/usr/bin/env bash
# Runs the notebook walkthrough (examples/) and checks each program's lines against the
# notebook's cells, in order, and its elapsed time against the notebook's (generous bounds:
# timing is the feature here). Usage: walkthrough_check.sh <dir with the walkthrough binaries>
set -uo pipefail
dir=$1
fail=0 pass=0
check() { # name, min_s, max_s, expected lines (times replaced by HH:MM:SS)
  local name=$1 lo=$2 hi=$3 expected=$4 out got elapsed rc
  out=$("$dir/$name" 2>&1)
  rc=$?
  if ((rc != 0)); then # a crash after the last line still fails (review, session 33)
    echo "FAIL $name: exit status $rc"; printf '%s\n' "$out"; fail=$((fail + 1)); return
  fi
  got=$(printf '%s\n' "$out" | grep -v '^# notebook idea' | grep -v '^elapsed:' |
        sed -E 's/ at [0-9]{1,2}:[0-9]{2}:[0-9]{2}.*/ at HH:MM:SS/')
  elapsed=$(printf '%s\n' "$out" | sed -n 's/^elapsed: \([0-9.]*\) s$/\1/p')
  if [ "$got" != "$expected" ]; then
    echo "FAIL $name: output differs"; diff <(echo "$expected") <(echo "$got"); fail=$((fail + 1)); return
  fi
  if ! awk -v e="$elapsed" -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(e != "" && e >= lo && e <= hi) }'; then
    echo "FAIL $name: elapsed '$elapsed' s not within [$lo, $hi]"; fail=$((fail + 1)); return
  fi
  echo "ok   $name (${elapsed} s)"; pass=$((pass + 1))
}
check walkthrough_1_coroutine 1.0 1.6 $'hello\nworld'
check walkthrough_2_sequential 3.0 3.6 $'started at HH:MM:SS\nhello\nworld\nfinished at HH:MM:SS'
check walkthrough_3_tasks 2.0 2.6 $'started at HH:MM:SS\nhello\nworld\nfinished at HH:MM:SS'
fact=$'Task A: Compute factorial(2), currently i=2...
Task B: Compute factorial(3), currently i=2...
Task C: Compute factorial(4), currently i=2...
Task A: factorial(2) = 2
Task B: Compute factorial(3), currently i=3...
Task C: Compute factorial(4), currently i=3...
Task B: factorial(3) = 6
Task C: Compute factorial(4), currently i=4...
Task C: factorial(4) = 24
[2, 6, 24]'
check walkthrough_4_factorial_await 3.0 3.6 "$fact"
check walkthrough_5_factorial_gather 3.0 3.6 "$fact"
echo "walkthrough: $pass passed, $fail failed"
exit $((fail != 0))
