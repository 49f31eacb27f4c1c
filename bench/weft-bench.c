/*
 * weft-bench: one line per run, in the format the peer programs of bench/peers/ print:
 *   weft <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<peak RSS KiB>
 * Usage: weft-bench <workload> <n> [-w workers] [-s stack_bytes] [-k k]
 * Workloads: fib fib-frame skynet yield spawn spawn-detached gather sleep cancel inject switch
 * timer-lateness pingpong chan mutex (bench/README.md).
 * Wall time includes starting and stopping the runtime (as the peers' does).
 */
#include "weft.h"

#include "../lib/internal.h" /* the switch microbenchmark drives weft__context_switch directly */

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void check(int err, const char *what) {
  if (err) {
    fprintf(stderr, "weft-bench: %s: %s\n", what, weft_strerror(err));
    exit(1);
  }
}

/* ---- fib: one spawned task per internal call (Lace's SPAWN / CALL / SYNC) ---- */
static void *fib(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n < 2) return (void *)(intptr_t)n;
  weft_task_t *t;
  check(weft_spawn(&t, fib, (void *)(intptr_t)(n - 1)), "spawn");
  long b = (long)(intptr_t)fib((void *)(intptr_t)(n - 2));
  void *a;
  weft_join(t, &a);
  return (void *)(intptr_t)((long)(intptr_t)a + b);
}

/* ---- fib-frame: the same tree through strict fork-join frames (weft_fork / weft_sync) ---- */
static void *fib_frame(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n < 2) return (void *)(intptr_t)n;
  weft_frame_t f;
  weft_fork(&f, fib_frame, (void *)(intptr_t)(n - 1));
  long b = (long)(intptr_t)fib_frame((void *)(intptr_t)(n - 2));
  long a = (long)(intptr_t)weft_sync(&f);
  return (void *)(intptr_t)(a + b);
}

/* ---- skynet: 10-ary tree, leaves return their number ---- */
typedef struct {
  int64_t num, size;
} sky_arg_t;
static void *skynet(void *arg) {
  sky_arg_t *a = arg;
  if (a->size == 1) return (void *)(intptr_t)a->num;
  sky_arg_t kids[10];
  weft_call_t calls[10];
  void *res[10];
  for (int i = 0; i < 10; i++) {
    kids[i] = (sky_arg_t){a->num + i * (a->size / 10), a->size / 10};
    calls[i] = (weft_call_t){skynet, &kids[i]};
  }
  check(weft_gather_calls(calls, 10, res), "gather");
  int64_t sum = 0;
  for (int i = 0; i < 10; i++) sum += (int64_t)(intptr_t)res[i];
  return (void *)(intptr_t)sum;
}

/* ---- spawn: n empty tasks, gathered (many_main with `one`) ---- */
static void *one(void *arg) {
  (void)arg;
  return (void *)1;
}

/* ---- yield: 1000 tasks yielding n/1000 times each ---- */
static void *yielder(void *arg) {
  long k = (long)(intptr_t)arg, done = 0;
  for (long i = 0; i < k; i++) {
    weft_yield();
    done++;
  }
  return (void *)(intptr_t)done;
}
/* Spawns `count` tasks fn(arg_of(i)), gathers them, sums their results. */
typedef struct {
  long count;
  weft_fn fn;
  void *(*arg_of)(long i, void *ctx);
  void *ctx;
} many_t;
static void *many_main(void *arg) {
  many_t *m = arg;
  weft_task_t **ts = malloc(sizeof *ts * (size_t)m->count);
  for (long i = 0; i < m->count; i++) check(weft_spawn(&ts[i], m->fn, m->arg_of(i, m->ctx)), "spawn");
  /* No results array: each result is read from its handle as the handle is released, so the
   * workload holds one n-slot array, as the peers do (Go's and OpenMP's results, Tokio's
   * handles); a second one cost spawn 10^6 8 MB of fresh pages (session 15). */
  check(weft_gather(ts, (size_t)m->count, NULL), "gather");
  int64_t sum = 0;
  for (long i = 0; i < m->count; i++) {
    void *r;
    check(weft_task_result(ts[i], &r), "result");
    sum += (int64_t)(intptr_t)r;
    weft_task_release(ts[i]);
  }
  free(ts);
  return (void *)(intptr_t)sum;
}
/* ---- spawn-detached: the peers' own spawn program — n detached tasks that each store 1 in
 * their slot of a results array and mark a wait group done (Go's goroutines and WaitGroup,
 * OpenMP's tasks and taskwait); the spawner waits, then sums. No handles: each descriptor is
 * free once its task ends. ---- */
