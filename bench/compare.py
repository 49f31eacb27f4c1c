#!/usr/bin/env python3
"""bench/compare.py - run weft's benchmark driver and its peers (oneTBB, OpenMP gcc/clang, Go,
Python asyncio, Boost.Fiber, Tokio) on the same workloads, alternating runtimes round by round,
check every result, and write a table of medians (Markdown) and a chart (gnuplot PNG).

Every runtime is run as: <program> <workload> <n> [-k <k>] -w <workers>   (-k only for gather;
the peers also accept k as a third positional argument). weft's driver is --weft-bench (default
$WEFT_BENCH, else build/release/bench/weft-bench); if neither is given and that binary is
missing, this tries `cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && cmake --build
build/release --target weft-bench` once. Every program prints one line per run:
  <runtime> <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<peak RSS KiB>
and exits 3 (printing nothing) for a workload it cannot do naturally: that cell stays empty.

Outputs in --out: raw.tsv (every run), results.md (medians, ratios to weft, peak RSS),
results.dat and results.png (bench/compare-plot.gp draws the chart with gnuplot).

Exit status: 0 ok; 1 a wrong result, weft failing/missing, or (--quick) any peer crash;
2 bad usage. A peer whose build fails is reported as skipped, not as a failure.
"""
import argparse
import dataclasses
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
PY = "/usr/bin/python3"  # the system's interpreter: the asyncio figures are Debian's CPython
ALL_RUNTIMES = ["weft", "tbb", "omp-gcc", "omp-clang", "go", "asyncio", "boost-fiber", "tokio",
                "pthread"]
DEFAULT_WORKLOADS = ("fib:30 fib-frame:30 skynet:1000000 spawn:1000000 spawn-detached:1000000 "
                     "spawn-detached-throttled:1000000 "
                     "yield:10000000 "
                     "sleep:1000000 gather:10000:10 cancel:1000000@weft,go,tokio "
                     "inject:1000000@weft,go,tokio"
                     # synchronisation and channels (issue 11); pthread: the mutex row only
                     " pingpong:1000000@weft,go,tokio chan:10000000@weft,go,tokio"
                     " mutex:8000000@weft,go,tokio,pthread")
QUICK_WORKLOADS = ("fib:20 fib-frame:20 skynet:10000 spawn:10000 spawn-detached:10000 "
                   "spawn-detached-throttled:10000 "
                   "yield:100000 sleep:2000 "
                   "gather:200:3 cancel:2000@weft,go,tokio inject:2000@weft,go,tokio"
                   " pingpong:10000@weft,go chan:100000@weft,go mutex:80000@weft,go,pthread")
QUICK_TOKIO_BUILD_S = 120  # Tokio's first build compiles its crates: too slow for a quick check
WEFT_BENCH_DEFAULT = "build/release/bench/weft-bench"


# ---------------------------------------------------------------- workloads and expected results
@dataclasses.dataclass
class Workload:
    """One row of the tables: a workload at one size, run by `only` (empty: every runtime)."""
    name: str
    n: int
    k: int | None = None
    only: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self):
        k = f" k={self.k}" if self.name == "gather" else ""
        return f"{self.name} n={self.n}{k}"

    def args(self, workers):
        extra = ["-k", str(self.k)] if self.name == "gather" else []
        return [self.name, str(self.n)] + extra + ["-w", str(workers)]

    def expected(self):
        """The result `r` every runtime must print."""
        if self.name in ("fib", "fib-frame"):
            a, b = 0, 1
            for _ in range(self.n):
                a, b = b, a + b
            return a
        if self.name in ("skynet", "sleep"):
            return self.n * (self.n - 1) // 2
        if self.name in ("spawn", "spawn-detached", "spawn-throttled", "spawn-detached-throttled",
                         "yield", "cancel", "inject", "pingpong", "chan", "mutex"):
            return self.n
        return self.n * self.k  # gather


