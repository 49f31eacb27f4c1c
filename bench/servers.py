#!/usr/bin/env python3
"""Server benchmarks (issue 12): weft's examples against Go 1.19 and a bare epoll loop.

  http  HTTP/1.1 "hello" keep-alive under wrk -c100 (--latency: p99): examples/http_server vs
        Go net/http (bench/peers/go-net) vs bench/peers/epoll_http.c (2 threads, no parser);
  echo  ping-pong of 64-byte messages over 1000 connections, driven by examples/echo_client
        (the same client for every server): examples/echo_server vs Go's goroutine-per-conn and
        Tokio's task-per-conn (bench/peers/tokio-net, built offline from Debian's crates);
  idle  10 000 idle keep-alive connections (each sent one request and got its answer): the
        server's RSS growth per connection, weft vs Go.

Every server gets the same parallelism: WEFT_WORKERS / GOMAXPROCS / epoll threads = --workers.
Cores: by default nothing is pinned and the load tool shares the machine's CPUs with the server
(on the 2-vCPU VM: both); --pin puts the server on CPU 0 and the load tool on CPU 1 (taskset),
with --workers 1. Rounds alternate the servers (A B C A B C ...), medians are reported.

usage: bench/servers.py [--build build/release] [--rounds 3] [--duration 5] [--pin]
                        [--only http,echo,idle] [--workers 2]
Needs wrk (scripts/deps.sh bench) for http; a missing wrk skips that part with a message.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process started on a fresh port; stopped (by its own pid) on exit."""

    def __init__(self, argv, env, pin):
        self.port = free_port()
        argv = [a.replace("PORT", str(self.port)) for a in argv]
        if pin:
            argv = ["taskset", "-c", "0"] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **env}, text=True)
        self.proc.stdout.readline()  # every server prints one line once it listens
        self.wait_listening()

    def wait_listening(self):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("server did not listen")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def build_peers(build):
    out = os.path.join(build, "bench-peers")
    os.makedirs(out, exist_ok=True)
    epoll = os.path.join(out, "epoll_http")
    subprocess.run(["cc", "-O2", "-pthread", "-o", epoll,
                    os.path.join(ROOT, "bench/peers/epoll_http.c")], check=True)
    go = os.path.join(out, "go-net")
    if shutil.which("go"):
        subprocess.run(["go", "build", "-o", go, "."], cwd=os.path.join(ROOT, "bench/peers/go-net"),
                       check=True, env={**os.environ, "GOFLAGS": "-mod=mod"})
    else:
        go = None
    tokio = None
    if shutil.which("cargo"):  # offline, Debian's crates only (bench/peers/tokio-net/.cargo)
        target = os.path.join(out, "tokio-net-target")
        r = subprocess.run(["cargo", "build", "--offline", "--release", "--target-dir", target],
                           cwd=os.path.join(ROOT, "bench/peers/tokio-net"), capture_output=True)
        if r.returncode == 0:
            tokio = os.path.join(target, "release", "tokio-net-peer")
        else:
            print("tokio: build failed (librust-tokio-dev?): skipped")
    return epoll, go, tokio


def wrk(port, opts):
    argv = ["wrk", f"-t{opts.workers}", "-c100", f"-d{opts.duration}s", "--latency",
            f"http://127.0.0.1:{port}/"]
    if opts.pin:
        argv = ["taskset", "-c", "1"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_us = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, p99_us, errors.group(0) if errors else ""


def bench_http(opts, servers):
    if not shutil.which("wrk"):
        print("http: wrk not found (scripts/deps.sh bench installs it): skipped")
        return {}
    res = {name: [] for name in servers}
    for r in range(opts.rounds):
        for name, (argv, env) in servers.items():
            s = Server(argv, env, opts.pin)
            try:
                rps, p99, err = wrk(s.port, opts)
            finally:
                s.stop()
            res[name].append((rps, p99))
            print(f"http round {r + 1} {name}: {rps:,.0f} req/s p99 {p99:.0f} us {err}", flush=True)
    return res


def bench_echo(opts, servers, client):
    res = {name: [] for name in servers}
    for r in range(opts.rounds):
        for name, (argv, env) in servers.items():
            s = Server(argv, env, opts.pin)
            try:
                cmd = [client, "127.0.0.1", str(s.port), "1000", str(opts.duration), "64"]
                if opts.pin:
                    cmd = ["taskset", "-c", "1"] + cmd
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                     env={**os.environ, "WEFT_WORKERS": str(opts.workers)}).stdout
                m = re.search(r"([\d.]+) msgs/s", out)
                v = float(m.group(1)) if m else 0.0
            finally:
                s.stop()
            res[name].append(v)
            print(f"echo round {r + 1} {name}: {v:,.0f} msgs/s", flush=True)
    return res