typedef struct {
  int64_t *res;
  weft_waitgroup_t *done;
} detached_t;
static detached_t detached;
static void *detached_one(void *arg) {
  detached.res[(intptr_t)arg] = 1;
  weft_waitgroup_done(detached.done);
  return NULL;
}
static void *detached_main(void *arg) {
  long n = (long)(intptr_t)arg;
  detached.res = malloc(sizeof *detached.res * (size_t)(n > 0 ? n : 1));
  check(detached.res ? 0 : WEFT_ENOMEM, "malloc");
  check(weft_waitgroup_create(&detached.done), "waitgroup");
  check(weft_waitgroup_add(detached.done, n), "add");
  for (long i = 0; i < n; i++) check(weft_spawn(NULL, detached_one, (void *)(intptr_t)i), "spawn");
  check(weft_waitgroup_wait(detached.done, UINT64_MAX), "wait");
  int64_t sum = 0;
  for (long i = 0; i < n; i++) sum += detached.res[i];
  weft_waitgroup_destroy(detached.done);
  free(detached.res);
  return (void *)(intptr_t)sum;
}
static void *arg_const(long i, void *ctx) {
  (void)i;
  return ctx;
}
static void *arg_index(long i, void *ctx) {
  (void)ctx;
  return (void *)(intptr_t)i;
}

/* ---- sleep: task i sleeps (i*7919 % 1000) ms, returns i ---- */
static void *sleeper(void *arg) {
  long i = (long)(intptr_t)arg;
  weft_sleep_ms((uint64_t)(i * 7919 % 1000));
  return (void *)(intptr_t)i;
}

/* ---- cancel: n tasks sleep an hour; all are cancelled, then joined; r = how many ended
 * cancelled (Go: a context's cancel; Tokio: JoinHandle::abort) ---- */
static void *hour_sleeper(void *arg) {
  (void)arg;
  weft_sleep_ms(3600 * 1000);
  return NULL;
}
static void *cancel_main(void *arg) {
  long n = (long)(intptr_t)arg, cancelled = 0;
  weft_task_t **t = malloc(sizeof *t * (size_t)n);
  if (!t) return NULL;
  for (long i = 0; i < n; i++) check(weft_spawn(&t[i], hour_sleeper, NULL), "spawn");
  for (long i = 0; i < n; i++) weft_cancel(t[i]);
  for (long i = 0; i < n; i++) cancelled += weft_join(t[i], NULL) == WEFT_ECANCELED;
  free(t);
  return (void *)(intptr_t)cancelled;
}

/* ---- gather: n tasks each doing k sleeps of 1 ms ---- */
static long gather_k = 10;
static void *ticker(void *arg) {
  (void)arg;
  for (long i = 0; i < gather_k; i++) weft_sleep_ms(1);
  return (void *)(intptr_t)gather_k;
}

/* ---- timer-lateness: n sleeps, lateness recorded ---- */
typedef struct {
  long n;
  uint64_t *late_ns;
  int busy;
} late_t;
static volatile int spin_stop;
static void *cpu_hog(void *arg) {
  (void)arg;
  while (!spin_stop) {
    for (volatile int i = 0; i < 100000; i++) {
    }
    weft_yield();
  }
  return NULL;
}
typedef struct {
  late_t *l;
  long i;
} late_arg_t;
static void *late_sleeper(void *arg) {
  late_arg_t *a = arg;
  uint64_t d = (uint64_t)(1 + a->i * 37 % 20) * 1000000u;
  uint64_t deadline = weft_now_ns() + d;
  weft_sleep_until(deadline);
  uint64_t now = weft_now_ns();
  a->l->late_ns[a->i] = now >= deadline ? now - deadline : UINT64_MAX; /* early: flagged */
  return NULL;
}
static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}
static void *late_main(void *arg) {
  late_t *l = arg;
  weft_task_t *hogs[4];
  int hog_count = l->busy ? 4 : 0; /* more CPU-bound tasks than workers */
  spin_stop = 0;
  for (int i = 0; i < hog_count; i++) check(weft_spawn(&hogs[i], cpu_hog, NULL), "spawn");
  late_arg_t *args = malloc(sizeof *args * (size_t)l->n);
  weft_task_t **ts = malloc(sizeof *ts * (size_t)l->n);
  for (long i = 0; i < l->n; i++) {
    args[i] = (late_arg_t){l, i};
    check(weft_spawn(&ts[i], late_sleeper, &args[i]), "spawn");
  }
  check(weft_gather(ts, (size_t)l->n, NULL), "gather");
  for (long i = 0; i < l->n; i++) weft_task_release(ts[i]);
  spin_stop = 1;
  for (int i = 0; i < hog_count; i++) weft_join(hogs[i], NULL);
  free(args);
  free(ts);
  return NULL;
}

