#!/usr/bin/env bash
# Installs a built weft to a fresh prefix chosen at install time (`cmake --install --prefix`,
# not the configured CMAKE_INSTALL_PREFIX), then builds tests/install/fib.c as a user would,
# once with `pkg-config --cflags --libs weft` and once as a CMake project with
# find_package(weft CONFIG), runs both, and checks that both builds got -fstack-clash-protection.
# Usage: install_check.sh <weft build dir> [C compiler]
set -euo pipefail
build=$(cd "$1" && pwd)
cc=${2:-cc}
src=$(cd "$(dirname "$0")/install" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install"; }
pc=$(find "$prefix" -name weft.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "no weft.pc under $prefix"

echo "== pkg-config ($pc)"
export PKG_CONFIG_PATH=${pc%/weft.pc}
cflags=$(pkg-config --cflags weft) libs=$(pkg-config --libs weft)
libdir=$(pkg-config --variable=libdir weft)
echo "cflags: $cflags"; echo "libs: $libs"
[[ " $cflags " == *" -fstack-clash-protection "* ]] ||
  fail "weft.pc Cflags lack -fstack-clash-protection"
[ "$(realpath "$(pkg-config --variable=prefix weft)")" = "$(realpath "$prefix")" ] ||
  fail "weft.pc's prefix is not the install prefix $prefix"
[ -f "$(pkg-config --variable=includedir weft)/weft.h" ] ||
  fail "weft.pc's includedir has no weft.h"
# shellcheck disable=SC2086 # pkg-config's output is a list of words
"$cc" -Wall -Wextra -Werror -o "$tmp/fib_pc" "$src/fib.c" $cflags $libs -Wl,-rpath,"$libdir"
"$tmp/fib_pc" || fail "the pkg-config build exited $?"

echo "== find_package(weft CONFIG)"
cmake -S "$src" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$tmp/cmake.log" ||
  { cat "$tmp/cmake.log"; fail "configure"; }
cmake --build "$tmp/cmake" >>"$tmp/cmake.log" || { cat "$tmp/cmake.log"; fail "build"; }
grep -q -- -fstack-clash-protection "$tmp/cmake/compile_commands.json" ||
  fail "weft::weft did not carry -fstack-clash-protection into the user's build"
"$tmp/cmake/fib" || fail "the find_package build exited $?"
echo "install check passed"