def parse_workload(spec):
    """name:n[:k][@rt,rt...] -> Workload; raises ValueError with the reason."""
    spec, _, only = spec.partition("@")
    only = [rt for rt in only.split(",") if rt]
    name, n, k, *extra = spec.split(":") + ["", ""]
    if any(extra):
        raise ValueError(f"bad workload spec '{spec}' (name:n[:k][@rt,...])")
    if not n.isdigit():
        raise ValueError(f"bad n in workload spec '{spec}'")
    n = int(n)
    checks = {
        "fib": (n <= 92, "fib n must be <= 92 (64-bit result)"),
        "fib-frame": (n <= 92, "fib-frame n must be <= 92 (64-bit result)"),
        "pingpong": (True, ""),
        "chan": (n % 4 == 0, f"chan n must be a multiple of 4 (4 producers), got {n}"),
        "mutex": (n % 8 == 0, f"mutex n must be a multiple of 8 (8 tasks), got {n}"),
        "skynet": (re.fullmatch(r"10*", str(n)), f"skynet n must be a power of 10, got {n}"),
        "yield": (n % 1000 == 0, f"yield n must be a multiple of 1000, got {n}"),
        "spawn": (True, ""), "spawn-detached": (True, ""), "sleep": (True, ""),
        "spawn-throttled": (True, ""), "spawn-detached-throttled": (True, ""),
        "cancel": (True, ""), "inject": (True, ""),
        "gather": (k == "" or k.isdigit(), f"bad k in '{spec}'"),
    }
    if name not in checks:
        raise ValueError(f"unknown workload '{name}' (fib fib-frame skynet spawn spawn-detached "
                         "spawn[-detached]-throttled yield sleep cancel gather inject pingpong "
                         "chan mutex)")
    ok, why = checks[name]
    if not ok:
        raise ValueError(why)
    if name != "gather" and k:
        raise ValueError(f"only gather takes k ('{spec}')")
    for rt in only:
        if rt not in ALL_RUNTIMES:
            raise ValueError(f"unknown runtime '{rt}' in '{spec}'")
    if name == "fib-frame":  # weft's strict fork-join form of fib: the peers' row is fib's
        only = ["weft"]
    if name == "spawn-detached":  # weft running the peers' spawn program (their row is spawn's)
        only = ["weft"]
    if name.endswith("-throttled"):  # the same with weft_options_t.spawn_throttle at 256
        only = ["weft"]
    return Workload(name, n, int(k or 10) if name == "gather" else None, only)


# ---------------------------------------------------------------- processes
def run_limited(cmd, limit=None, **kw):
    """Runs cmd under `timeout -s KILL limit` (None: no limit) and returns (exit status as the
    shell says it, stdout, stderr): 137 where the limit killed it. timeout kills the command's
    whole process group (cargo's rustc children too), and it also keeps the peak RSS that the
    programs report their own: Linux starts a process's ru_maxrss at the peak of the process that
    exec'd it, so a program started straight from this Python reads at least ~14 MB, one started
    by timeout (as compare.sh started them) ~1.5 MB, as alone."""
    if limit:
        cmd = ["timeout", "-s", "KILL", str(limit)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)
    return (p.returncode if p.returncode >= 0 else 128 - p.returncode), p.stdout, p.stderr


def run_logged(cmd, log, limit=None, append=False, **kw):
    """run_limited with stdout and stderr written to (or appended to) the file log."""
    rc, out, err = run_limited(cmd, limit, **kw)
    with open(log, "a" if append else "w") as f:
        f.write(out + err)
    return rc


# ---------------------------------------------------------------- packages (--install only)
def have_pkg(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return "ok installed" in r.stdout


PACKAGES = {
    "weft": [], "tbb": ["libtbb-dev"], "omp-gcc": ["gcc"], "omp-clang": ["clang", "libomp-14-dev"],
    "go": ["golang-go"], "asyncio": ["python3"], "boost-fiber": ["libboost-fiber-dev"],
    "tokio": ["librust-tokio-dev", "librust-num-cpus-dev"], "pthread": ["gcc"],
}


def install_missing(runtimes):
    missing = [p for rt in runtimes for p in PACKAGES[rt] if not have_pkg(p)]
    if "tokio" in runtimes and not shutil.which("cargo"):
        missing.append("cargo")
    if not shutil.which("gnuplot"):
        missing.append("gnuplot-nox")
    if not missing:
        return
    print(f"== apt-get install {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if (subprocess.run(["apt-get", "update", "-qq"]).returncode or
            subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env).returncode):
        print("compare.py: apt-get install failed; the peers needing it will be skipped",
              file=sys.stderr)