/* ---- inject: INJECT_THREADS plain threads (not workers) spawn n tasks in all into one runtime
 * with weft_runtime_spawn, then each joins its own; r = the tasks' results summed (Go: 8
 * goroutines spawning; Tokio: Handle::spawn from 8 std threads) ---- */
enum { INJECT_THREADS = 8 };
typedef struct {
  weft_runtime_t *rt;
  long count;
  int64_t sum;
} inject_t;
static void *inject_thread(void *arg) {
  inject_t *a = arg;
  weft_task_t **ts = malloc(sizeof *ts * (size_t)a->count);
  if (!ts) check(WEFT_ENOMEM, "inject handles");
  for (long i = 0; i < a->count; i++) check(weft_runtime_spawn(a->rt, &ts[i], one, NULL), "spawn");
  for (long i = 0; i < a->count; i++) {
    void *r;
    check(weft_join(ts[i], &r), "join");
    a->sum += (int64_t)(intptr_t)r;
  }
  free(ts);
  return NULL;
}
static int64_t inject_run(const weft_options_t *opts, long n) {
  weft_runtime_t *rt;
  check(weft_runtime_create(&rt, opts), "runtime");
  inject_t a[INJECT_THREADS];
  pthread_t th[INJECT_THREADS];
  for (int i = 0; i < INJECT_THREADS; i++) {
    a[i] = (inject_t){rt, n / INJECT_THREADS + (i < n % INJECT_THREADS), 0};
    if (pthread_create(&th[i], NULL, inject_thread, &a[i])) check(WEFT_ENOMEM, "thread");
  }
  int64_t sum = 0;
  for (int i = 0; i < INJECT_THREADS; i++) {
    pthread_join(th[i], NULL);
    sum += a[i].sum;
  }
  check(weft_runtime_destroy(rt), "destroy");
  return sum;
}

/* ---- switch: raw context switches between two stacks ---- */
static weft__ctx_t sw_main, sw_other;
static long sw_left;
static void sw_entry(void *arg) {
  (void)arg;
  for (;;) weft__context_switch(&sw_other.sp, sw_main.sp);
}

