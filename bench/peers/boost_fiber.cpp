// Boost.Fiber peer (algo::work_stealing scheduler) for weft's benchmark driver.
//
// usage: boost-fiber-peer <workload> <n> [k | -k <k>] [-w <workers>]
//        (workers default 2; k: gather only, default 10)
// prints: boost-fiber <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>
//
// Timing INCLUDES runtime start: the clock starts just before the <workers>-1 extra threads are
// created and every thread (main included) installs work_stealing(<workers>); it stops when the
// root fiber has been joined (the helper threads are shut down outside the timed region).
// "spawn" = a boost::fibers::fiber (launch::post) + join(); each fiber gets Boost's default
// stack (fixedsize_stack, 128 KiB of malloc'd virtual memory; only touched pages count in RSS).
// work_stealing is used with suspend=false (idle threads spin), its default.
#include <boost/fiber/all.hpp>

#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace bf = boost::fibers;

// Lace style: spawn fib(n-1) as a fiber, compute fib(n-2) directly, join.
static int64_t fib(int64_t n)
{
    if (n < 2)
        return n;
    int64_t a;
    bf::fiber f([&a, n] { a = fib(n - 1); });
    int64_t b = fib(n - 2);
    f.join();
    return a + b;
}

static int64_t skynet(int64_t num, int64_t size)
{
    if (size == 1)
        return num;
    int64_t part[10];
    int64_t sub = size / 10;
    bf::fiber fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = bf::fiber([&part, i, num, sub] { part[i] = skynet(num + i * sub, sub); });
    int64_t s = 0;
    for (int i = 0; i < 10; i++) {
        fs[i].join();
        s += part[i];
    }
    return s;
}

// Spawns n fibers running body(i), joins them all and sums their results.
template <typename F> static int64_t gather_each(int64_t n, F body)
{
    std::vector<int64_t> res(n);
    std::vector<bf::fiber> fs;
    fs.reserve(n);
    for (int64_t i = 0; i < n; i++)
        fs.emplace_back([&res, &body, i] { res[i] = body(i); });
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) {
        fs[i].join();
        s += res[i];
    }
    return s;
}

static void usage()
{
    std::fprintf(stderr, "usage: boost-fiber-peer <fib|skynet|spawn|yield|sleep|gather> <n> [k | -k k] [-w workers]\n");
    std::exit(2);
}

int main(int argc, char **argv)
{
    const char *wl = nullptr;
    long long n = -1, k = 10;
    int workers = 2, pos = 0;
    bool kset = false;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "-w") && i + 1 < argc) {
            workers = std::atoi(argv[++i]);
            continue;
        }
        if (!std::strcmp(argv[i], "-k") && i + 1 < argc) {
            k = std::strtoll(argv[++i], nullptr, 10);
            kset = true; // an explicit -k wins over a positional k
            continue;
        }
        if (pos == 0)
            wl = argv[i];
        else if (pos == 1)
            n = std::strtoll(argv[i], nullptr, 10);
        else if (pos == 2 && !kset)
            k = std::strtoll(argv[i], nullptr, 10);
        pos++;
    }
    if (!wl || n < 0 || workers < 1)
        usage();
    static const char *const names[] = {"fib", "skynet", "spawn", "yield", "sleep", "gather"};
    int kind = -1;
    for (int i = 0; i < 6; i++)
        if (!std::strcmp(wl, names[i]))
            kind = i;
    if (kind < 0)
        usage();

    std::mutex mtx;
    bf::condition_variable_any cv;
    bool done = false;
    auto helper = [&] {
        bf::use_scheduling_algorithm<bf::algo::work_stealing>(workers);
        std::unique_lock<std::mutex> lk(mtx);
        cv.wait(lk, [&] { return done; }); // blocks this thread's main fiber; others run here
    };

    int64_t r = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int i = 1; i < workers; i++)
        threads.emplace_back(helper);
    bf::use_scheduling_algorithm<bf::algo::work_stealing>(workers);
    bf::fiber root([&] {
        switch (kind) {
        case 0: r = fib(n); break;
        case 1: r = skynet(0, n); break;
        case 2: r = gather_each(n, [](int64_t) -> int64_t { return 1; }); break;
        case 3: {
            int64_t per = n / 1000;
            r = gather_each(1000, [per](int64_t) -> int64_t {
                int64_t c = 0;
                for (int64_t j = 0; j < per; j++) {
                    boost::this_fiber::yield();
                    c++;
                }
                return c;
            });
            break;
        }
        case 4:
            r = gather_each(n, [](int64_t i) -> int64_t {
                boost::this_fiber::sleep_for(std::chrono::milliseconds(i * 7919 % 1000));
                return i;
            });
            break;
        default:
            r = gather_each(n, [k](int64_t) -> int64_t {
                int64_t c = 0;
                for (int64_t j = 0; j < k; j++) {
                    boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
                    c++;
                }
                return c;
            });
            break;
        }
    });
    root.join();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    std::printf("boost-fiber %s n=%lld r=%lld ms=%.1f rss_kb=%ld\n", wl, n, (long long)r, ms, ru.ru_maxrss);
    std::fflush(stdout);

    {
        std::unique_lock<std::mutex> lk(mtx);
        done = true;
    }
    cv.notify_all();
    for (auto &t : threads)
        t.join();
    return 0;
}