# ---------------------------------------------------------------- builds
@dataclasses.dataclass
class Runtime:
    """A runtime's program (cmd) once built, or why it was skipped, and its build time."""
    name: str
    cmd: list[str] | None = None
    skip: str | None = None
    build_time: str | None = None


def newer_than(binary, src):
    """True if a file under src (a file or a folder) is newer than binary."""
    t = binary.stat().st_mtime
    files = [src] if src.is_file() else (p for p in src.rglob("*") if p.is_file())
    return any(p.stat().st_mtime > t for p in files)


class Builder:
    """Builds the peers into the build dir: each `build_<peer>` returns (binary, source, recipe),
    the recipe a function (log path) -> exit status."""

    def __init__(self, build, quick, rebuild, prebuilt=False):
        self.build, self.quick, self.rebuild = build, quick, rebuild
        self.prebuilt = prebuilt
        self.logs = build / "logs"

    # Peers built by one compiler call: rt -> (compiler, source, flags, libraries)
    COMPILED = {
        "tbb": ("g++", "tbb.cpp", ["-std=c++17"], ["-ltbb", "-pthread"]),
        "omp-gcc": ("gcc", "omp.c", ["-fopenmp"], []),
        "omp-clang": ("clang", "omp.c", ["-fopenmp"], []),
        "pthread": ("gcc", "pthread_mutex.c", [], ["-pthread"]),  # the mutex row only
        "boost-fiber": ("g++", "boost_fiber.cpp", ["-std=c++17"],
                        ["-lboost_fiber", "-lboost_context", "-pthread"]),
    }

    def recipe(self, rt):
        b = self.build
        if rt in self.COMPILED:
            compiler, src, flags, libs = self.COMPILED[rt]
            binary, src = b / f"{rt}-peer", PEERS / src
            return binary, src, lambda log: run_logged(
                [compiler, "-O2", *flags, "-o", str(binary), str(src), *libs], log)
        if rt == "go":
            env = dict(os.environ, GOCACHE=str(b / "go/cache"), GOPATH=str(b / "go/path"),
                       GOFLAGS="-mod=mod", GOPROXY="off", GOSUMDB="off", GOTOOLCHAIN="local")
            return b / "go-peer", PEERS / "go", lambda log: run_logged(
                ["go", "build", "-o", str(b / "go-peer"), "."], log, cwd=PEERS / "go", env=env)
        if rt == "tokio":
            return b / "tokio-target/release/tokio-peer", PEERS / "tokio", self.build_tokio
        raise AssertionError(rt)

    def build_tokio(self, log):
        # Build a copy under the build dir so that Cargo.lock never lands in the source tree;
        # .cargo/config.toml (copied along) points crates-io at Debian's registry only.
        cp = self.build / "tokio-src"
        shutil.rmtree(cp, ignore_errors=True)
        cp.mkdir(parents=True)
        shutil.copy(PEERS / "tokio/Cargo.toml", cp)
        for d in ("src", ".cargo"):
            shutil.copytree(PEERS / "tokio" / d, cp / d)
        return run_logged(["cargo", "build", "--offline", "--release", "--target-dir",
                           str(self.build / "tokio-target")], log, cwd=cp,
                          limit=QUICK_TOKIO_BUILD_S if self.quick else None)

    def peer(self, rt):
        if rt == "asyncio":
            if os.access(PY, os.X_OK):
                return Runtime(rt, cmd=[PY, str(PEERS / "asyncio_peer.py")])
            return Runtime(rt, skip=f"no {PY}")
        binary, src, recipe = self.recipe(rt)
        if self.prebuilt:  # a machine with no compilers: run what was built elsewhere, or skip
            if os.access(binary, os.X_OK):
                return Runtime(rt, cmd=[str(binary)], build_time="prebuilt")
            return Runtime(rt, skip=f"--prebuilt: no {binary}")
        if not self.rebuild and os.access(binary, os.X_OK) and not newer_than(binary, src):
            return Runtime(rt, cmd=[str(binary)], build_time="up to date")
        log = self.logs / f"{rt}.build.log"
        print(f"== building {rt} (log: {log})", flush=True)
        t0 = time.monotonic_ns()
        try:
            rc = recipe(log)
        except OSError as e:  # no compiler: the recipe could not start
            log.write_text(f"{e}\n")
            rc = 127
        if rc == 137 and rt == "tokio" and self.quick:
            binary.unlink(missing_ok=True)
            return Runtime(rt, skip=f"build took >{QUICK_TOKIO_BUILD_S} s: "
                           "not built in --quick mode")
        tenths = (time.monotonic_ns() - t0) // 100000000
        took = f"{tenths // 10}.{tenths % 10} s"
        if rc == 0 and os.access(binary, os.X_OK):
            print(f"   {rt} built in {took}", flush=True)
            return Runtime(rt, cmd=[str(binary)], build_time=took)
        tail = log.read_text(errors="replace").splitlines()[-5:]
        print(f"   {rt}: build FAILED (rc={rc}), skipped; last lines of {log}:", file=sys.stderr)
        print("".join(f"     {line}\n" for line in tail), end="", file=sys.stderr)
        return Runtime(rt, skip=f"build failed (see {log})", build_time=took)

    def weft(self, explicit):
        """weft's driver: explicit (--weft-bench or $WEFT_BENCH), else the Release build's,
        built once with cmake if missing. None if there is none."""
        wb = Path(explicit or WEFT_BENCH_DEFAULT)
        if not os.access(wb, os.X_OK) and not explicit and (ROOT / "CMakeLists.txt").is_file():
            log = self.logs / "weft.build.log"
            print(f"== {wb} missing: building it with cmake (log: {log})", flush=True)
            rc = run_logged(["cmake", "-S", ".", "-B", "build/release",
                                "-DCMAKE_BUILD_TYPE=Release"], log)
            if rc == 0:
                run_logged(["cmake", "--build", "build/release", "--target", "weft-bench",
                            "-j", str(os.cpu_count())], log, append=True)
        return Runtime("weft", cmd=[str(wb)]) if os.access(wb, os.X_OK) else None