/* ---- pingpong, chan, mutex: synchronisation and channels (issue 11) ---- */
/* pingpong: n round trips between two tasks over two unbuffered channels. */
typedef struct {
  weft_chan_t *ping, *pong;
  long n;
} pingpong_t;
static void *pong_task(void *arg) {
  pingpong_t *p = arg;
  void *v;
  for (long i = 0; i < p->n; i++) {
    check(weft_chan_recv(p->ping, &v, UINT64_MAX), "recv");
    check(weft_chan_send(p->pong, v, UINT64_MAX), "send");
  }
  return NULL;
}
static void *pingpong_main(void *arg) {
  pingpong_t *p = arg;
  weft_task_t *t;
  check(weft_spawn(&t, pong_task, p), "spawn");
  long sum = 0;
  for (long i = 0; i < p->n; i++) {
    void *v;
    check(weft_chan_send(p->ping, (void *)(intptr_t)1, UINT64_MAX), "send");
    check(weft_chan_recv(p->pong, &v, UINT64_MAX), "recv");
    sum += (long)(intptr_t)v;
  }
  weft_join(t, NULL);
  return (void *)(intptr_t)sum;
}
/* chan: 4 producers and 4 consumers move n values through one channel of capacity 1024. */
enum { CHAN_SIDES = 4, CHAN_CAP = 1024, MUTEX_TASKS = 8 };
typedef struct {
  weft_chan_t *c;
  long per;
  _Atomic long sum;
  _Atomic int producers_left;
} chanbench_t;
static void *chan_producer(void *arg) {
  chanbench_t *b = arg;
  for (long i = 0; i < b->per; i++) check(weft_chan_send(b->c, (void *)(intptr_t)1, UINT64_MAX), "send");
  if (atomic_fetch_sub(&b->producers_left, 1) == 1) weft_chan_close(b->c);
  return NULL;
}
static void *chan_consumer(void *arg) {
  chanbench_t *b = arg;
  long sum = 0;
  void *v;
  while (weft_chan_recv(b->c, &v, UINT64_MAX) == 0) sum += (long)(intptr_t)v;
  atomic_fetch_add(&b->sum, sum);
  return NULL;
}
static void *chan_main(void *arg) {
  long n = (long)(intptr_t)arg;
  chanbench_t b = {NULL, n / CHAN_SIDES, 0, CHAN_SIDES};
  check(weft_chan_create(&b.c, CHAN_CAP), "chan");
  weft_task_t *t[2 * CHAN_SIDES];
  for (int i = 0; i < CHAN_SIDES; i++) check(weft_spawn(&t[i], chan_consumer, &b), "spawn");
  for (int i = 0; i < CHAN_SIDES; i++) check(weft_spawn(&t[CHAN_SIDES + i], chan_producer, &b), "spawn");
  for (int i = 0; i < 2 * CHAN_SIDES; i++) weft_join(t[i], NULL);
  weft_chan_destroy(b.c);
  return (void *)(intptr_t)atomic_load(&b.sum);
}
/* mutex: 8 tasks each lock, increment, unlock n/8 times. */
typedef struct {
  weft_mutex_t *m;
  long per, counter;
} mutexbench_t;
static void *mutex_task(void *arg) {
  mutexbench_t *b = arg;
  for (long i = 0; i < b->per; i++) {
    weft_mutex_lock(b->m, UINT64_MAX);
    b->counter++;
    weft_mutex_unlock(b->m);
  }
  return NULL;
}
static void *mutex_main(void *arg) {
  long n = (long)(intptr_t)arg;
  mutexbench_t b = {NULL, n / MUTEX_TASKS, 0};
  check(weft_mutex_create(&b.m), "mutex");
  weft_task_t *t[MUTEX_TASKS];
  for (int i = 0; i < MUTEX_TASKS; i++) check(weft_spawn(&t[i], mutex_task, &b), "spawn");
  for (int i = 0; i < MUTEX_TASKS; i++) weft_join(t[i], NULL);
  weft_mutex_destroy(b.m);
  return (void *)(intptr_t)b.counter;
}
static int sync_workload(const char *work, long n, weft_options_t *opts, int64_t *result) {
  void *r = NULL;
  if (!strcmp(work, "pingpong")) {
    pingpong_t p = {NULL, NULL, n};
    check(weft_chan_create(&p.ping, 0), "chan");
    check(weft_chan_create(&p.pong, 0), "chan");
    check(weft_run(opts, pingpong_main, &p, &r), "run");
    weft_chan_destroy(p.ping);
    weft_chan_destroy(p.pong);
  } else if (!strcmp(work, "chan")) {
    check(weft_run(opts, chan_main, (void *)(intptr_t)n, &r), "run");
  } else if (!strcmp(work, "mutex")) {
    check(weft_run(opts, mutex_main, (void *)(intptr_t)n, &r), "run");
  } else {
    return 0;
  }
  *result = (int64_t)(intptr_t)r;
  return 1;
}