def idle_conns(port, n):
    """n keep-alive connections, each answered once; returned open."""
    conns = []
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        conns.append(s)
    for s in conns:
        data = b""
        while not data.endswith(b"hello, world\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed")
            data += chunk
    return conns


def bench_idle(opts, servers, n=10000):
    res = {}
    for name, (argv, env) in servers.items():
        s = Server(argv, env, False)
        try:
            idle_conns(s.port, 100)  # warm: first allocations, thread stacks
            before = s.rss_kb()
            conns = idle_conns(s.port, n)
            time.sleep(0.5)
            after = s.rss_kb()
            for c in conns:
                c.close()
        finally:
            s.stop()
        res[name] = (after - before) * 1024 / n
        print(f"idle {name}: RSS {before} -> {after} KiB: {res[name]:.0f} bytes/connection",
              flush=True)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build/release"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pin", action="store_true")
    p.add_argument("--only", default="http,echo,idle")
    opts = p.parse_args()
    if opts.pin:
        opts.workers = 1
    ex = os.path.join(opts.build, "examples")
    epoll, go, tokio = build_peers(opts.build)
    wenv = {"WEFT_WORKERS": str(opts.workers)}
    genv = {"GOMAXPROCS": str(opts.workers)}
    parts = opts.only.split(",")
    report = []
    if "http" in parts:
        servers = {"weft": ([os.path.join(ex, "http_server"), "PORT"], wenv)}
        if go:
            servers["go"] = ([go, "http", "PORT"], genv)
        servers["epoll"] = ([epoll, "PORT", str(opts.workers)], {})
        res = bench_http(opts, servers)
        if res:
            med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                   for k, v in res.items()}
            report.append("| HTTP hello, wrk -c100 | req/s (median) | p99 (median) | weft / it |")
            report.append("|---|---|---|---|")
            for k, (rps, p99) in med.items():
                report.append(f"| {k} | {rps:,.0f} | {p99:,.0f} µs | "
                              f"{med['weft'][0] / rps:.2f}× |")
    if "echo" in parts:
        servers = {"weft": ([os.path.join(ex, "echo_server"), "PORT"], wenv)}
        if go:
            servers["go"] = ([go, "echo", "PORT"], genv)
        if tokio:
            servers["tokio"] = ([tokio, "echo", "PORT"], {"TOKIO_WORKERS": str(opts.workers)})
        res = bench_echo(opts, servers, os.path.join(ex, "echo_client"))
        med = {k: statistics.median(v) for k, v in res.items()}
        report.append("")
        report.append("| echo, 1000 conns, 64 B | msgs/s (median) | weft / it |")
        report.append("|---|---|---|")
        for k, v in med.items():
            report.append(f"| {k} | {v:,.0f} | {med['weft'] / v if v else 0:.2f}× |")
    if "idle" in parts:
        servers = {"weft": ([os.path.join(ex, "http_server"), "PORT"], wenv)}
        if go:
            servers["go"] = ([go, "http", "PORT"], genv)
        res = bench_idle(opts, servers)
        report.append("")
        report.append("| 10 000 idle keep-alive connections | RSS per connection |")
        report.append("|---|---|")
        for k, v in res.items():
            report.append(f"| {k} | {v / 1024:.1f} KiB |")
    print()
    print(f"workers {opts.workers}, {'pinned: server CPU 0, load CPU 1' if opts.pin else 'unpinned'}"
          f", {opts.rounds} rounds x {opts.duration} s")
    print("\n".join(report))


if __name__ == "__main__":
    main()