# ---------------------------------------------------------------- runs
@dataclasses.dataclass
class Run:
    """One run of one runtime on one row: status ok, wrong, na, timeout or error."""
    round: int
    row: int
    rt: str
    status: str
    r: str = ""
    ms: str = ""
    rss: str = ""


RAW_HEADER = "round\trow\tworkload\tn\tk\truntime\tstatus\tr\tms\trss_kb\n"


def run_all(opts, rows, runtimes, raw_path):
    """Runs every row round by round, every runtime once per round, and appends each run to
    raw.tsv as it ends. Returns (runs, failures)."""
    runs, fails = [], []
    left = {}  # (row, rt) -> why it is left out of the rest of that row

    def fail(msg):
        fails.append(msg)
        print(f"FAIL: {msg}", file=sys.stderr, flush=True)

    raw = open(raw_path, "w")
    raw.write(RAW_HEADER)
    for i, w in enumerate(rows):
        exp = str(w.expected())
        kk = f" k={w.k}" if w.k is not None else ""
        for rnd in range(1, opts.rounds + 1):
            for rt in runtimes:
                if (w.only and rt.name not in w.only) or (i, rt.name) in left:
                    continue
                args = w.args(opts.workers)
                rc, out, err = run_limited(rt.cmd + args, opts.limit)
                pat = re.compile(rf"{re.escape(rt.name)} {w.name} n={w.n} r=(-?[0-9]+) "
                                 r"ms=([0-9]+(?:\.[0-9]+)?) rss_kb=([0-9]+)")
                lines = [m for m in map(pat.fullmatch, out.splitlines()) if m]
                m = lines[-1] if lines else None
                run = Run(rnd, i, rt.name, "")
                if rc == 0 and m:
                    run.r, run.ms, run.rss = m.groups()
                    run.status = "ok" if run.r == exp else "wrong"
                    if run.status == "wrong":
                        fail(f"{rt.name} {w.name} n={w.n}{kk}: r={run.r} but expected {exp}")
                elif rc == 3 and not m:
                    run.status = left[i, rt.name] = "na"
                elif rc in (124, 137):  # 137: the limit's SIGKILL
                    run.status = left[i, rt.name] = "timeout"
                    print(f"   {rt.name} {w.name} n={w.n}: over {opts.limit}s, killed; "
                          "left out of this row", file=sys.stderr)
                    if rt.name == "weft":
                        fail(f"weft {w.name} n={w.n} took over {opts.limit}s")
                else:
                    run.status = left[i, rt.name] = "error"
                    tail = err.encode()[-300:].decode(errors="replace").replace("\n", " ")
                    msg = (f"{rt.name} {' '.join(args)}: exit {rc}, "
                           f"{'line ok' if m else 'no valid result line'}; stderr: {tail}")
                    if rt.name == "weft" or opts.quick:
                        fail(msg)
                    else:
                        print(f"   WARNING: {msg} (left out of this row)", file=sys.stderr)
                print(m.group(0) if m else f"{rt.name} {w.name} n={w.n}: {run.status} (rc={rc})",
                      flush=True)
                raw.write("\t".join(map(str, (rnd, i, w.name, w.n, "" if w.k is None else w.k,
                                              rt.name, run.status, run.r, run.ms, run.rss))) + "\n")
                raw.flush()
                runs.append(run)
    raw.close()
    return runs, fails


