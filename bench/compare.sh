#!/usr/bin/env bash
# bench/compare.sh - run weft's benchmark driver and its peers (oneTBB, OpenMP gcc/clang, Go,
# Python asyncio, Boost.Fiber, Tokio) on the same workloads, alternating runtimes round by round,
# check every result, and write a table of medians (Markdown) and a chart (gnuplot PNG).
#
# usage: bench/compare.sh [options]
#   --quick               each workload once at small n (fib 20, skynet 1e4, spawn 1e4,
#                         yield 1e5, sleep 2000, gather 200 k=3); fails on any wrong result or
#                         crash. Checks the harness and the peers, not speed.
#   --rounds R            rounds per workload (default 5; --quick: 1)
#   --workers W           workers for every runtime (default 2; asyncio ignores it)
#   --workloads "SPEC..." rows to run, each name:n[:k][@rt,rt...]  e.g. "fib:35 gather:1000:5"
#                         (@... restricts that row to the listed runtimes; default rows:
#                         fib:30 skynet:1000000 spawn:1000000 yield:10000000 sleep:1000000
#                         gather:10000:10)
#   --runtimes "RT..."    subset/order of: weft tbb omp-gcc omp-clang go asyncio boost-fiber tokio
#   --limit S             per-run wall limit in seconds (default 60). A runtime that exceeds it
#                         is killed and left out of that row (said so in the table).
#   --build-dir DIR       where peers are built (default build/peers; never the source tree)
#   --out DIR             where results.md, results.png, results.dat, raw.tsv go (default: build dir)
#   --rebuild             rebuild every peer even if up to date
#   --install             apt-get install the Debian packages of missing peers first
#
# Every runtime is run as: <program> <workload> <n> [-k <k>] -w <workers>   (-k only for gather;
# the peers also accept k as a third positional argument). weft's driver is
# ${WEFT_BENCH:-build/release/bench/weft-bench}; if WEFT_BENCH is unset and that binary is
# missing, the script tries `cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release &&
# cmake --build build/release --target weft-bench` once. Every program prints one line per run:
#   <runtime> <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<peak RSS KiB>
# and exits 3 (printing nothing) for a workload it cannot do naturally: that cell stays empty.
#
# Exit status: 0 ok; 1 a wrong result, weft failing/missing, or (--quick) any peer crash;
# 2 bad usage. A peer whose build fails is reported as skipped, not as a failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=/usr/bin/python3
PEERS=bench/peers
ALL_RUNTIMES="weft tbb omp-gcc omp-clang go asyncio boost-fiber tokio"
DEFAULT_WORKLOADS="fib:30 skynet:1000000 spawn:1000000 yield:10000000 sleep:1000000 gather:10000:10"
QUICK_WORKLOADS="fib:20 skynet:10000 spawn:10000 yield:100000 sleep:2000 gather:200:3"

QUICK=0
ROUNDS=
WORKERS=2
WORKLOADS=
RUNTIMES=$ALL_RUNTIMES
LIMIT=60
BUILD=build/peers
OUT=
REBUILD=0
INSTALL=0

die() { echo "compare.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --workers) WORKERS=${2:?}; shift ;;
    --workloads) WORKLOADS=${2:?}; shift ;;
    --runtimes) RUNTIMES=${2:?}; shift ;;
    --limit) LIMIT=${2:?}; shift ;;
    --build-dir) BUILD=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --rebuild) REBUILD=1 ;;
    --install) INSTALL=1 ;;
    -h | --help) usage 0 ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage 2 ;;
    esac
    shift
done
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
[[ $LIMIT =~ ^[1-9][0-9]*$ ]] || die "--limit must be a positive integer (seconds)"
if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}"
    : "${WORKLOADS:=$QUICK_WORKLOADS}"
else
    : "${ROUNDS:=5}"
    : "${WORKLOADS:=$DEFAULT_WORKLOADS}"
fi
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
for rt in $RUNTIMES; do
    [[ " $ALL_RUNTIMES " == *" $rt "* ]] || die "unknown runtime '$rt' (known: $ALL_RUNTIMES)"
done
mkdir -p "$BUILD" || die "cannot create build dir $BUILD"
BUILD=$(cd "$BUILD" && pwd)
case "$BUILD/" in "$ROOT/bench/"* | "$ROOT/lib/"* | "$ROOT/include/"* | "$ROOT/tests/"*)
    die "build dir $BUILD is inside the source tree" ;;
esac
: "${OUT:=$BUILD}"
mkdir -p "$OUT" || die "cannot create output dir $OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$BUILD/logs
mkdir -p "$LOGS"

