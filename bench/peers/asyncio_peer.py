#!/usr/bin/python3
"""Python asyncio peer for weft's benchmark driver (run with Debian's /usr/bin/python3).

usage: asyncio_peer.py <workload> <n> [k | -k <k>] [-w <workers>]   (k: gather only, default 10;
       workers is accepted and ignored: asyncio runs on one thread)
prints: asyncio <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>

Timing INCLUDES runtime start: the clock starts just before asyncio.run() creates the event
loop and stops when the root coroutine has gathered everything.
A "spawned task" is asyncio.create_task(); a "direct call" is `await coro()` (no task).
"""
import asyncio
import resource
import sys
import time


async def fib(n):
    # Lace style: spawn fib(n-1) as a task, compute fib(n-2) directly, wait.
    if n < 2:
        return n
    t = asyncio.create_task(fib(n - 1))
    b = await fib(n - 2)
    return await t + b


async def skynet(num, size):
    if size == 1:
        return num
    sub = size // 10
    tasks = [asyncio.create_task(skynet(num + i * sub, sub)) for i in range(10)]
    s = 0
    for t in tasks:
        s += await t
    return s


async def one():
    return 1


async def gather_each(n, body):
    tasks = [asyncio.create_task(body(i)) for i in range(n)]
    s = 0
    for t in tasks:
        s += await t
    return s


async def spawn_all(n):
    return await gather_each(n, lambda i: one())


async def yield_all(n):
    per = n // 1000

    async def body(i):
        c = 0
        for _ in range(per):
            await asyncio.sleep(0)
            c += 1
        return c

    return await gather_each(1000, body)


async def sleep_all(n):
    async def body(i):
        await asyncio.sleep((i * 7919 % 1000) / 1000.0)
        return i

    return await gather_each(n, body)


async def gather_sleeps(n, k):
    async def body(i):
        c = 0
        for _ in range(k):
            await asyncio.sleep(0.001)
            c += 1
        return c

    return await gather_each(n, body)


def usage():
    sys.stderr.write("usage: asyncio_peer.py <fib|skynet|spawn|yield|sleep|gather> <n> [k | -k k] [-w workers]\n")
    sys.exit(2)


def main():
    args = sys.argv[1:]
    pos = []
    kopt = None
    i = 0
    while i < len(args):
        if args[i] == "-w" and i + 1 < len(args):
            i += 2  # workers: ignored, asyncio is single-threaded
            continue
        if args[i] == "-k" and i + 1 < len(args):
            kopt = args[i + 1]
            i += 2
            continue
        pos.append(args[i])
        i += 1
    if len(pos) < 2:
        usage()
    wl = pos[0]
    try:
        n = int(pos[1])
        k = int(kopt if kopt is not None else pos[2] if len(pos) > 2 else 10)
    except ValueError:
        usage()
    roots = {
        "fib": lambda: fib(n),
        "skynet": lambda: skynet(0, n),
        "spawn": lambda: spawn_all(n),
        "yield": lambda: yield_all(n),
        "sleep": lambda: sleep_all(n),
        "gather": lambda: gather_sleeps(n, k),
    }
    if wl not in roots or n < 0:
        usage()
    sys.setrecursionlimit(10000)
    t0 = time.perf_counter()
    r = asyncio.run(roots[wl]())
    ms = (time.perf_counter() - t0) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"asyncio {wl} n={n} r={r} ms={ms:.1f} rss_kb={rss}", flush=True)


if __name__ == "__main__":
    main()
