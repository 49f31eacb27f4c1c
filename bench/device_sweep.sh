#!/bin/bash
# bench/device_sweep.sh - the scaling sweep for a lent many-core machine that has no compilers,
# no Debian packages and no network (the workplace's 16-core device machine).
#
#   bash bench/device_sweep.sh pack [BUNDLE]      here: build and copy into BUNDLE (default .dev,
#                                                 which .git/info/exclude should ignore) every
#                                                 binary the run needs, and the shared libraries
#                                                 the target may lack (oneTBB, libgomp, libomp,
#                                                 libstdc++, http-parser, wrk's LuaJIT and TLS)
#   bash bench/device_sweep.sh run [BUNDLE] [OUT] there: the sweep; results under OUT (default
#                                                 $OUT): log.txt and sweep.tgz (each phase's
#                                                 compare.py / servers.py output), refreshed after
#                                                 every phase so that a run cut short still returns
#                                                 what it finished
#
# Phases (SWEEP_PHASES, default "1 2 3 4"; all six take about 9 minutes on 16 cores):
# (1) bench/compare.py's fork-join and scheduling rows, weft against its peers at 1, 2, 4, 8 and
# 16 workers, 3 alternating rounds; (2) echo and HTTP servers with the server on the first half
# of the CPUs and the load on the other half (as many workers as load threads); (3) sleep 10^6
# at all CPUs' workers; (4) sleep 10^5 at each worker count, one round; (5) HTTP at 1, 2, 4 and
# 8 server CPUs, the load on the other half, 2 rounds (where each server stops scaling; weft's
# schedtrace lines, a second apart, kept with every server's stderr);
# (6) bench/wake_latency at each worker count; (7) an A/B of the HTTP and echo servers against
# a base build's (pack copies build/base/examples when it exists), 3 rounds alternating.
# SWEEP_QUICK=1 shrinks every size (a check of
# the script itself, on any machine).
set -u
cmd=${1:-}
B=$(realpath -m "${2:-.dev}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)

pack() {
    local rel=$ROOT/build/release peers=$ROOT/build/peers
    cmake --build "$rel" -j"$(nproc)" >/dev/null || return 1
    python3 "$ROOT/bench/compare.py" --quick --weft-bench "$rel/bench/weft-bench" \
        --workloads "fib:10" --runtimes "tbb omp-gcc omp-clang go tokio pthread" \
        --build-dir "$peers" >/dev/null || return 1
    [ -x "$rel/bench-peers/go-net" ] || python3 "$ROOT/bench/servers.py" --build "$rel" \
        --only echo --rounds 1 --duration 1 --conns 10 >/dev/null || return 1
    rm -rf "$B" && mkdir -p "$B"/{build/bench,build/examples,peers/tokio-target/release,net,lib,bin}
    cp "$rel/bench/weft-bench" "$rel/bench/echo_load" "$rel/bench/wake_latency" "$B/build/bench/"
    cp "$rel/examples/http_server" "$rel/examples/echo_server" "$B/build/examples/"
    cp "$peers"/{tbb,omp-gcc,omp-clang,go,pthread}-peer "$B/peers/"
    cp "$peers/tokio-target/release/tokio-peer" "$B/peers/tokio-target/release/"
    cp "$rel/bench-peers"/{go-net,epoll_http} \
        "$rel/bench-peers/tokio-net-target/release/tokio-net-peer" "$B/net/"
    cp "$(command -v wrk)" "$B/bin/"
    if [ -x "$ROOT/build/base/examples/http_server" ]; then  # phase 7's A/B baseline
        mkdir -p "$B/base/examples"
        cp "$ROOT/build/base/examples/http_server" "$ROOT/build/base/examples/echo_server" \
            "$B/base/examples/"
    fi
    # Every library outside glibc that a carried binary links: the target's own may be missing
    # or older. glibc itself stays (the target's is newer, and a mismatched loader breaks all).
    for f in "$B"/build/*/* "$B"/peers/*-peer "$B"/peers/tokio-target/release/* "$B"/net/* \
             "$B"/bin/*; do
        ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}'
    done | sort -u | grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
        xargs -r cp -L -t "$B/lib/"
    du -sh "$B"
}

want() { [[ " $phases " == *" $1 "* ]]; }

phase_done() {  # refresh OUT's archive after each phase
    tar -C "$W" -czf "$OUT_DIR/sweep.tgz" . 2>/dev/null
}

run() {
    OUT_DIR=$(realpath -m "${3:-${OUT:?no OUT given}}")
    W=$(mktemp -d)
    mkdir -p "$OUT_DIR"
    exec > >(tee "$OUT_DIR/log.txt") 2>&1
    export LD_LIBRARY_PATH=$B/lib PYTHONUNBUFFERED=1
    local q=${SWEEP_QUICK:-0} ws="1 2 4 8 16" rounds=3 dur=4
    local rows="fib:32@weft,tbb,omp-gcc,omp-clang,tokio fib-frame:32@weft skynet:1000000
        spawn:1000000 spawn-detached:1000000 yield:1000000@weft,go,tokio gather:10000:10
        chan:1000000@weft,go,tokio mutex:1000000@weft,go,tokio,pthread
        pingpong:100000@weft,go,tokio inject:100000@weft,go,tokio cancel:100000@weft,go,tokio"
    local sleep_big=1000000 sleep_small=100000
    if [ "$q" = 1 ]; then
        ws="1 2" rounds=1 dur=1 sleep_big=2000 sleep_small=1000
        rows="fib:20@weft,tbb,omp-gcc,omp-clang,tokio fib-frame:20@weft skynet:10000
            spawn:10000 yield:10000@weft,go,tokio gather:100:3 mutex:10000@weft,go,pthread"
    fi
    local phases=${SWEEP_PHASES:-1 2 3 4}
    date -u; uname -r; nproc; free -g | head -2
    grep -m1 "model name" /proc/cpuinfo
    echo "threads per core: $(lscpu 2>/dev/null | awk -F: '/Thread\(s\) per core/ {print $2}')"
    ldd "$B/peers/tbb-peer" "$B/bin/wrk" | grep -i "not found"
    local cmp=(python3 "$ROOT/bench/compare.py" --prebuilt --build-dir "$B/peers"
               --weft-bench "$B/build/bench/weft-bench" --limit 40
               --runtimes "weft tbb omp-gcc omp-clang go tokio pthread")
    local cpus=$(nproc) half=$(( $(nproc) / 2 ))
    want 1 && echo "== phase 1: compare.py rows at workers $ws, $rounds rounds"
    want 1 && for w in $ws; do
        echo "== workers $w $(date -u +%T)"
        "${cmp[@]}" --workers "$w" --rounds "$rounds" --workloads "$(echo $rows)" \
            --out "$W/w$w" > "$W/w$w.log" 2>&1
        echo "rc=$?"; sed -n '/^| workload/,/^$/p' "$W/w$w/results.md"
        phase_done
    done
    want 2 && echo "== phase 2: servers, CPUs 0-$((half - 1)) serve, the rest load $(date -u +%T)"
    want 2 && python3 "$ROOT/bench/servers.py" --build "$B/build" --prebuilt "$B/net" --wrk "$B/bin/wrk" \
        --only echo,http --workers "$half" --server-cpus "0-$((half - 1))" \
        --load-cpus "$half-$((cpus - 1))" --load-threads "$half" --rounds "$rounds" \
        --duration "$dur" 2>&1 | tee "$W/servers.log" && phase_done
    if want 3; then
        echo "== phase 3: sleep $sleep_big at $cpus workers $(date -u +%T)"
        "${cmp[@]}" --workers "$cpus" --rounds "$rounds" \
            --workloads "sleep:$sleep_big@weft,go,tokio" --out "$W/sleep-big" \
            > "$W/sleep-big.log" 2>&1
        sed -n '/^| workload/,/^$/p' "$W/sleep-big/results.md"
        phase_done
    fi
    want 4 && echo "== phase 4: sleep $sleep_small at workers $ws, one round $(date -u +%T)"
    want 4 && for w in $ws; do
        "${cmp[@]}" --workers "$w" --rounds 1 --workloads "sleep:$sleep_small@weft,go,tokio" \
            --out "$W/sleep-w$w" > "$W/sleep-w$w.log" 2>&1
        grep -h "^weft sleep\|^go sleep\|^tokio sleep" "$W/sleep-w$w.log" | sed "s/^/w=$w /"
        phase_done
    done
    want 5 && echo "== phase 5: HTTP at 1, 2, 4, ... $half server CPUs $(date -u +%T)"
    want 5 && for w in 1 2 4 8 16; do
        [ "$w" -le "$half" ] || break
        python3 "$ROOT/bench/servers.py" --build "$B/build" --prebuilt "$B/net" \
            --wrk "$B/bin/wrk" --only http --workers "$w" --server-cpus "0-$((w - 1))" \
            --load-cpus "$half-$((cpus - 1))" --load-threads "$half" --rounds 2 \
            --duration "$dur" --weft-env WEFT_TRACE=schedtrace:1000 \
            --keep-stderr "$W/http-w$w-stderr" > "$W/http-w$w.log" 2>&1
        sed -n '/^| HTTP/,/^$/p' "$W/http-w$w.log" | sed "s/^/w=$w /"
        phase_done
    done
    want 6 && echo "== phase 6: wake_latency at workers $ws $(date -u +%T)"
    want 6 && for w in $ws; do
        timeout 60 "$B/build/bench/wake_latency" "$w" 3000 | tee -a "$W/wake_latency.log"
    done && phase_done
    want 7 && [ -d "$B/base" ] && echo "== phase 7: A/B against the base build, HTTP at 2, 4, 8 server CPUs, echo at 8 $(date -u +%T)"
    want 7 && [ -d "$B/base" ] && for w in 2 4 8; do
        [ "$w" -le "$half" ] || break
        python3 "$ROOT/bench/servers.py" --build "$B/build" --base "$B/base" --prebuilt "$B/net" \
            --wrk "$B/bin/wrk" --only http --workers "$w" --server-cpus "0-$((w - 1))" \
            --load-cpus "$half-$((cpus - 1))" --load-threads "$half" --rounds "${AB_ROUNDS:-3}" \
            --duration "$dur" > "$W/ab-http-w$w.log" 2>&1
        grep -h "^http round\|^| " "$W/ab-http-w$w.log" | sed "s/^/w=$w /"
        phase_done
    done
    want 7 && [ -d "$B/base" ] && python3 "$ROOT/bench/servers.py" --build "$B/build" \
        --base "$B/base" --prebuilt "$B/net" --only echo --workers "$half" \
        --server-cpus "0-$((half - 1))" --load-cpus "$half-$((cpus - 1))" \
        --load-threads "$half" --rounds 2 --duration "$dur" 2>&1 | tee "$W/ab-echo.log" &&
        phase_done
    echo "== done $(date -u +%T)"
}

case "$cmd" in
    pack) pack ;;
    run) run "$@" ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