# ---------------------------------------------------------------- workloads and expected results
expected() { # workload n k -> expected r on stdout
    local w=$1 n=$2 k=$3 a=0 b=1 t i
    case $w in
    fib)
        ((n <= 92)) || return 1
        for ((i = 0; i < n; i++)); do t=$((a + b)); a=$b; b=$t; done
        echo "$a" ;;
    skynet | sleep) echo $((n * (n - 1) / 2)) ;;
    spawn | yield) echo "$n" ;;
    gather) echo $((n * k)) ;;
    *) return 1 ;;
    esac
}

ROW_W=() ROW_N=() ROW_K=() ROW_ONLY=() ROW_LABEL=()
for spec in $WORKLOADS; do
    only=
    if [[ $spec == *@* ]]; then only=${spec#*@}; only=${only//,/ }; spec=${spec%%@*}; fi
    IFS=: read -r w n k extra <<<"$spec"
    [ -z "${extra:-}" ] || die "bad workload spec '$spec' (name:n[:k][@rt,...])"
    [[ ${n:-} =~ ^[0-9]+$ ]] || die "bad n in workload spec '$spec'"
    case $w in
    fib) ((n <= 92)) || die "fib n must be <= 92 (64-bit result)" ;;
    skynet) [[ $n =~ ^10*$ ]] || die "skynet n must be a power of 10, got $n" ;;
    yield) ((n % 1000 == 0)) || die "yield n must be a multiple of 1000, got $n" ;;
    spawn | sleep) ;;
    gather) : "${k:=10}"; [[ $k =~ ^[0-9]+$ ]] || die "bad k in '$spec'" ;;
    *) die "unknown workload '$w' (fib skynet spawn yield sleep gather)" ;;
    esac
    [ "$w" = gather ] || [ -z "${k:-}" ] || die "only gather takes k ('$spec')"
    for rt in $only; do
        [[ " $ALL_RUNTIMES " == *" $rt "* ]] || die "unknown runtime '$rt' in '$spec'"
    done
    ROW_W+=("$w") ROW_N+=("$n") ROW_K+=("${k:-}") ROW_ONLY+=("$only")
    if [ "$w" = gather ]; then ROW_LABEL+=("gather n=$n k=$k"); else ROW_LABEL+=("$w n=$n"); fi
    k=
done
[ ${#ROW_W[@]} -gt 0 ] || die "no workloads"

# ---------------------------------------------------------------- packages (--install only)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
pkgs_for() {
    case $1 in
    tbb) echo libtbb-dev ;;
    omp-gcc) echo gcc ;;
    omp-clang) echo "clang libomp-14-dev" ;;
    go) echo golang-go ;;
    asyncio) echo python3 ;;
    boost-fiber) echo libboost-fiber-dev ;;
    tokio) echo "librust-tokio-dev librust-num-cpus-dev"
        command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || echo cargo ;;
    esac
}
if [ "$INSTALL" = 1 ]; then
    missing=()
    for rt in $RUNTIMES gnuplot; do
        if [ "$rt" = gnuplot ]; then p=gnuplot-nox; command -v gnuplot >/dev/null && continue
        else p=$(pkgs_for "$rt"); fi
        for q in $p; do have_pkg "$q" || missing+=("$q"); done
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== apt-get install ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" ||
            echo "compare.sh: apt-get install failed; the peers needing it will be skipped" >&2
    fi
fi

# ---------------------------------------------------------------- builds
declare -A BIN SKIP BUILD_S
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$PATH:$HOME/.cargo/bin"

stale() { # stale BINARY SOURCE... : true if the binary must be (re)built
    local b=$1; shift
    [ "$REBUILD" = 1 ] || [ ! -x "$b" ] && return 0
    [ -n "$(find "$@" -newer "$b" -type f 2>/dev/null | head -1)" ]
}

