#!/usr/bin/env bash
# Builds and runs a program the way a user of an installed weft does: outside weft's build and
# its flags, with the user's own sanitizer flags, against pkg-config's weft (or CMake's
# find_package(weft)), linked to the installed, uninstrumented shared library.
# Usage:
#   user_check.sh install SOURCE_DIR PREFIX   a plain Release weft, built and installed in PREFIX
#   user_check.sh run PREFIX CC TOOL EXPECT PROGRAM.c [ARGS...]
#       TOOL: tsan | asan | asan-uar (detect_stack_use_after_return=1) | valgrind | plain
#       EXPECT: clean (exit 0, no report) | race (a TSan data race reported with both stacks)
#               | "die:TEXT" (exit non-zero with TEXT on stderr)
#   user_check.sh cmake PREFIX CC PROJECT_DIR BUILD_DIR PROGRAM [ARGS...]
#       configures and builds PROJECT_DIR (which uses find_package(weft)), runs PROGRAM clean
#       under TSan.
set -uo pipefail
mode=$1
shift

if [ "$mode" = install ]; then
  src=$1 prefix=$2
  rm -rf "$prefix" "$prefix.build"
  cmake -S "$src" -B "$prefix.build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DWEFT_SANITIZE= -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF -DWEFT_BUILD_EXAMPLES=OFF \
    >"$prefix.log" 2>&1 &&
    cmake --build "$prefix.build" -j2 >>"$prefix.log" 2>&1 &&
    cmake --install "$prefix.build" >>"$prefix.log" 2>&1 || { cat "$prefix.log"; exit 1; }
  echo "installed a plain weft in $prefix"
  exit 0
fi

prefix=$1 cc=$2
shift 2
pc=$(find "$prefix" -name weft.pc | head -1)
[ -n "$pc" ] || { echo "no weft.pc under $prefix: did user_install run?"; exit 1; }
export PKG_CONFIG_PATH=${pc%/weft.pc}
libdir=$(pkg-config --variable=libdir weft)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tsan_env=(TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1")

if [ "$mode" = cmake ]; then
  project=$1 build=$2 program=$3
  shift 3
  cmake -S "$project" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/log" 2>&1 &&
    cmake --build "$build" >>"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  env "${tsan_env[@]}" "$build/$program" "$@"
  rc=$?
  echo "exit status $rc"
  exit $rc
fi

tool=$1 expect=$2 source=$3
shift 3
case $tool in
  tsan) flags=(-fsanitize=thread) ;;
  asan | asan-uar) flags=(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                          -fno-omit-frame-pointer) ;;
  valgrind | plain) flags=() ;;
  *) echo "unknown tool $tool"; exit 2 ;;
esac
# -rdynamic: a program that defines sanitizer entry points itself (tsan_without_fibers.c)
# must export them for the library to see, as a sanitizer runtime does.
# shellcheck disable=SC2046 # pkg-config's words are meant to split
"$cc" "${flags[@]}" -g -O1 -rdynamic "$source" -o "$work/prog" $(pkg-config --cflags --libs weft) \
  -Wl,-rpath,"$libdir" || exit 1
case $tool in
  tsan) run=(env "${tsan_env[@]}") ;;
  asan) run=(env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1) ;;
  asan-uar) run=(env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
                 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1) ;;
  valgrind) run=(valgrind -q --error-exitcode=99 --leak-check=full
                 --errors-for-leak-kinds=definite) ;;
  plain) run=() ;;
esac
"${run[@]}" "$work/prog" "$@" >"$work/out" 2>&1
rc=$?
cat "$work/out"
echo "exit status $rc"
case $expect in
  clean)
    if ((rc != 0)) || grep -q "ThreadSanitizer\|AddressSanitizer\|runtime error:" "$work/out"; then
      echo "FAIL: expected a clean run"; exit 1
    fi ;;
  race)
    # Both stacks: the report names the racing function in its first and its previous access.
    frames=$(grep -c "#0 adder " "$work/out")
    if ((rc == 0 || frames < 2)) ||
      ! grep -q "WARNING: ThreadSanitizer: data race" "$work/out"; then
      echo "FAIL: expected TSan to report the planted race with both tasks' stacks"; exit 1
    fi ;;
  die:*)
    if ((rc == 0)) || ! grep -qF "${expect#die:}" "$work/out"; then
      echo "FAIL: expected a non-zero exit saying: ${expect#die:}"; exit 1
    fi ;;
esac
echo "PASS ($tool, $expect)"