# ---------------------------------------------------------------- tables and chart
def cell(runs, skip, limit):
    """A table cell from the runs of one runtime on one row -> (median ms or None,
    median rss or None, text note or None)."""
    if skip:
        return None, None, "skipped"
    if not runs:
        return None, None, "-"
    ok = [x for x in runs if x.status == "ok"]
    bad = {x.status for x in runs if x.status != "ok"}
    if "wrong" in bad:
        return None, None, "WRONG"
    if ok and not bad:
        return (statistics.median(float(x.ms) for x in ok),
                statistics.median(int(x.rss) for x in ok), None)
    if "na" in bad:
        return None, None, "n/a"
    if "timeout" in bad:
        return None, None, f"left out (>{limit} s)"
    return None, None, "error"


def fmt_ms(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def tables(opts, rows, names, skips, builds, runs):
    """-> (results.md text, results.dat text)."""
    by_cell = {}
    for run in runs:
        by_cell.setdefault((run.row, run.rt), []).append(run)
    hdr = "| workload | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"
    t_ms, t_ratio, t_rss = hdr, hdr, hdr
    dat = ["workload " + " ".join(f'"{rt}"' for rt in names)]
    for i, w in enumerate(rows):
        cells = [cell(by_cell.get((i, rt)), rt in skips, opts.limit) for rt in names]
        weft = cells[names.index("weft")][0] if "weft" in names else None
        t_ms += f"| {w.label} | " + " | ".join(
            fmt_ms(c[0]) if c[0] is not None else c[2] for c in cells) + " |\n"
        t_rss += f"| {w.label} | " + " | ".join(
            f"{c[1]:.0f}" if c[1] is not None else c[2] for c in cells) + " |\n"
        rat = []
        for rt, c in zip(names, cells):
            if rt == "weft":
                rat.append("1" if weft else (c[2] or "-"))
            elif c[0] is None:
                rat.append(c[2])
            else:
                rat.append(f"{c[0] / weft:.2f}" if weft else "-")
        t_ratio += f"| {w.label} | " + " | ".join(rat) + " |\n"
        dat.append(f'"{w.label}" ' + " ".join(f"{c[0]:.3f}" if c[0] is not None else "-"
                                                for c in cells))
    limit = opts.limit
    md = [f"# weft vs peers{' (--quick: correctness only, one run)' if opts.quick else ''}", "",
          f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"workers={opts.workers}, median of {opts.rounds} alternating rounds "
          "(each round runs every runtime once, in the order of the columns), "
          f"per-run limit {limit} s.", "",
          "## Wall time, median ms", "", t_ms,
          "## weft's ratio to each peer: peer_ms / weft_ms (> 1: weft is faster)", "",
          t_ratio if "weft" in names else "(weft was not run)\n",
          "## Peak RSS, median KiB (ru_maxrss / VmHWM)", "", t_rss,
          "Cells: `n/a` the runtime has no natural form of that workload (exit 3); "
          f"`left out (>{limit} s)` a run exceeded the limit at that n, so the runtime was left "
          "out of that row; `skipped` its build failed or it could not run; `error` it crashed "
          "(see the log printed above); `-` not run.", ""]
    if skips:
        md += ["Skipped runtimes:", ""] + [f"- {rt}: {why}" for rt, why in skips.items()] + [""]
    if builds:
        md += ["Build times: " + ", ".join(f"{rt} {t}" for rt, t in builds.items()), ""]
    md += ["Timing: tbb, omp-*, asyncio, boost-fiber and tokio include runtime start; go does not "
           "(its scheduler is up before main); see the comment at the top of each peer in "
           "bench/peers/ and, for weft, bench/weft-bench.c.", ""]
    return "\n".join(md), "\n".join(dat) + "\n"


def chart(opts, out, logs, nrt):
    """results.png from results.dat with bench/compare-plot.gp, if gnuplot is there."""
    if not shutil.which("gnuplot"):
        print("compare.py: gnuplot not found (install gnuplot-nox, or pass --install); no chart",
              file=sys.stderr)
        return
    settings = (f"datafile='{out}/results.dat'; outfile='{out}/results.png'; nrt={nrt}; "
                f"subtitle='workers={opts.workers}, median of {opts.rounds}'")
    with open(logs / "gnuplot.log", "w") as log:
        rc = subprocess.run(["gnuplot", "-e", settings, str(ROOT / "bench/compare-plot.gp")],
                            stderr=log).returncode
    if rc:
        print(f"compare.py: gnuplot failed (see {logs}/gnuplot.log); no chart", file=sys.stderr)


# ---------------------------------------------------------------- command line
def positive(what):
    def parse(s):
        if not re.fullmatch(r"[1-9][0-9]*", s):
            raise argparse.ArgumentTypeError(f"{what} must be a positive integer")
        return int(s)
    return parse


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/compare.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--quick", action="store_true",
                   help="each workload once at small n (fib 20, skynet 1e4, spawn 1e4, yield 1e5, "
                   "sleep 2000, gather 200 k=3, cancel and inject 2000); fails on any wrong result or crash. Checks the "
                   "harness and the peers, not speed.")
    p.add_argument("--rounds", type=positive("--rounds"),
                   help="rounds per workload (default 5; --quick: 1)")
    p.add_argument("--workers", type=positive("--workers"), default=2,
                   help="workers for every runtime (default 2; asyncio ignores it)")
    p.add_argument("--workloads", metavar='"SPEC..."',
                   help="rows to run, each name:n[:k][@rt,rt...] e.g. \"fib:35 gather:1000:5\" "
                   "(@... restricts that row to the listed runtimes; default rows: "
                   f"{DEFAULT_WORKLOADS})")
    p.add_argument("--runtimes", metavar='"RT..."', default=" ".join(ALL_RUNTIMES),
                   help=f"subset/order of: {' '.join(ALL_RUNTIMES)}")
    p.add_argument("--limit", type=positive("--limit (seconds)"), default=60,
                   help="per-run wall limit in seconds (default 60). A runtime that exceeds it "
                   "is killed and left out of that row (said so in the table).")
    p.add_argument("--build-dir", default="build/peers",
                   help="where peers are built (default build/peers; never the source tree)")
    p.add_argument("--out", help="where results.md, results.png, results.dat, raw.tsv go "
                   "(default: build dir)")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild every peer even if up to date")
    p.add_argument("--prebuilt", action="store_true",
                   help="never build: run the peers found in the build dir as they are, skip "
                   "the missing (for a machine without compilers; bench/device_sweep.sh)")
    p.add_argument("--install", action="store_true",
                   help="apt-get install the Debian packages of missing peers first")
    p.add_argument("--weft-bench", default=os.environ.get("WEFT_BENCH"), metavar="PATH",
                   help=f"weft's driver (default $WEFT_BENCH, else {WEFT_BENCH_DEFAULT}, "
                   "built with cmake if missing)")
    opts = p.parse_args(argv)
    opts.rounds = opts.rounds or (1 if opts.quick else 5)
    opts.runtimes = opts.runtimes.split()
    for rt in opts.runtimes:
        if rt not in ALL_RUNTIMES:
            p.error(f"unknown runtime '{rt}' (known: {' '.join(ALL_RUNTIMES)})")
    specs = opts.workloads or (QUICK_WORKLOADS if opts.quick else DEFAULT_WORKLOADS)
    try:
        opts.rows = [parse_workload(s) for s in specs.split()]
    except ValueError as e:
        p.error(str(e))
    if not opts.rows:
        p.error("no workloads")
    build = Path(opts.build_dir).resolve()
    if any(build.is_relative_to(ROOT / d) for d in ("bench", "lib", "include", "tests")):
        p.error(f"build dir {build} is inside the source tree")
    opts.build_dir = build
    opts.out = Path(opts.out).resolve() if opts.out else build
    return opts