build_peer() { # rt -> sets BIN[rt] or SKIP[rt]
    local rt=$1 bin src log=$LOGS/$1.build.log t0 rc=0
    case $rt in
    tbb) bin=$BUILD/tbb-peer src=$PEERS/tbb.cpp ;;
    omp-gcc) bin=$BUILD/omp-gcc-peer src=$PEERS/omp.c ;;
    omp-clang) bin=$BUILD/omp-clang-peer src=$PEERS/omp.c ;;
    go) bin=$BUILD/go-peer src=$PEERS/go ;;
    boost-fiber) bin=$BUILD/boost-fiber-peer src=$PEERS/boost_fiber.cpp ;;
    tokio) bin=$BUILD/tokio-target/release/tokio-peer src=$PEERS/tokio ;;
    asyncio)
        if [ -x "$PY" ]; then BIN[$rt]="$PY $ROOT/$PEERS/asyncio_peer.py"
        else SKIP[$rt]="no $PY"; fi
        return ;;
    esac
    if ! stale "$bin" "$src"; then BIN[$rt]=$bin; BUILD_S[$rt]="up to date"; return; fi
    t0=$(date +%s%N)
    echo "== building $rt (log: $log)"
    case $rt in
    tbb) g++ -O2 -std=c++17 -o "$bin" "$src" -ltbb -pthread >"$log" 2>&1 || rc=$? ;;
    omp-gcc) gcc -O2 -fopenmp -o "$bin" "$src" >"$log" 2>&1 || rc=$? ;;
    omp-clang) clang -O2 -fopenmp -o "$bin" "$src" >"$log" 2>&1 || rc=$? ;;
    boost-fiber) g++ -O2 -std=c++17 -o "$bin" "$src" -lboost_fiber -lboost_context -pthread \
        >"$log" 2>&1 || rc=$? ;;
    go)
        (cd "$src" && env GOCACHE="$BUILD/go/cache" GOPATH="$BUILD/go/path" GOFLAGS=-mod=mod \
            GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local go build -o "$bin" .) >"$log" 2>&1 || rc=$? ;;
    tokio)
        # Build a copy under the build dir so that Cargo.lock never lands in the source tree;
        # .cargo/config.toml (copied along) points crates-io at Debian's registry only.
        local cp=$BUILD/tokio-src lim=()
        [ "$QUICK" = 1 ] && lim=(timeout 120)
        rm -rf "$cp" && mkdir -p "$cp" && cp -r "$src/Cargo.toml" "$src/src" "$src/.cargo" "$cp/" &&
            (cd "$cp" && "${lim[@]}" cargo build --offline --release \
                --target-dir "$BUILD/tokio-target") >"$log" 2>&1 || rc=$?
        if [ "$rc" = 124 ]; then
            SKIP[$rt]="build took >120 s: not built in --quick mode"; rm -f "$bin"; return
        fi ;;
    esac
    t0=$((($(date +%s%N) - t0) / 100000000))
    BUILD_S[$rt]="$((t0 / 10)).$((t0 % 10)) s"
    if [ "$rc" = 0 ] && [ -x "$bin" ]; then
        BIN[$rt]=$bin
        echo "   $rt built in ${BUILD_S[$rt]}"
    else
        SKIP[$rt]="build failed (see $log)"
        echo "   $rt: build FAILED (rc=$rc), skipped; last lines of $log:" >&2
        tail -5 "$log" | sed 's/^/     /' >&2
    fi
}

STATUS=0
for rt in $RUNTIMES; do
    if [ "$rt" = weft ]; then
        WB=${WEFT_BENCH:-build/release/bench/weft-bench}
        if [ ! -x "$WB" ] && [ -z "${WEFT_BENCH:-}" ] && [ -f CMakeLists.txt ]; then
            echo "== $WB missing: building it with cmake (log: $LOGS/weft.build.log)"
            { cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release &&
                cmake --build build/release --target weft-bench -j "$(nproc)"; } \
                >"$LOGS/weft.build.log" 2>&1
        fi
        if [ ! -x "$WB" ]; then
            echo "compare.sh: FAIL: weft driver '$WB' not found or not executable." >&2
            echo "  Build it (cmake --build build/release), set WEFT_BENCH, or leave weft out" \
                "with --runtimes." >&2
            exit 1
        fi
        BIN[weft]=$WB
        continue
    fi
    build_peer "$rt"
done

