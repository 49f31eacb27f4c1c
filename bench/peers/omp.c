/* OpenMP-tasks peer for weft's benchmark driver (built twice: gcc -fopenmp -> omp-gcc,
 * clang -fopenmp -> omp-clang; the runtime name comes from the compiler, see RT_NAME).
 *
 * usage: omp-peer <workload> <n> [-w <workers>]        (workers default 2)
 * prints: <runtime> <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>
 *
 * Timing INCLUDES runtime start: the clock starts just before the first parallel region,
 * which is where the OpenMP runtime creates its thread team.
 * Workloads: fib, skynet, spawn. yield/sleep/gather have no natural OpenMP form -> exit 3.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifndef RT_NAME
#if defined(__clang__)
#define RT_NAME "omp-clang"
#else
#define RT_NAME "omp-gcc"
#endif
#endif

/* Lace style: spawn fib(n-1), compute fib(n-2) directly, wait. */
static int64_t fib(int64_t n)
{
    if (n < 2)
        return n;
    int64_t a, b;
#pragma omp task shared(a) firstprivate(n)
    a = fib(n - 1);
    b = fib(n - 2);
#pragma omp taskwait
    return a + b;
}

static int64_t skynet(int64_t num, int64_t size)
{
    if (size == 1)
        return num;
    int64_t part[10];
    int64_t sub = size / 10;
    for (int i = 0; i < 10; i++) {
#pragma omp task shared(part) firstprivate(i, num, sub)
        part[i] = skynet(num + i * sub, sub);
    }
#pragma omp taskwait
    int64_t s = 0;
    for (int i = 0; i < 10; i++)
        s += part[i];
    return s;
}

static int64_t spawn_all(int64_t n)
{
    int64_t *res = malloc((size_t)n * sizeof *res);
    if (!res) {
        perror("malloc");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
#pragma omp task firstprivate(i) shared(res)
        res[i] = 1;
    }
#pragma omp taskwait
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += res[i];
    free(res);
    return s;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: " RT_NAME " <fib|skynet|spawn> <n> [-w workers]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *wl = NULL;
    int64_t n = -1;
    int workers = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-w") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!wl)
            wl = argv[i];
        else if (n < 0)
            n = strtoll(argv[i], NULL, 10);
        /* further positional args (gather's k) are ignored: gather is not supported */
    }
    if (!wl || n < 0 || workers < 1)
        usage();
    int kind;
    if (!strcmp(wl, "fib"))
        kind = 0;
    else if (!strcmp(wl, "skynet"))
        kind = 1;
    else if (!strcmp(wl, "spawn"))
        kind = 2;
    else if (!strcmp(wl, "yield") || !strcmp(wl, "sleep") || !strcmp(wl, "gather"))
        return 3; /* not applicable to OpenMP tasks */
    else
        usage();

    int64_t r = 0;
    double t0 = now_ms();
#pragma omp parallel num_threads(workers)
#pragma omp single
    {
        switch (kind) {
        case 0: r = fib(n); break;
        case 1: r = skynet(0, n); break;
        default: r = spawn_all(n); break;
        }
    }
    double ms = now_ms() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s %s n=%lld r=%lld ms=%.1f rss_kb=%ld\n", RT_NAME, wl, (long long)n, (long long)r, ms,
           ru.ru_maxrss);
    return 0;
}