static double ms_since(uint64_t t0) { return (double)(weft_now_ns() - t0) / 1e6; }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <fib|fib-frame|skynet|yield|spawn|spawn-detached|spawn[-detached]-throttled|gather|sleep|cancel|inject|switch|"
                    "timer-lateness|pingpong|chan|mutex> <n> "
                    "[-w workers] [-s stack_bytes] [-k k] [-t spawn_throttle]\n", argv[0]);
    return 2;
  }
  const char *work = argv[1], *run_work = work; /* printed; run (less a -throttled) */
  long n = strtol(argv[2], NULL, 10);
  weft_options_t opts = WEFT_OPTIONS_INIT;
  opts.workers = 2;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-w")) opts.workers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-s")) opts.stack_size = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-k")) gather_k = strtol(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-t")) opts.spawn_throttle = (uint32_t)strtoul(argv[i + 1], NULL, 10);
  }
  /* spawn-throttled, spawn-detached-throttled: spawn and spawn-detached with the runtime's
   * spawn throttling on at libomp's depth (weft_options_t.spawn_throttle; -t sets another) */
  char base[64];
  const char *suffix = strstr(work, "-throttled");
  if (suffix && !suffix[strlen("-throttled")] && (size_t)(suffix - work) < sizeof base) {
    memcpy(base, work, (size_t)(suffix - work));
    base[suffix - work] = 0;
    if (!opts.spawn_throttle) opts.spawn_throttle = 256;
    run_work = base;
  }
  void *r = NULL;
  int64_t result = 0;
  uint64_t t0 = weft_now_ns();
  if (sync_workload(run_work, n, &opts, &result)) {
    /* pingpong, chan, mutex (issue 11) */
  } else if (!strcmp(run_work, "fib")) {
    check(weft_run(&opts, fib, (void *)(intptr_t)n, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "fib-frame")) {
    check(weft_run(&opts, fib_frame, (void *)(intptr_t)n, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "skynet")) {
    sky_arg_t a = {0, n};
    check(weft_run(&opts, skynet, &a, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "spawn")) {
    many_t m = {n, one, arg_const, NULL};
    check(weft_run(&opts, many_main, &m, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "spawn-detached")) {
    check(weft_run(&opts, detached_main, (void *)(intptr_t)n, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "yield")) {
    many_t m = {1000, yielder, arg_const, (void *)(intptr_t)(n / 1000)};
    check(weft_run(&opts, many_main, &m, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "sleep")) {
    many_t m = {n, sleeper, arg_index, NULL};
    check(weft_run(&opts, many_main, &m, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "cancel")) {
    check(weft_run(&opts, cancel_main, (void *)(intptr_t)n, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "inject")) {
    result = inject_run(&opts, n);
  } else if (!strcmp(run_work, "gather")) {
    many_t m = {n, ticker, arg_const, NULL};
    check(weft_run(&opts, many_main, &m, &r), "run");
    result = (int64_t)(intptr_t)r;
  } else if (!strcmp(run_work, "switch")) {
    size_t bytes = 64 * 1024;
    char *stack = malloc(bytes);
    sw_other.sp = weft__context_make(stack + bytes, sw_entry, NULL);
    weft__context_switch(&sw_main.sp, sw_other.sp); /* warm up */
    uint64_t s0 = weft_now_ns();
    for (sw_left = n / 2; sw_left > 0; sw_left--) weft__context_switch(&sw_main.sp, sw_other.sp);
    double ns = (double)(weft_now_ns() - s0) / (double)(n / 2 * 2);
    free(stack);
    printf("weft switch n=%ld r=%ld ms=%.1f rss_kb=%ld ns_per_switch=%.2f\n", n, n, ms_since(t0),
           peak_rss_kb(), ns);
    return 0;
  } else if (!strcmp(run_work, "timer-lateness")) {
    for (int busy = 0; busy < 2; busy++) {
      late_t l = {n, calloc((size_t)n, sizeof(uint64_t)), busy};
      uint64_t s0 = weft_now_ns();
      check(weft_run(&opts, late_main, &l, NULL), "run");
      qsort(l.late_ns, (size_t)n, sizeof(uint64_t), cmp_u64);
      long early = 0;
      for (long i = 0; i < n; i++) early += l.late_ns[i] == UINT64_MAX;
      printf("weft timer-lateness n=%ld r=%ld ms=%.1f rss_kb=%ld load=%s p50_us=%.1f p99_us=%.1f "
             "max_us=%.1f early=%ld\n",
             n, n - early, ms_since(s0), peak_rss_kb(), busy ? "cpu" : "idle",
             (double)l.late_ns[n / 2] / 1e3, (double)l.late_ns[n * 99 / 100] / 1e3,
             early ? -1.0 : (double)l.late_ns[n - 1] / 1e3, early);
      free(l.late_ns);
    }
    return 0;
  } else {
    fprintf(stderr, "weft-bench: unknown workload '%s'\n", work);
    return 2;
  }
  printf("weft %s n=%ld r=%" PRId64 " ms=%.1f rss_kb=%ld\n", work, n, result, ms_since(t0),
         peak_rss_kb());
  return 0;
}