# ---------------------------------------------------------------- runs
RAW=$OUT/raw.tsv
printf 'round\trow\tworkload\tn\tk\truntime\tstatus\tr\tms\trss_kb\n' >"$RAW"
declare -A LEFT # "row rt" -> reason it was left out of the rest of that row
FAILS=()
runnable=()
for rt in $RUNTIMES; do [ -n "${BIN[$rt]:-}" ] && runnable+=("$rt"); done
[ ${#runnable[@]} -gt 0 ] || { echo "compare.sh: nothing to run" >&2; exit 1; }

fail() { FAILS+=("$1"); echo "FAIL: $1" >&2; }

echo "== running: ${runnable[*]} | workers=$WORKERS rounds=$ROUNDS limit=${LIMIT}s"
for ((row = 0; row < ${#ROW_W[@]}; row++)); do
    w=${ROW_W[$row]} n=${ROW_N[$row]} k=${ROW_K[$row]} only=${ROW_ONLY[$row]}
    exp=$(expected "$w" "$n" "$k")
    for ((round = 1; round <= ROUNDS; round++)); do
        for rt in "${runnable[@]}"; do
            [ -n "$only" ] && [[ " $only " != *" $rt "* ]] && continue
            [ -n "${LEFT[$row $rt]:-}" ] && continue
            args=("$w" "$n")
            [ "$w" = gather ] && args+=(-k "$k")
            args+=(-w "$WORKERS")
            # shellcheck disable=SC2086  # BIN may be "python3 script.py"
            # (the outer 2>/dev/null only silences bash's "Segmentation fault" job notice)
            { timeout -s KILL "$LIMIT" ${BIN[$rt]} "${args[@]}" >"$BUILD/run.out" 2>"$BUILD/run.err"
                rc=$?; } 2>/dev/null
            line=$(grep -E "^$rt $w n=$n r=-?[0-9]+ ms=[0-9]+(\.[0-9]+)? rss_kb=[0-9]+\$" \
                "$BUILD/run.out" | tail -1)
            r='' ms='' rss='' st=''
            if [ "$rc" = 0 ] && [ -n "$line" ]; then
                [[ $line =~ r=(-?[0-9]+)\ ms=([0-9.]+)\ rss_kb=([0-9]+) ]]
                r=${BASH_REMATCH[1]} ms=${BASH_REMATCH[2]} rss=${BASH_REMATCH[3]}
                if [ "$r" = "$exp" ]; then st=ok; else
                    st=wrong
                    fail "$rt $w n=$n${k:+ k=$k}: r=$r but expected $exp"
                fi
            elif [ "$rc" = 3 ] && [ -z "$line" ]; then
                st=na; LEFT[$row $rt]=na
            elif [ "$rc" = 137 ] || [ "$rc" = 124 ]; then
                st=timeout; LEFT[$row $rt]=timeout
                echo "   $rt $w n=$n: over ${LIMIT}s, killed; left out of this row" >&2
                [ "$rt" = weft ] && fail "weft $w n=$n took over ${LIMIT}s"
            else
                st=error; LEFT[$row $rt]="error"
                msg="$rt ${args[*]}: exit $rc, $(if [ -n "$line" ]; then echo "line ok"; else
                    echo "no valid result line"; fi); stderr: $(tail -c 300 "$BUILD/run.err" | tr '\n' ' ')"
                if [ "$rt" = weft ] || [ "$QUICK" = 1 ]; then fail "$msg"; else
                    echo "   WARNING: $msg (left out of this row)" >&2; fi
            fi
            printf '%s\n' "${line:-$rt $w n=$n: $st (rc=$rc)}"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$w" "$n" "$k" \
                "$rt" "$st" "$r" "$ms" "$rss" >>"$RAW"
        done
    done
done
rm -f "$BUILD/run.out" "$BUILD/run.err"

# ---------------------------------------------------------------- tables and chart
SKIPS=
for rt in $RUNTIMES; do [ -n "${SKIP[$rt]:-}" ] && SKIPS+="$rt=${SKIP[$rt]}"$'\n'; done
BUILDS=
for rt in $RUNTIMES; do [ -n "${BUILD_S[$rt]:-}" ] && BUILDS+="$rt=${BUILD_S[$rt]}"$'\n'; done
labels=$(printf '%s\n' "${ROW_LABEL[@]}")
if ! RT_LIST="$RUNTIMES" SKIPS="$SKIPS" BUILDS="$BUILDS" LABELS="$labels" WORKERS="$WORKERS" \
    ROUNDS="$ROUNDS" LIMIT="$LIMIT" QUICK="$QUICK" \
    $PY - "$RAW" "$OUT/results.md" "$OUT/results.dat" <<'PYEOF'
import os, platform, statistics, sys, time
raw, md_path, dat_path = sys.argv[1:4]
rts = os.environ["RT_LIST"].split()
labels = os.environ["LABELS"].split("\n")
skips = dict(l.split("=", 1) for l in os.environ["SKIPS"].splitlines() if l)
builds = dict(l.split("=", 1) for l in os.environ["BUILDS"].splitlines() if l)
runs = {}   # (row, rt) -> list of (status, ms, rss)
with open(raw) as f:
    next(f)
    for line in f:
        rnd, row, w, n, k, rt, st, r, ms, rss = line.rstrip("\n").split("\t")
        runs.setdefault((int(row), rt), []).append((st, float(ms or 0), int(rss or 0)))
limit = os.environ["LIMIT"]

def cell(row, rt):
    """-> (median ms or None, median rss or None, text note or None)"""
    if rt in skips:
        return None, None, "skipped"
    rs = runs.get((row, rt))
    if not rs:
        return None, None, "-"
    ok = [x for x in rs if x[0] == "ok"]
    bad = {x[0] for x in rs if x[0] != "ok"}
    if "wrong" in bad:
        return None, None, "WRONG"
    if ok and not bad:
        return statistics.median(x[1] for x in ok), statistics.median(x[2] for x in ok), None
    if "na" in bad:
        return None, None, "n/a"
    if "timeout" in bad:
        return None, None, f"left out (>{limit} s)"
    return None, None, "error"

def fmt_ms(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"

hdr = "| workload | " + " | ".join(rts) + " |\n|---|" + "---:|" * len(rts) + "\n"
t_ms, t_ratio, t_rss = hdr, hdr, hdr
dat = ["workload " + " ".join(f'"{rt}"' for rt in rts)]
for row, label in enumerate(labels):
    cells = [cell(row, rt) for rt in rts]
    weft = cells[rts.index("weft")][0] if "weft" in rts else None
    t_ms += f"| {label} | " + " | ".join(fmt_ms(c[0]) if c[0] is not None else c[2] for c in cells) + " |\n"
    t_rss += f"| {label} | " + " | ".join(f"{c[1]:.0f}" if c[1] is not None else c[2] for c in cells) + " |\n"
    rat = []
    for rt, c in zip(rts, cells):
        if rt == "weft":
            rat.append("1" if weft else (c[2] or "-"))
        elif c[0] is None:
            rat.append(c[2])
        elif not weft:
            rat.append("-")
        else:
            rat.append(f"{c[0] / weft:.2f}")
    t_ratio += f"| {label} | " + " | ".join(rat) + " |\n"
    dat.append('"' + label + '" ' +
               " ".join(f"{c[0]:.3f}" if c[0] is not None else "-" for c in cells))

quick = os.environ["QUICK"] == "1"
md = [f"# weft vs peers{' (--quick: correctness only, one run)' if quick else ''}", "",
      f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} CPUs, "
      f"workers={os.environ['WORKERS']}, median of {os.environ['ROUNDS']} alternating rounds "
      f"(each round runs every runtime once, in the order of the columns), per-run limit {limit} s.", "",
      "## Wall time, median ms", "", t_ms,
      "## weft's ratio to each peer: peer_ms / weft_ms (> 1: weft is faster)", "",
      t_ratio if "weft" in rts else "(weft was not run)\n",
      "## Peak RSS, median KiB (ru_maxrss / VmHWM)", "", t_rss,
      "Cells: `n/a` the runtime has no natural form of that workload (exit 3); "
      f"`left out (>{limit} s)` a run exceeded the limit at that n, so the runtime was left out "
      "of that row; `skipped` its build failed or it could not run; `error` it crashed "
      "(see the log printed above); `-` not run.", ""]
if skips:
    md += ["Skipped runtimes:", ""] + [f"- {rt}: {why}" for rt, why in skips.items()] + [""]
if builds:
    md += ["Build times: " + ", ".join(f"{rt} {t}" for rt, t in builds.items()), ""]
md += ["Timing: tbb, omp-*, asyncio, boost-fiber and tokio include runtime start; go does not "
       "(its scheduler is up before main); see the comment at the top of each peer in bench/peers/ "
       "and, for weft, bench/weft-bench.c.", ""]
text = "\n".join(md)
open(md_path, "w").write(text)
open(dat_path, "w").write("\n".join(dat) + "\n")
print("\n" + text)
PYEOF
then
    echo "compare.sh: table generation failed" >&2
    STATUS=1
fi

if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$OUT/results.dat'; outfile='$OUT/results.png'; nrt=$(wc -w <<<"$RUNTIMES"); \
        subtitle='workers=$WORKERS, median of $ROUNDS'" bench/compare-plot.gp 2>"$LOGS/gnuplot.log" ||
        echo "compare.sh: gnuplot failed (see $LOGS/gnuplot.log); no chart" >&2
else
    echo "compare.sh: gnuplot not found (install gnuplot-nox, or pass --install); no chart" >&2
fi
echo "== wrote $OUT/results.md, $OUT/results.png, $RAW"

if [ ${#FAILS[@]} -gt 0 ]; then
    echo "" >&2
    echo "compare.sh: FAILED, ${#FAILS[@]} problem(s):" >&2
    printf '  %s\n' "${FAILS[@]}" >&2
    exit 1
fi
exit $STATUS
