#!/usr/bin/env python3
"""Server benchmarks (issue 12): weft's examples against Go 1.19 and a bare epoll loop.

  http  HTTP/1.1 "hello" keep-alive under wrk -c100 (--latency: p99): examples/http_server vs
        Go net/http (bench/peers/go-net) vs bench/peers/epoll_http.c (2 threads, no parser);
  echo  ping-pong of 64-byte messages over 1000 connections, each with one message in flight,
        driven by bench/peers/echo_load.c (plain C and epoll, no weft: the same lean client for
        every server; msgs/s, p99 round trip and the server's CPU per message): examples/echo_server vs Go's
        goroutine-per-conn and Tokio's task-per-conn (bench/peers/tokio-net, built offline from
        Debian's crates);
  idle  10 000 idle keep-alive connections (each sent one request and got its answer): the
        server's RSS growth per connection, weft vs Go.

Every server gets the same parallelism: WEFT_WORKERS / GOMAXPROCS / epoll threads = --workers.
Cores: by default nothing is pinned and the load tool shares the machine's CPUs with the server
(on the 2-vCPU VM: both; echo_load then runs --workers threads); --pin puts the server on CPU 0
and the load tool on CPU 1 (taskset), with --workers 1 and one load thread: the fairest
comparison on 2 vCPUs. Rounds alternate the servers (A B C A B C ...), medians are reported.

Peers are built into <build>/bench-peers from a fresh build dir too: Go offline (GOPROXY=off,
its caches in the build dir), Tokio from a copy of its sources under the build dir against
Debian's crates (as bench/compare.py does), every path absolute. A server that exits or does
not listen is reported with its exit status and the tail of its stderr.

usage: bench/servers.py [--build build/release] [--rounds 3] [--duration 5] [--pin]
                        [--only http,echo,idle] [--workers 2] [--conns 1000] [--base BUILD]
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
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process started on a fresh port; stopped (by its own pid) on exit."""

    def __init__(self, argv, env, cpus):
        self.port = free_port()
        self.argv = [a.replace("PORT", str(self.port)) for a in argv]
        if not os.access(self.argv[0], os.X_OK):
            raise RuntimeError(f"server binary missing: {self.argv[0]}")
        if cpus:
            self.argv = ["taskset", "-c", cpus] + self.argv
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.err,
                                     env={**os.environ, **env})
        try:
            self.wait_listening()
        except RuntimeError:
            self.stop()
            raise

    def wait_listening(self):
        """Connects until the port answers (every server listens before it serves); fails at
        once if the process exits, after 10 s if it never listens."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.describe()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"server did not listen within 10 s: {self.describe()}")

    def describe(self):
        self.err.seek(0)
        tail = self.err.read()[-400:].decode(errors="replace").strip()
        return f"{' '.join(self.argv)}; stderr: {tail or '(empty)'}"

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_s(self):
        """The server's CPU time so far (user + system, all threads), in seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, keep_stderr=None):
        """SIGTERM, then SIGKILL after 10 s; keep_stderr: a path to save the server's stderr to."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if keep_stderr:
            self.err.seek(0)
            with open(keep_stderr, "wb") as f:
                shutil.copyfileobj(self.err, f)
        self.err.close()


def find_tool(name):
    """name on PATH, or in ~/.cargo/bin for cargo (rustup's place, which bench/compare.py adds)."""
    found = shutil.which(name)
    if not found and name == "cargo":
        home = os.path.expanduser("~/.cargo/bin/cargo")
        found = home if os.access(home, os.X_OK) else None
    return found


def build_peers(build):
    """Builds the peers into <build>/bench-peers. Every path is absolute: go and cargo run in
    the peers' source directories, where a relative output path would land in the source tree
    (bench/peers/go-net/build/...) and the binary looked for would not exist."""
    out = os.path.join(build, "bench-peers")
    os.makedirs(out, exist_ok=True)
    epoll = os.path.join(out, "epoll_http")
    subprocess.run(["cc", "-O2", "-pthread", "-o", epoll,
                    os.path.join(ROOT, "bench/peers/epoll_http.c")], check=True)
    go = os.path.join(out, "go-net")
    gotool = find_tool("go")
    if gotool:  # offline, as bench/compare.py: caches in the build dir, no module proxy
        env = {**os.environ, "GOCACHE": os.path.join(out, "go/cache"),
               "GOPATH": os.path.join(out, "go/path"), "GOFLAGS": "-mod=mod", "GOPROXY": "off",
               "GOSUMDB": "off", "GOTOOLCHAIN": "local"}
        r = subprocess.run([gotool, "build", "-o", go, "."], capture_output=True, text=True,
                           cwd=os.path.join(ROOT, "bench/peers/go-net"), env=env)
        if r.returncode != 0 or not os.access(go, os.X_OK):
            print(f"go: build failed, skipped: {r.stderr.strip()[-400:]}")
            go = None
    else:
        print("go: not found, skipped")
        go = None
    tokio = None
    cargo = find_tool("cargo")
    if cargo:  # offline, Debian's crates only (bench/peers/tokio-net/.cargo), from a copy so
        # that Cargo.lock never lands in the source tree
        src = os.path.join(out, "tokio-net-src")
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(src)
        shutil.copy(os.path.join(ROOT, "bench/peers/tokio-net/Cargo.toml"), src)
        for d in ("src", ".cargo"):
            shutil.copytree(os.path.join(ROOT, "bench/peers/tokio-net", d), os.path.join(src, d))
        target = os.path.join(out, "tokio-net-target")
        r = subprocess.run([cargo, "build", "--offline", "--release", "--target-dir", target],
                           cwd=src, capture_output=True, text=True)
        tokio = os.path.join(target, "release", "tokio-net-peer")
        if r.returncode != 0 or not os.access(tokio, os.X_OK):
            print(f"tokio: build failed (librust-tokio-dev?), skipped: {r.stderr.strip()[-400:]}")
            tokio = None
    else:
        print("tokio: cargo not found, skipped")
    return epoll, go, tokio


def wrk(port, opts):
    argv = [opts.wrk, f"-t{opts.load_threads}", "-c100", f"-d{opts.duration}s", "--latency",
            f"http://127.0.0.1:{port}/"]
    if opts.load_cpus:
        argv = ["taskset", "-c", opts.load_cpus] + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_us = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, p99_us, errors.group(0) if errors else ""


def bench_http(opts, servers):
    if not shutil.which(opts.wrk):
        print("http: wrk not found (scripts/deps.sh bench installs it): skipped")
        return {}
    res = {name: [] for name in servers}
    for r in range(opts.rounds):
        for name, (argv, env) in servers.items():
            s = Server(argv, env, opts.server_cpus)
            try:
                cpu0 = s.cpu_s()
                rps, p99, err = wrk(s.port, opts)
                cpu_us = (s.cpu_s() - cpu0) * 1e6 / max(rps * opts.duration, 1)
            finally:
                s.stop(os.path.join(opts.keep_stderr, f"http-{name}-{r + 1}.err")
                       if opts.keep_stderr else None)
            res[name].append((rps, p99, cpu_us))
            print(f"http round {r + 1} {name}: {rps:,.0f} req/s p99 {p99:.0f} us, "
                  f"server CPU {cpu_us:.2f} us/req {err}", flush=True)
    return res


def echo_load(client, port, opts):
    """One echo_load run against port: (msgs/s, p99 µs)."""
    cmd = [client, str(port), str(opts.conns), str(opts.duration), str(opts.load_threads)]
    if opts.load_cpus:
        cmd = ["taskset", "-c", opts.load_cpus] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.duration + 120)
    m = re.search(r"([\d.]+) msgs/s, p50 (\d+) us, p99 (\d+) us", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"echo_load failed ({r.returncode}): {r.stdout.strip()} "
                           f"{r.stderr.strip()}")
    return float(m.group(1)), float(m.group(3))