def main(argv):
    os.chdir(ROOT)
    opts = parse_args(argv)
    logs = opts.build_dir / "logs"
    for d in (opts.build_dir, opts.out, logs):
        d.mkdir(parents=True, exist_ok=True)
    if opts.install:
        install_missing(opts.runtimes)
    cargo_home = Path.home() / ".cargo/bin"
    if os.access(cargo_home / "cargo", os.X_OK):
        os.environ["PATH"] += os.pathsep + str(cargo_home)

    builder = Builder(opts.build_dir, opts.quick, opts.rebuild, opts.prebuilt)
    runtimes = []
    for rt in opts.runtimes:
        if rt == "weft":
            weft = builder.weft(opts.weft_bench)
            if weft is None:
                wb = opts.weft_bench or WEFT_BENCH_DEFAULT
                print(f"compare.py: FAIL: weft driver '{wb}' not found or not executable.\n"
                      "  Build it (cmake --build build/release), pass --weft-bench, or leave weft "
                      "out with --runtimes.", file=sys.stderr)
                return 1
            runtimes.append(weft)
        else:
            runtimes.append(builder.peer(rt))
    runnable = [rt for rt in runtimes if rt.cmd]
    if not runnable:
        print("compare.py: nothing to run", file=sys.stderr)
        return 1

    print(f"== running: {' '.join(rt.name for rt in runnable)} | workers={opts.workers} "
          f"rounds={opts.rounds} limit={opts.limit}s", flush=True)
    raw = opts.out / "raw.tsv"
    runs, fails = run_all(opts, opts.rows, runnable, raw)

    skips = {rt.name: rt.skip for rt in runtimes if rt.skip}
    builds = {rt.name: rt.build_time for rt in runtimes if rt.build_time}
    md, dat = tables(opts, opts.rows, opts.runtimes, skips, builds, runs)
    (opts.out / "results.md").write_text(md)
    (opts.out / "results.dat").write_text(dat)
    print("\n" + md, flush=True)
    chart(opts, opts.out, logs, len(opts.runtimes))
    print(f"== wrote {opts.out}/results.md, {opts.out}/results.png, {raw}")

    if fails:
        print(f"\ncompare.py: FAILED, {len(fails)} problem(s):", file=sys.stderr)
        print("".join(f"  {f}\n" for f in fails), end="", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
