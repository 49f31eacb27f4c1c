// oneTBB peer (tbb::task_group) for weft's benchmark driver.
//
// usage: tbb-peer <workload> <n> [-w <workers>]        (workers default 2)
// prints: tbb <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>
//
// Timing INCLUDES runtime start: the clock starts just before the tbb::task_arena of
// <workers> threads is created (global_control also caps TBB's pool at <workers>), and
// stops after the root task_group has been waited for.
// Workloads: fib, skynet, spawn. yield/sleep/gather have no natural TBB form -> exit 3.
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

// Lace style: spawn fib(n-1), compute fib(n-2) directly, wait.
static int64_t fib(int64_t n)
{
    if (n < 2)
        return n;
    int64_t a;
    tbb::task_group g;
    g.run([&a, n] { a = fib(n - 1); });
    int64_t b = fib(n - 2);
    g.wait();
    return a + b;
}

static int64_t skynet(int64_t num, int64_t size)
{
    if (size == 1)
        return num;
    int64_t part[10];
    int64_t sub = size / 10;
    tbb::task_group g;
    for (int i = 0; i < 10; i++)
        g.run([&part, i, num, sub] { part[i] = skynet(num + i * sub, sub); });
    g.wait();
    int64_t s = 0;
    for (int i = 0; i < 10; i++)
        s += part[i];
    return s;
}

static int64_t spawn_all(int64_t n)
{
    std::unique_ptr<int64_t[]> res(new int64_t[n]);
    int64_t *p = res.get();
    tbb::task_group g;
    for (int64_t i = 0; i < n; i++)
        g.run([p, i] { p[i] = 1; });
    g.wait();
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

static void usage()
{
    std::fprintf(stderr, "usage: tbb-peer <fib|skynet|spawn> <n> [-w workers]\n");
    std::exit(2);
}

int main(int argc, char **argv)
{
    const char *wl = nullptr;
    long long n = -1;
    int workers = 2;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "-w") && i + 1 < argc)
            workers = std::atoi(argv[++i]);
        else if (!wl)
            wl = argv[i];
        else if (n < 0)
            n = std::strtoll(argv[i], nullptr, 10);
    }
    if (!wl || n < 0 || workers < 1)
        usage();
    int kind;
    if (!std::strcmp(wl, "fib"))
        kind = 0;
    else if (!std::strcmp(wl, "skynet"))
        kind = 1;
    else if (!std::strcmp(wl, "spawn"))
        kind = 2;
    else if (!std::strcmp(wl, "yield") || !std::strcmp(wl, "sleep") || !std::strcmp(wl, "gather"))
        return 3; // not applicable to TBB tasks
    else
        usage();

    int64_t r = 0;
    auto t0 = std::chrono::steady_clock::now();
    {
        tbb::global_control gc(tbb::global_control::max_allowed_parallelism, workers);
        tbb::task_arena arena(workers);
        arena.execute([&] {
            switch (kind) {
            case 0: r = fib(n); break;
            case 1: r = skynet(0, n); break;
            default: r = spawn_all(n); break;
            }
        });
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    std::printf("tbb %s n=%lld r=%lld ms=%.1f rss_kb=%ld\n", wl, n, (long long)r, ms, ru.ru_maxrss);
    return 0;
}