def bench_echo(opts, servers, client):
    res = {name: [] for name in servers}
    for r in range(opts.rounds):
        for name, (argv, env) in servers.items():
            s = Server(argv, env, opts.server_cpus)
            try:
                cpu0 = s.cpu_s()
                v, p99 = echo_load(client, s.port, opts)
                cpu_us = (s.cpu_s() - cpu0) * 1e6 / max(v * opts.duration, 1)
            finally:
                s.stop()
            res[name].append((v, p99, cpu_us))
            print(f"echo round {r + 1} {name}: {v:,.0f} msgs/s p99 {p99:,.0f} us, "
                  f"server CPU {cpu_us:.2f} us/msg", flush=True)
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
    p.add_argument("--pin", action="store_true",
                   help="server on CPU 0, load on CPU 1, one worker and one load thread")
    p.add_argument("--server-cpus", help="taskset CPU list for the servers (e.g. 0-7)")
    p.add_argument("--load-cpus", help="taskset CPU list for wrk and echo_load (e.g. 8-15)")
    p.add_argument("--load-threads", type=int,
                   help="wrk / echo_load threads (default: 1 with --pin, else --workers)")
    p.add_argument("--prebuilt", metavar="DIR",
                   help="never build: take go-net, tokio-net-peer and epoll_http from DIR "
                   "(a missing one is skipped; for a machine without compilers)")
    p.add_argument("--wrk", default="wrk", help="the wrk binary (default: wrk on PATH)")
    p.add_argument("--weft-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for weft's servers only (repeatable), e.g. "
                   "WEFT_TRACE=schedtrace:1000")
    p.add_argument("--keep-stderr", metavar="DIR",
                   help="save each HTTP server's stderr as DIR/http-<server>-<round>.err")
    p.add_argument("--conns", type=int, default=1000, help="echo connections")
    p.add_argument("--only", default="http,echo,idle")
    p.add_argument("--base", help="another build dir: its examples run as 'weft-base' in the "
                   "same alternation (an A/B of weft against weft)")
    opts = p.parse_args()
    opts.build = os.path.abspath(opts.build)  # go and cargo run elsewhere (build_peers)
    if opts.pin:
        opts.workers = 1
        opts.server_cpus, opts.load_cpus = opts.server_cpus or "0", opts.load_cpus or "1"
        opts.load_threads = opts.load_threads or 1
    opts.load_threads = opts.load_threads or opts.workers
    ex = os.path.join(opts.build, "examples")
    base_ex = os.path.join(os.path.abspath(opts.base), "examples") if opts.base else None
    if opts.prebuilt:
        found = [os.path.join(os.path.abspath(opts.prebuilt), n)
                 for n in ("epoll_http", "go-net", "tokio-net-peer")]
        epoll, go, tokio = (f if os.access(f, os.X_OK) else None for f in found)
    else:
        epoll, go, tokio = build_peers(opts.build)
    wenv = {"WEFT_WORKERS": str(opts.workers), **dict(kv.split("=", 1) for kv in opts.weft_env)}
    if opts.keep_stderr:
        os.makedirs(opts.keep_stderr, exist_ok=True)
    genv = {"GOMAXPROCS": str(opts.workers)}
    parts = opts.only.split(",")
    report = []
    if "http" in parts:
        servers = {"weft": ([os.path.join(ex, "http_server"), "PORT"], wenv)}
        if opts.base:
            servers["weft-base"] = ([os.path.join(base_ex, "http_server"), "PORT"], wenv)
        if go:
            servers["go"] = ([go, "http", "PORT"], genv)
        if epoll:
            servers["epoll"] = ([epoll, "PORT", str(opts.workers)], {})
        res = bench_http(opts, servers)
        if res:
            med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3))
                   for k, v in res.items()}
            report.append("| HTTP hello, wrk -c100 | req/s (median) | p99 (median) | weft / it "
                          "| server CPU per request (median) |")
            report.append("|---|---|---|---|---|")
            for k, (rps, p99, cpu_us) in med.items():
                report.append(f"| {k} | {rps:,.0f} | {p99:,.0f} µs | "
                              f"{med['weft'][0] / rps:.2f}× | {cpu_us:.2f} µs |")
    if "echo" in parts:
        servers = {"weft": ([os.path.join(ex, "echo_server"), "PORT"], wenv)}
        if opts.base:
            servers["weft-base"] = ([os.path.join(base_ex, "echo_server"), "PORT"], wenv)
        if go:
            servers["go"] = ([go, "echo", "PORT"], genv)
        if tokio:
            servers["tokio"] = ([tokio, "echo", "PORT"], {"TOKIO_WORKERS": str(opts.workers)})
        res = bench_echo(opts, servers, os.path.join(opts.build, "bench", "echo_load"))
        med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3))
               for k, v in res.items()}
        report.append("")
        report.append(f"| echo, {opts.conns} conns, 64 B | msgs/s (median) | p99 (median) "
                      "| weft / it | server CPU per message (median) |")
        report.append("|---|---|---|---|---|")
        for k, (v, p99, cpu_us) in med.items():
            report.append(f"| {k} | {v:,.0f} | {p99:,.0f} µs | "
                          f"{med['weft'][0] / v if v else 0:.2f}× | {cpu_us:.2f} µs |")
    if "idle" in parts:
        servers = {"weft": ([os.path.join(ex, "http_server"), "PORT"], wenv)}
        if opts.base:
            servers["weft-base"] = ([os.path.join(base_ex, "http_server"), "PORT"], wenv)
        if go:
            servers["go"] = ([go, "http", "PORT"], genv)
        res = bench_idle(opts, servers)
        report.append("")
        report.append("| 10 000 idle keep-alive connections | RSS per connection |")
        report.append("|---|---|")
        for k, v in res.items():
            report.append(f"| {k} | {v / 1024:.1f} KiB |")
    print()
    where = (f"server CPUs {opts.server_cpus or 'any'}, load CPUs {opts.load_cpus or 'any'} "
             f"({opts.load_threads} load threads)")
    print(f"workers {opts.workers}, {where}, {opts.rounds} rounds x {opts.duration} s")
    print("\n".join(report))


if __name__ == "__main__":
    main()
