#!/usr/bin/env python3
"""A/B two weft-bench binaries: alternating runs (A, B, A, B, ...) per round, medians.

Usage: python3 bench/ab.py A_BINARY B_BINARY [--rounds N]
Prints one Markdown row per workload: median ms of A and B and B/A. Each run's result `r`
must agree between the two binaries (a regression that changes results is not a speed-up).
"""
import argparse
import re
import statistics
import subprocess

WORKLOADS = [("fib", "35"), ("spawn", "1000000"), ("yield", "10000000"), ("sleep", "100000"),
             ("skynet", "1000000"), ("gather", "10000"), ("inject", "1000000"),
             ("pingpong", "1000000"), ("chan", "10000000"), ("mutex", "8000000")]
LINE = re.compile(r"^weft (\S+) n=(\d+) r=(\S+) ms=([\d.]+) rss_kb=(\d+)")


def run(binary, workload, n):
    out = subprocess.run([binary, workload, n], check=True, capture_output=True, text=True).stdout
    m = LINE.match(out.strip().splitlines()[-1])
    if not m:
        raise SystemExit(f"{binary} {workload} {n}: unparsable output {out!r}")
    return m.group(3), float(m.group(4)), int(m.group(5))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", help="comma-separated workload names (default: all)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    print("| workload | A median ms | B median ms | B/A | A rss MB | B rss MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for workload, n in WORKLOADS:
        if only and workload not in only:
            continue
        times = {args.a: [], args.b: []}
        rss = {args.a: 0, args.b: 0}
        results = set()
        for _ in range(args.rounds):
            for binary in (args.a, args.b):
                r, ms, kb = run(binary, workload, n)
                results.add(r)
                times[binary].append(ms)
                rss[binary] = max(rss[binary], kb)
        if len(results) != 1:
            raise SystemExit(f"{workload}: results differ: {results}")
        a, b = statistics.median(times[args.a]), statistics.median(times[args.b])
        print(f"| {workload} {n} | {a:.1f} | {b:.1f} | {b / a:.3f} | {rss[args.a] / 1024:.0f} | "
              f"{rss[args.b] / 1024:.0f} |", flush=True)


if __name__ == "__main__":
    main()
