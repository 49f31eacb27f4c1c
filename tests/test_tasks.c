/* Tasks, await, gather, futures, inline awaits, stealing, yields: issue 2's behaviour. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET, sched_getcpu */
#include "support.h"
#include "../lib/internal.h" /* test-only probes (weft__probe_count) */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* ---- spawn / await ---- */

static void *square(void *arg) { return IPTR(PINT(arg) * PINT(arg)); }

static void *spawn_await_main(void *arg) {
  (void)arg;
  weft_task_t *t[8];
  for (long i = 0; i < 8; i++) OK(weft_spawn(&t[i], square, IPTR(i + 1)));
  long sum = 0;
  for (long i = 0; i < 8; i++) {
    void *r;
    OK(weft_await(t[i], &r));
    cr_assert_eq(PINT(r), (i + 1) * (i + 1));
    void *again;
    OK(weft_await(t[i], &again)); /* a second await returns the same result at once */
    cr_assert_eq(again, r);
    cr_assert(weft_task_done(t[i]));
    OK(weft_task_result(t[i], &again));
    cr_assert_eq(again, r);
    weft_task_release(t[i]);
    sum += PINT(r);
  }
  return IPTR(sum);
}

Test(tasks, spawn_await_returns_results) {
  cr_assert_eq(PINT(run_on(2, spawn_await_main, NULL)), 204);
}

Test(tasks, await_from_a_foreign_thread) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, square, IPTR(9)));
  void *r;
  OK(weft_await(t, &r));
  cr_assert_eq(PINT(r), 81);
  weft_task_release(t);
  OK(weft_runtime_destroy(rt));
}

Test(tasks, bad_arguments_are_errors) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  cr_assert_eq(weft_runtime_spawn(rt, &t, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_runtime_spawn(NULL, &t, square, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_spawn(&t, square, NULL), WEFT_EPERM); /* not inside a task */
  cr_assert_eq(weft_yield(), WEFT_EPERM);
  OK(weft_runtime_destroy(rt));
  cr_assert_str_eq(weft_strerror(WEFT_ETIMEDOUT),
                   "the deadline passed before the awaited work finished");
  cr_assert_str_eq(weft_err_name(WEFT_ENOMEM), "WEFT_ENOMEM");
  cr_assert_str_eq(weft_strerror(12345), "unknown error");
}

/* ---- detached tasks ---- */

static atomic_long detached_ran;
static void *count_and_resolve(void *arg) {
  if (atomic_fetch_add(&detached_ran, 1) + 1 == 100) weft_future_resolve(arg, IPTR(1));
  return NULL;
}
static void *detached_main(void *arg) {
  (void)arg;
  weft_future_t *f;
  OK(weft_future_create(&f));
  for (int i = 0; i < 100; i++) OK(weft_spawn(NULL, count_and_resolve, f));
  OK(weft_future_await(f, NULL));
  weft_future_destroy(f);
  return NULL;
}
Test(tasks, detached_tasks_run_and_free_themselves) {
  atomic_store(&detached_ran, 0);
  run_on(2, detached_main, NULL);
  cr_assert_eq(atomic_load(&detached_ran), 100);
}

/* ---- futures ---- */

typedef struct {
  weft_future_t *f;
  atomic_int waiting;
} fut_ctx_t;

static void *await_future(void *arg) {
  fut_ctx_t *c = arg;
  atomic_fetch_add(&c->waiting, 1);
  void *v;
  OK(weft_future_await(c->f, &v));
  return v;
}

static void *resolver_thread(void *arg) {
  fut_ctx_t *c = arg;
  while (atomic_load(&c->waiting) < 16) sched_yield(); /* all 16 have at least started */
  cr_assert_eq(weft_future_resolve(c->f, IPTR(42)), 0);
  cr_assert_eq(weft_future_resolve(c->f, IPTR(43)), WEFT_EALREADY);
  return NULL;
}

Test(futures, foreign_thread_resolve_wakes_every_awaiter) {
  weft_runtime_t *rt = test_runtime(2);
  fut_ctx_t c = {0};
  OK(weft_future_create(&c.f));
  weft_task_t *t[16];
  for (int i = 0; i < 16; i++) OK(weft_runtime_spawn(rt, &t[i], await_future, &c));
  pthread_t th;
  pthread_create(&th, NULL, resolver_thread, &c);
  for (int i = 0; i < 16; i++) {
    void *v;
    OK(weft_join(t[i], &v));
    cr_assert_eq(PINT(v), 42);
  }
  pthread_join(th, NULL);
  cr_assert(weft_future_done(c.f));
  weft_future_destroy(c.f);
  OK(weft_runtime_destroy(rt));
}

/* The owner of a future may destroy it as soon as its own await returns, though the other
 * awaiters woken by the same resolve have not run yet: each has the value in its own frame
 * (review, session 30: they read the freed future, which ASan and valgrind report). One
 * worker, so that the owner resolves, awaits and destroys before any of them runs again. */
static void *owner_destroys_after_its_own_await(void *arg) {
  (void)arg;
  fut_ctx_t c = {0};
  OK(weft_future_create(&c.f));
  weft_task_t *t[4];
  for (int i = 0; i < 4; i++) OK(weft_spawn(&t[i], await_future, &c));
  while (atomic_load(&c.waiting) < 4) weft_yield(); /* one worker: each that began has parked */
  OK(weft_future_resolve(c.f, IPTR(42)));
  void *v;
  OK(weft_future_await(c.f, &v));
  cr_assert_eq(PINT(v), 42);
  weft_future_destroy(c.f);
  long sum = 0;
  for (int i = 0; i < 4; i++) {
    OK(weft_join(t[i], &v));
    sum += PINT(v);
  }
  return IPTR(sum);
}

Test(futures, the_owner_may_destroy_a_future_once_its_own_await_returns) {
  cr_assert_eq(PINT(run_on(1, owner_destroys_after_its_own_await, NULL)), 4 * 42);
}

static void *await_resolved(void *arg) {
  void *v;
  OK(weft_future_await(arg, &v));
  return v;
}

Test(futures, resolved_before_await_is_seen_at_once) {
  weft_future_t *f;
  OK(weft_future_create(&f));
  OK(weft_future_resolve(f, IPTR(7)));
  cr_assert_eq(PINT(run_on(1, await_resolved, f)), 7);
  void *v;
  OK(weft_future_await(f, &v)); /* from a plain thread too */
  cr_assert_eq(PINT(v), 7);
  weft_future_destroy(f);
}

/* WEFT_EALREADY means resolved: a second resolver that comes while the first is between its
 * claim and its completion returns only once the future reads as done (review, session 34: it
 * returned at once, with weft_future_done still 0, and a caller that destroyed the future on
 * that answer freed it under the first resolver). The first is held at its claim until the
 * second has returned, or 200 ms. */
static weft_future_t *raced_future;
static atomic_int second_returned, done_when_second_returned, second_result;
static pthread_t second_thread;

static void *resolve_second(void *arg) {
  (void)arg;
  atomic_store(&second_result, weft_future_resolve(raced_future, IPTR(2)));
  atomic_store(&done_when_second_returned, weft_future_done(raced_future));
  atomic_store(&second_returned, 1);
  return NULL;
}

/* The first resolver's pause, after its claim: the second starts now, so it loses. */
static void start_the_second_and_hold(void) {
  cr_assert_eq(pthread_create(&second_thread, NULL, resolve_second, NULL), 0);
  uint64_t until = weft_now_ns() + 200 * 1000000ull;
  while (!atomic_load(&second_returned) && weft_now_ns() < until) sched_yield();
}

Test(futures, a_second_resolve_returns_ealready_only_once_the_first_has_completed) {
  OK(weft_future_create(&raced_future));
  weft__pause_set(WEFT__PAUSE_FUTURE_CLAIMED, start_the_second_and_hold);
  int first = weft_future_resolve(raced_future, IPTR(1));
  weft__pause_set(WEFT__PAUSE_FUTURE_CLAIMED, NULL);
  pthread_join(second_thread, NULL);
  OK(first);
  cr_assert_eq(atomic_load(&second_result), WEFT_EALREADY);
  cr_assert_eq(atomic_load(&done_when_second_returned), 1,
               "the second resolve returned WEFT_EALREADY while the future read as not done");
  void *v;
  OK(weft_future_await(raced_future, &v));
  cr_assert_eq(PINT(v), 1, "the first value stays");
  weft_future_destroy(raced_future);
}

/* A plain thread's wake-up of a task reaches it promptly when the worker it wakes shares the
 * thread's CPU (session 27: the woken worker preempted the thread between its queue exchange
 * and its link, then spun on the unlinked entry until the scheduler's tick: ~4 ms every round
 * here, pinned to one CPU with two workers). Timing is the feature: the median round trip must
 * stay under 500 µs, where it measures ~20 µs fixed and ~4 000 µs broken. */
enum { PINNED_ROUNDS = 300 };
typedef struct {
  weft_sem_t *to_task, *to_thread;
} pinned_pingpong_t;

static void *pinned_echo(void *arg) {
  pinned_pingpong_t *p = arg;
  for (int i = 0; i < PINNED_ROUNDS; i++) {
    OK(weft_sem_acquire(p->to_task, UINT64_MAX));
    OK(weft_sem_release(p->to_thread));
  }
  return NULL;
}

static int by_ns(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

Test(foreign, a_wake_from_a_thread_on_the_workers_cpu_is_not_held_to_a_tick, .timeout = 60) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0, "pinning the test to one CPU");
  weft_runtime_t *rt = test_runtime(2); /* its workers inherit the one CPU */
  pinned_pingpong_t p;
  OK(weft_sem_create(&p.to_task, 0, 0));
  OK(weft_sem_create(&p.to_thread, 0, 0));
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, pinned_echo, &p));
  static uint64_t round_ns[PINNED_ROUNDS];
  for (int i = 0; i < PINNED_ROUNDS; i++) {
    uint64_t t0 = weft_now_ns();
    OK(weft_sem_release(p.to_task));
    OK(weft_sem_acquire(p.to_thread, UINT64_MAX));
    round_ns[i] = weft_now_ns() - t0;
  }
  OK(weft_join(t, NULL));
  qsort(round_ns, PINNED_ROUNDS, sizeof round_ns[0], by_ns);
  uint64_t median = round_ns[PINNED_ROUNDS / 2];
  /* Under valgrind every thread runs under its one lock, handed over on its own schedule: the
   * round trip is valgrind's (2.5 ms median, seen in session 30's CI run beside two soaks),
   * not the kernel scheduler's that the bound is about; the round trips themselves must still
   * all complete. tests/valgrind_check.sh sets this (a cr_skip there would leave Criterion's
   * own allocations for valgrind to report). */
  if (!getenv("WEFT_TEST_UNDER_VALGRIND"))
    cr_assert_lt(median, 500000u, "median round trip %llu µs (a scheduler tick is ~4 000)",
                 (unsigned long long)(median / 1000));
  weft_sem_destroy(p.to_task);
  weft_sem_destroy(p.to_thread);
  OK(weft_runtime_destroy(rt));
}

/* ---- gather ---- */

static void *ret_after_yields(void *arg) {
  long i = PINT(arg);
  for (long k = 0; k < i % 4; k++) weft_yield();
  return IPTR(i * 10);
}

static void *gather_order_main(void *arg) {
  (void)arg;
  enum { N = 40 };
  weft_task_t *t[N];
  for (long i = 0; i < N; i++) OK(weft_spawn(&t[i], ret_after_yields, IPTR(i)));
  /* Some finish before the gather: await a few first. */
  for (long i = 0; i < N; i += 7) OK(weft_await(t[i], NULL));
  void *res[N];
  OK(weft_gather(t, N, res));
  for (long i = 0; i < N; i++) {
    cr_assert_eq(PINT(res[i]), i * 10, "result %ld out of order", i);
    weft_task_release(t[i]);
  }
  /* gather of calls, with more than fit on the stack */
  weft_call_t calls[N];
  for (long i = 0; i < N; i++) calls[i] = (weft_call_t){ret_after_yields, IPTR(N - i)};
  OK(weft_gather_calls(calls, N, res));
  for (long i = 0; i < N; i++) cr_assert_eq(PINT(res[i]), (N - i) * 10);
  OK(weft_gather(NULL, 0, NULL));
  return NULL;
}

Test(gather, keeps_argument_order_before_during_after) {
  for (int w = 1; w <= 4; w *= 2) run_on(w, gather_order_main, NULL);
}

static void *sleepy_child(void *arg) {
  weft_sleep_ms((uint64_t)PINT(arg));
  return arg;
}

static void *gather_after_children_main(void *arg) {
  (void)arg;
  weft_task_t *t[3];
  OK(weft_spawn(&t[0], sleepy_child, IPTR(0)));
  OK(weft_spawn(&t[1], sleepy_child, IPTR(5)));
  OK(weft_spawn(&t[2], sleepy_child, IPTR(30)));
  weft_sleep_ms(15); /* t0 and t1 are done by now; t2 finishes after the gather starts */
  void *res[3];
  OK(weft_gather(t, 3, res));
  for (int i = 0; i < 3; i++) weft_task_release(t[i]);
  return IPTR(PINT(res[0]) + PINT(res[1]) * 100 + PINT(res[2]) * 10000);
}

Test(gather, children_finishing_before_and_after) {
  cr_assert_eq(PINT(run_on(2, gather_after_children_main, NULL)), 0 + 500 + 300000);
}

static void *nested(void *arg) {
  long depth = PINT(arg);
  if (depth == 0) return IPTR(1);
  weft_call_t calls[3];
  for (int i = 0; i < 3; i++) calls[i] = (weft_call_t){nested, IPTR(depth - 1)};
  void *res[3];
  OK(weft_gather_calls(calls, 3, res));
  return IPTR(PINT(res[0]) + PINT(res[1]) + PINT(res[2]));
}

Test(gather, nested_gathers) { cr_assert_eq(PINT(run_on(3, nested, IPTR(6))), 729); }

/* ---- fib ---- */

static void *fib(void *arg) {
  long n = PINT(arg);
  if (n < 2) return arg;
  weft_task_t *t;
  OK(weft_spawn(&t, fib, IPTR(n - 1)));
  long b = PINT(fib(IPTR(n - 2)));
  void *a;
  OK(weft_join(t, &a));
  return IPTR(PINT(a) + b);
}

Test(tasks, fib25_one_task_per_call) {
  for (int w = 1; w <= 4; w *= 2) cr_assert_eq(PINT(run_on(w, fib, IPTR(25))), 75025);
}

/* ---- a million tasks, each exactly once ---- */

typedef struct {
  _Atomic unsigned char *ran;
  long n;
} once_ctx_t;
static once_ctx_t once;

static void *mark_once(void *arg) {
  long i = PINT(arg);
  atomic_fetch_add_explicit(&once.ran[i], 1, memory_order_relaxed);
  return arg;
}

static void *million_main(void *arg) {
  long batch = PINT(arg);
  weft_task_t **t = malloc(sizeof *t * (size_t)batch);
  for (long base = 0; base < once.n; base += batch) {
    long m = once.n - base < batch ? once.n - base : batch;
    for (long i = 0; i < m; i++) OK(weft_spawn(&t[i], mark_once, IPTR(base + i)));
    OK(weft_gather(t, (size_t)m, NULL));
    for (long i = 0; i < m; i++) weft_task_release(t[i]);
  }
  free(t);
  return NULL;
}

Test(tasks, million_tasks_each_run_exactly_once, .timeout = 600) {
  once.n = SCALE(1000000, 200000);
  once.ran = calloc((size_t)once.n, 1);
  for (int w = 1; w <= 8; w *= 2) {
    memset((void *)once.ran, 0, (size_t)once.n);
    run_on(w, million_main, IPTR(SCALE(100000, 2000)));
    for (long i = 0; i < once.n; i++)
      cr_assert_eq(atomic_load(&once.ran[i]), 1, "task %ld ran %d times with %d workers", i,
                   atomic_load(&once.ran[i]), w);
  }
  free((void *)once.ran);
}

/* ---- spawns from foreign threads ---- */

typedef struct {
  weft_runtime_t *rt;
  long first, count;
} feeder_t;

static void *feeder(void *arg) {
  feeder_t *f = arg;
  weft_task_t **t = malloc(sizeof *t * (size_t)f->count);
  for (long i = 0; i < f->count; i++)
    cr_assert_eq(weft_runtime_spawn(f->rt, &t[i], mark_once, IPTR(f->first + i)), 0);
  for (long i = 0; i < f->count; i++) {
    void *r;
    cr_assert_eq(weft_join(t[i], &r), 0);
    cr_assert_eq(PINT(r), f->first + i);
  }
  free(t);
  return NULL;
}

static void *busy_spawner(void *arg) {
  (void)arg;
  for (int round = 0; round < 50; round++) {
    weft_call_t calls[16];
    for (int i = 0; i < 16; i++) calls[i] = (weft_call_t){square, IPTR(i)};
    OK(weft_gather_calls(calls, 16, NULL));
  }
  return NULL;
}

/* .timeout: 130 s under gcc TSan on one shared CPU (review, session 35) */
Test(tasks, foreign_threads_spawn_while_workers_steal, .timeout = 600) {
  once.n = SCALE(100000, 20000);
  once.ran = calloc((size_t)once.n, 1);
  weft_runtime_t *rt = test_runtime(3);
  weft_task_t *busy;
  OK(weft_runtime_spawn(rt, &busy, busy_spawner, NULL));
  pthread_t th[4];
  feeder_t f[4];
  for (int i = 0; i < 4; i++) {
    f[i] = (feeder_t){rt, i * (once.n / 4), once.n / 4};
    pthread_create(&th[i], NULL, feeder, &f[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  OK(weft_join(busy, NULL));
  OK(weft_runtime_destroy(rt));
  for (long i = 0; i < once.n; i++) cr_assert_eq(atomic_load(&once.ran[i]), 1, "task %ld", i);
  free((void *)once.ran);
}

/* ---- stealing and inline awaits ---- */

static atomic_int spin_release;

/* Returns once some worker of rt has stolen a task; fails the test after 30 s without one. */
static void wait_until_stolen(weft_runtime_t *rt) {
  weft_stats_t st = WEFT_STATS_INIT;
  uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
  do {
    OK(weft_runtime_stats(rt, &st));
    cr_assert_lt(weft_now_ns(), give_up, "no worker stole a task within 30 s");
    sched_yield();
  } while (st.tasks_stolen == 0);
}

static void *spin_child_value(void *arg) { return arg; }

static void *spin_until_released(void *arg) {
  while (!atomic_load(&spin_release)) sched_yield();
  return arg;
}

static void *steal_main(void *arg) {
  weft_runtime_t *rt = arg;
  enum { N = 64 };
  weft_task_t *t[N];
  atomic_store(&spin_release, 0);
  for (long i = 0; i < N; i++) OK(weft_spawn(&t[i], spin_until_released, IPTR(i)));
  wait_until_stolen(rt); /* the other worker is idle: it must steal (oldest first) */
  atomic_store(&spin_release, 1);
  void *res[N];
  OK(weft_gather(t, N, res));
  for (long i = 0; i < N; i++) {
    cr_assert_eq(PINT(res[i]), i);
    weft_task_release(t[i]);
  }
  return NULL;
}

Test(scheduler, an_idle_worker_steals) { run_given_runtime(2, steal_main); }

typedef struct {
  weft_task_t *self_seen;
  pthread_t thread_seen;
} inline_probe_t;

static void *probe(void *arg) {
  inline_probe_t *p = arg;
  p->self_seen = weft_current();
  p->thread_seen = pthread_self();
  weft_task_set_name(weft_current(), "probe");
  return IPTR(5);
}

static void *inline_main(void *arg) {
  weft_runtime_t *rt = arg;
  inline_probe_t p = {0};
  weft_stats_t before = WEFT_STATS_INIT, after = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &before));
  weft_task_t *t;
  OK(weft_spawn(&t, probe, &p));
  void *r;
  OK(weft_await(t, &r)); /* nobody started it: it runs here, as a plain call */
  OK(weft_runtime_stats(rt, &after));
  cr_assert_eq(PINT(r), 5);
  cr_assert_eq(p.self_seen, t, "an inlined task is still itself for weft_current()");
  cr_assert(pthread_equal(p.thread_seen, pthread_self()));
  cr_assert_eq(after.tasks_inlined, before.tasks_inlined + 1);
  cr_assert_str_eq(weft_task_name(t), "probe");
  weft_task_release(t);
  return NULL;
}

Test(scheduler, await_of_an_unstarted_task_runs_it_inline) { run_given_runtime(1, inline_main); }

/* weft_join's own inline run (#13, session 8: lib/join.c's join_inline): the joined task runs
 * as itself, its outcome follows weft__task_complete's rules, and its descriptor is free again
 * the moment the join returns (the next spawn on this one worker gets it back: LIFO). */
static atomic_int join_child_ran;

static void *join_child_fails(void *arg) {
  (void)arg;
  atomic_fetch_add(&join_child_ran, 1);
  return weft_fail(-5);
}

static void *join_child_cancels_itself(void *arg) {
  atomic_fetch_add(&join_child_ran, 1);
  weft_cancel(weft_current());
  cr_assert_eq(weft_yield(), WEFT_ECANCELED, "the cancel is delivered at the yield");
  return arg; /* not the outcome: a delivered cancel ends the task cancelled */
}

static void *join_child_suspends(void *arg) {
  atomic_fetch_add(&join_child_ran, 1);
  OK(weft_sleep_ms(1)); /* suspends with its joiner on the joiner's stack; resumes on any worker */
  return arg;
}

static void *join_inline_main(void *arg) {
  weft_runtime_t *rt = arg;
  inline_probe_t p = {0};
  weft_stats_t before = WEFT_STATS_INIT, after = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &before));
  weft_task_t *t, *again;
  void *r = NULL;
  long hits = weft__probe_count(WEFT__PROBE_JOIN_INLINE);
  OK(weft_spawn(&t, probe, &p));
  OK(weft_join(t, &r));
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits + 1, "the join took its shortcut");
  OK(weft_runtime_stats(rt, &after));
  cr_assert_eq(PINT(r), 5);
  cr_assert_eq(p.self_seen, t, "a task joined inline is still itself for weft_current()");
  cr_assert(pthread_equal(p.thread_seen, pthread_self()));
  cr_assert_eq(after.tasks_inlined, before.tasks_inlined + 1);
  OK(weft_spawn(&again, probe, &p));
  cr_assert_eq(again, t, "the joined task's descriptor went back to this worker's free list");
  OK(weft_join(again, NULL));

  atomic_store(&join_child_ran, 0);
  r = IPTR(1);
  OK(weft_spawn(&t, join_child_fails, NULL));
  cr_assert_eq(weft_join(t, &r), -5, "the task's own error");
  cr_assert_null(r);

  r = IPTR(1);
  OK(weft_spawn(&t, join_child_cancels_itself, IPTR(7)));
  cr_assert_eq(weft_join(t, &r), WEFT_ECANCELED, "a delivered cancel ends it cancelled");
  cr_assert_null(r, "no result beside WEFT_ECANCELED");

  r = IPTR(1);
  OK(weft_spawn(&t, join_child_fails, NULL));
  OK(weft_cancel(t));
  cr_assert_eq(weft_join(t, &r), WEFT_ECANCELED, "cancelled before it started: it never runs");
  cr_assert_null(r);
  cr_assert_eq(atomic_load(&join_child_ran), 2);
  /* the probe, its again, the failing and the self-cancelling child; not the unstarted one */
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits + 4);

  OK(weft_spawn(&t, join_child_suspends, IPTR(9)));
  OK(weft_join(t, &r));
  cr_assert_eq(PINT(r), 9);
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits + 5,
               "a child that suspended during its inline run still ends by the shortcut");
  return NULL;
}

Test(scheduler, join_of_an_unstarted_task_runs_it_inline_and_frees_it) {
  run_given_runtime(1, join_inline_main);
}

/* The same joins with a second worker that may steal or resume them (no descriptor check:
 * which worker's list gets it back depends on where the child resumed). */
static void *join_inline_two_main(void *arg) {
  (void)arg;
  enum { N = 2000 };
  for (long i = 0; i < N; i++) {
    weft_task_t *t;
    void *r = NULL;
    OK(weft_spawn(&t, i % 2 ? join_child_suspends : spin_child_value, IPTR(i)));
    OK(weft_join(t, &r));
    cr_assert_eq(PINT(r), i);
  }
  return NULL;
}

Test(scheduler, joins_of_children_that_suspend_or_are_stolen_return_their_results) {
  run_given_runtime(2, join_inline_two_main);
}

/* A joined child that another worker has already taken (forced: the joiner does not leave its
 * worker until the child runs elsewhere) is waited for, not run: the shortcut is not taken. */
static atomic_int taken_child_started, taken_child_go;

static void *child_waits_for_go(void *arg) {
  atomic_store(&taken_child_started, 1);
  while (!atomic_load(&taken_child_go)) sched_yield();
  return arg;
}

static void *join_taken_child_main(void *arg) {
  (void)arg;
  atomic_store(&taken_child_started, 0);
  atomic_store(&taken_child_go, 0);
  long hits = weft__probe_count(WEFT__PROBE_JOIN_INLINE);
  weft_task_t *t;
  void *r = NULL;
  OK(weft_spawn(&t, child_waits_for_go, IPTR(33)));
  while (!atomic_load(&taken_child_started)) sched_yield(); /* only the other worker can run it */
  atomic_store(&taken_child_go, 1);
  OK(weft_join(t, &r));
  cr_assert_eq(PINT(r), 33);
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits, "a stolen child is not run inline");
  return NULL;
}

Test(scheduler, join_of_a_child_another_worker_took_waits_for_it) {
  run_given_runtime(2, join_taken_child_main);
}

static void *stolen_waiter_main(void *arg) {
  weft_runtime_t *rt = arg;
  weft_task_t *t;
  atomic_store(&spin_release, 0);
  OK(weft_spawn(&t, spin_until_released, IPTR(3)));
  weft_task_t *filler;
  OK(weft_spawn(&filler, square, IPTR(2))); /* t is no longer our newest entry */
  wait_until_stolen(rt); /* the other worker took t: thieves take the oldest */
  atomic_store(&spin_release, 1);
  void *r;
  OK(weft_join(t, &r)); /* suspends until the thief's run ends, then resumes */
  cr_assert_eq(PINT(r), 3);
  OK(weft_join(filler, &r));
  cr_assert_eq(PINT(r), 4);
  return NULL;
}

Test(scheduler, await_of_a_stolen_task_suspends_and_resumes) {
  run_given_runtime(2, stolen_waiter_main);
}

/* Whether every worker but the caller's is parked: a look at a counter the spawn's idle rule
 * reads (lib/task.c), so that a test can wait for that state as an event rather than sleep and
 * hope. nidle alone is exact (a worker is on the idle list at most once); nidle + nspinning
 * can count a worker twice for a moment (review, session 11). */
static bool others_counted_idle(weft_runtime_t *rt, int workers) {
  return atomic_load(&rt->nidle) >= workers - 1;
}

/* A give-up inside a task is recorded, not asserted there: a failed cr_assert unwinds with
 * longjmp across the task's stack (ASan's CHECK crash in CI, session 11). The test asserts
 * the record after the run. */
static atomic_int gave_up_round = -1;

static bool give_up_now(uint64_t give_up, int round) {
  if (weft_now_ns() < give_up) return false;
  int none = -1;
  atomic_compare_exchange_strong(&gave_up_round, &none, round);
  return true;
}

enum { GAVE_UP_WAITING_FOR_IDLE = 2000 }; /* a round number no test reaches */

static void wait_until_others_idle(weft_runtime_t *rt, int workers) {
  uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
  while (!others_counted_idle(rt, workers) && !give_up_now(give_up, GAVE_UP_WAITING_FOR_IDLE))
    sched_yield();
}

/* Private spawns (#13, session 10: lib/worker.c): a worker keeps its newest spawns from
 * thieves until one asks. Siblings that can only finish together (each spins, without a weft
 * wait, until the other has started) must still meet when their parent suspends before joining
 * (the scheduler loop shares the rest when it starts the newest) or joins out of LIFO order
 * (the join shares them first). Each round makes the spawns private for certain: the other
 * workers are busy with blockers (spawned while they were idle, so pushed and stolen) when
 * the siblings are spawned, and released before the parent yields or joins. Not covered, by
 * design (weft.h, weft_spawn): a child joined inline that blocks its thread waiting for an
 * older private sibling. */
static atomic_int rendezvous_started, blockers_started, blockers_release;
static atomic_int rendezvous_unshared_round = -1; /* a round whose siblings were not kept */
static int rendezvous_workers;
static long rendezvous_how; /* 0: the parent yields, then joins newest first; 1: oldest first */

static void *rendezvous(void *arg) {
  atomic_fetch_add(&rendezvous_started, 1);
  uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
  while (atomic_load(&rendezvous_started) < 2 && !give_up_now(give_up, 1000)) sched_yield();
  return arg;
}

static void *blocker(void *arg) {
  atomic_fetch_add(&blockers_started, 1);
  while (!atomic_load(&blockers_release)) sched_yield(); /* busy: not idle, nothing to steal */
  return arg;
}

static void *rendezvous_main(void *arg) {
  weft_runtime_t *rt = arg;
  int others = rendezvous_workers - 1;
  for (int round = 0; round < 50 && atomic_load(&gave_up_round) < 0; round++) {
    atomic_store(&rendezvous_started, 0);
    atomic_store(&blockers_started, 0);
    atomic_store(&blockers_release, 0);
    wait_until_others_idle(rt, rendezvous_workers);
    weft_task_t *blockers[8];
    for (int i = 0; i < others; i++) OK(weft_spawn(&blockers[i], blocker, NULL));
    uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
    while (atomic_load(&blockers_started) < others && !give_up_now(give_up, round))
      sched_yield();
    long shared = weft__probe_count(WEFT__PROBE_PRIV_SHARED);
    weft_task_t *first, *a, *b;
    void *r = NULL;
    OK(weft_spawn(&first, square, IPTR(3))); /* the only entry queued here: pushed at once */
    OK(weft_spawn(&a, rendezvous, IPTR(10))); /* every other worker busy: these two are kept */
    OK(weft_spawn(&b, rendezvous, IPTR(11)));
    atomic_store(&blockers_release, 1);
    if (rendezvous_how == 0) OK(weft_yield());
    OK(weft_join(rendezvous_how ? a : b, &r));
    cr_assert_eq(PINT(r), rendezvous_how ? 10 : 11);
    OK(weft_join(rendezvous_how ? b : a, &r));
    cr_assert_eq(PINT(r), rendezvous_how ? 11 : 10);
    OK(weft_join(first, &r));
    cr_assert_eq(PINT(r), 9);
    for (int i = 0; i < others; i++) OK(weft_join(blockers[i], NULL));
    if (atomic_load(&gave_up_round) >= 0) break;
    if (weft__probe_count(WEFT__PROBE_PRIV_SHARED) == shared) {
      atomic_store(&rendezvous_unshared_round, round);
      break;
    }
  }
  return NULL;
}

Test(scheduler, private_siblings_that_must_meet_do) {
  for (rendezvous_workers = 2; rendezvous_workers <= 4; rendezvous_workers += 2)
    for (rendezvous_how = 0; rendezvous_how < 2; rendezvous_how++)
      run_given_runtime(rendezvous_workers, rendezvous_main);
  cr_assert_lt(atomic_load(&gave_up_round), 0,
               "gave up after 30 s (round %d; 1000: a sibling kept private never ran elsewhere; "
               "2000: the other workers never parked)",
               atomic_load(&gave_up_round));
  cr_assert_lt(atomic_load(&rendezvous_unshared_round), 0,
               "round %d: no private spawn was shared, so the test missed its path",
               atomic_load(&rendezvous_unshared_round));
}

/* Batch steals (#13, session 16: lib/worker.c's steal_more): a thief that comes back quickly
 * for more takes several of a victim's oldest entries in one steal round, and every task still
 * runs once with its own result. Each round waits until the other worker has parked, spawns
 * STORM_TASKS short tasks, pushes the ones kept private onto the deque (weft__priv_share, what
 * a thief's ask gets), then blocks its own worker until all have run: the thief must run every
 * one, and its second steal onwards comes right after a short task. A round counts if a steal
 * took a batch (a thief that kept pace with the spawns one at a time takes none); 50 rounds at
 * most, each with a 30 s give-up. */
enum { STORM_TASKS = 16, STORM_ROUNDS = 50 };
static atomic_int storm_batched_round = -1, storm_ran;

static void *storm_child(void *arg) {
  atomic_fetch_add(&storm_ran, 1);
  return arg;
}

static void *storm_main(void *arg) {
  weft_runtime_t *rt = arg;
  for (int round = 0; round < STORM_ROUNDS; round++) {
    wait_until_others_idle(rt, 2);
    if (atomic_load(&gave_up_round) >= 0) return NULL;
    atomic_store(&storm_ran, 0);
    long batches = weft__probe_count(WEFT__PROBE_STEAL_BATCH);
    weft_task_t *t[STORM_TASKS];
    for (int i = 0; i < STORM_TASKS; i++) OK(weft_spawn(&t[i], storm_child, IPTR(i)));
    weft__priv_share(weft__worker_self());
    uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
    while (atomic_load(&storm_ran) < STORM_TASKS && !give_up_now(give_up, round))
      sched_yield(); /* our worker stays busy: the thief runs them all */
    for (int i = 0; i < STORM_TASKS; i++) {
      void *r = NULL;
      OK(weft_join(t[i], &r));
      cr_assert_eq(PINT(r), i);
    }
    if (atomic_load(&gave_up_round) >= 0) return NULL;
    if (weft__probe_count(WEFT__PROBE_STEAL_BATCH) > batches) {
      atomic_store(&storm_batched_round, round);
      return NULL;
    }
  }
  return NULL;
}

Test(scheduler, a_thief_takes_a_spawn_storm_in_batches) {
  run_given_runtime(2, storm_main);
  cr_assert_lt(atomic_load(&gave_up_round), 0,
               "gave up after 30 s (round %d; 2000: the other worker never parked)",
               atomic_load(&gave_up_round));
  cr_assert_geq(atomic_load(&storm_batched_round), 0,
                "in %d rounds of %d spawns beside a parked worker, no steal took a batch",
                STORM_ROUNDS, STORM_TASKS);
}

/* Fan-out while the other workers are idle (review, session 10): every child must start while
 * the parent computes without suspending — a spawn made while a worker counts as idle (parked
 * or spinning, or not yet started: session 11) is not kept. Each round waits until the other
 * workers have parked; the parent's "computation" waits for all three to start (30 s
 * give-up). */
static atomic_int fanned_started, fanned_seen_at_give_up;

static void *fanned_child(void *arg) {
  atomic_fetch_add(&fanned_started, 1);
  return arg;
}

static void *fanout_main(void *arg) {
  weft_runtime_t *rt = arg;
  for (int round = 0; round < 50; round++) {
    /* Round 0 covers the start too where the worker threads start late (they count as
     * spinning before they run: CI's failure, session 11); here they have usually started. */
    if (round) wait_until_others_idle(rt, 4);
    atomic_store(&fanned_started, 0);
    weft_task_t *t[3];
    for (long i = 0; i < 3; i++) OK(weft_spawn(&t[i], fanned_child, IPTR(i)));
    uint64_t give_up = weft_now_ns() + 30ull * 1000000000u;
    while (atomic_load(&fanned_started) < 3) { /* no weft wait: the parent's own work */
      if (give_up_now(give_up, round)) {
        atomic_store(&fanned_seen_at_give_up, atomic_load(&fanned_started));
        break;
      }
      sched_yield();
    }
    for (long i = 0; i < 3; i++) {
      void *r = NULL;
      OK(weft_join(t[i], &r));
      cr_assert_eq(PINT(r), i);
    }
    if (atomic_load(&gave_up_round) >= 0) break;
  }
  return NULL;
}

Test(scheduler, children_spawned_while_workers_idle_run_beside_their_computing_parent) {
  run_given_runtime(4, fanout_main);
  cr_assert_lt(atomic_load(&gave_up_round), 0, "round %d (2000: the other workers never "
               "parked): %d of 3 children started while the parent computed (30 s)",
               atomic_load(&gave_up_round), atomic_load(&fanned_seen_at_give_up));
}

/* A task woken into the next slot is not held up by a chain of spawns that keeps the worker
 * busy (review, session 10: kept spawns were taken before the slot, without its burst bound).
 * One worker: nobody else can run either. */
enum { CHAIN_LIMIT = 200000, CHAIN_WAKE_AT = 10 };
static weft_future_t *chain_future;
static atomic_long chain_steps, chain_resumed_at;
static atomic_int chain_stop;

static void *chain_step(void *arg) {
  long k = atomic_fetch_add(&chain_steps, 1) + 1;
  if (k == CHAIN_WAKE_AT) OK(weft_future_resolve(chain_future, NULL));
  if (!atomic_load(&chain_stop) && k < CHAIN_LIMIT) OK(weft_spawn(NULL, chain_step, NULL));
  return arg;
}

static void *chain_main(void *arg) {
  (void)arg;
  weft_task_t *filler;
  OK(weft_spawn(&filler, spin_child_value, IPTR(1))); /* pushed: the worker had nothing */
  OK(weft_spawn(NULL, chain_step, NULL));              /* kept */
  OK(weft_future_await(chain_future, NULL)); /* woken into the next slot at step 10 */
  atomic_store(&chain_resumed_at, atomic_load(&chain_steps));
  atomic_store(&chain_stop, 1);
  OK(weft_join(filler, NULL));
  return NULL;
}

Test(scheduler, a_woken_task_is_not_held_up_by_a_chain_of_spawns) {
  atomic_store(&chain_steps, 0);
  atomic_store(&chain_stop, 0);
  OK(weft_future_create(&chain_future));
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  OK(weft_run(&o, chain_main, NULL, NULL));
  /* NEXT_BURST and the fairness tick bound the wait to a few steps; the chain runs to 200 000 */
  cr_assert_lt(atomic_load(&chain_resumed_at), 1000, "resumed after step %ld",
               atomic_load(&chain_resumed_at));
  weft_future_destroy(chain_future);
}

static void *priv_join_main(void *arg) {
  weft_runtime_t *rt = arg;
  weft_task_t *first, *second;
  void *r = NULL;
  long hits = weft__probe_count(WEFT__PROBE_JOIN_INLINE);
  OK(weft_spawn(&first, square, IPTR(4))); /* pushed: the worker had nothing queued */
  OK(weft_spawn(&second, square, IPTR(5))); /* private */
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(rt, 0, &m));
  cr_assert_eq(m.deque_depth, 2, "the private spawn counts as queued (%llu)",
               (unsigned long long)m.deque_depth);
  OK(weft_join(second, &r));
  cr_assert_eq(PINT(r), 25);
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits + 1,
               "the private child ran inline");
  OK(weft_join(first, &r));
  cr_assert_eq(PINT(r), 16);
  cr_assert_eq(weft__probe_count(WEFT__PROBE_JOIN_INLINE), hits + 2, "then the deque's, inline");
  return NULL;
}

Test(scheduler, join_of_a_private_spawn_runs_it_inline) { run_given_runtime(1, priv_join_main); }

/* ---- yields ---- */

static atomic_long yield_progress[1000];
static void *yield_loop(void *arg) {
  long i = PINT(arg);
  for (int k = 0; k < 100; k++) {
    atomic_fetch_add(&yield_progress[i], 1);
    OK(weft_yield());
  }
  return NULL;
}
static void *yield_main(void *arg) {
  (void)arg;
  weft_task_t *t[1000];
  for (long i = 0; i < 1000; i++) OK(weft_spawn(&t[i], yield_loop, IPTR(i)));
  OK(weft_gather(t, 1000, NULL));
  for (long i = 0; i < 1000; i++) weft_task_release(t[i]);
  return NULL;
}
Test(scheduler, a_thousand_yielding_tasks_all_progress) {
  for (int w = 1; w <= 4; w *= 2) {
    for (int i = 0; i < 1000; i++) atomic_store(&yield_progress[i], 0);
    run_on(w, yield_main, NULL);
    for (int i = 0; i < 1000; i++) cr_assert_eq(atomic_load(&yield_progress[i]), 100);
  }
}

/* A yielder must not starve a task that another thread is waiting for. */
static atomic_int stop_spinning_yielder;
static void *yield_forever(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_spinning_yielder)) weft_yield();
  return NULL;
}
static void *starve_main(void *arg) {
  (void)arg;
  weft_task_t *y;
  atomic_store(&stop_spinning_yielder, 0);
  OK(weft_spawn(&y, yield_forever, NULL));
  weft_task_t *t;
  OK(weft_spawn(&t, square, IPTR(6)));
  void *r;
  OK(weft_await_timeout(t, 10ull * 1000000000u, &r)); /* must not time out */
  atomic_store(&stop_spinning_yielder, 1);
  OK(weft_join(y, NULL));
  weft_task_release(t);
  return r;
}
Test(scheduler, yielders_do_not_starve_others) {
  cr_assert_eq(PINT(run_on(1, starve_main, NULL)), 36);
}

/* ---- #13: a yield with nothing else ready here goes on at once, but not past ready work ---- */

/* One worker; one task yields until three others have run: one it spawned (its deque), one
 * woken by a timer (fired at the loop's fairness tick), one that a plain thread injects. A
 * yield that finds no other yielded task goes on without a switch (lib/worker.c,
 * direct_yielded): it must still look at the deque first and leave the fairness tick to the
 * loop, or the yielder spins forever (the test's timeout). */
static atomic_int lone_ran, lone_started;
static void *lone_bump(void *arg) {
  (void)arg;
  atomic_fetch_add(&lone_ran, 1);
  return NULL;
}
static void *lone_sleep_bump(void *arg) {
  OK(weft_sleep_ms(1));
  return lone_bump(arg);
}
static void *lone_yielder(void *arg) {
  (void)arg;
  weft_task_t *kid[2];
  OK(weft_spawn(&kid[0], lone_bump, NULL));
  OK(weft_spawn(&kid[1], lone_sleep_bump, NULL));
  atomic_store(&lone_started, 1);
  long yields = 0;
  while (atomic_load(&lone_ran) < 3) {
    OK(weft_yield());
    yields++;
  }
  OK(weft_gather(kid, 2, NULL));
  for (int i = 0; i < 2; i++) weft_task_release(kid[i]);
  return IPTR(yields);
}
Test(scheduler, a_lone_yielder_lets_spawned_timed_and_injected_tasks_run, .timeout = 60) {
  weft_runtime_t *rt = test_runtime(1);
  atomic_store(&lone_ran, 0);
  atomic_store(&lone_started, 0);
  weft_task_t *y, *inj;
  OK(weft_runtime_spawn(rt, &y, lone_yielder, NULL));
  while (!atomic_load(&lone_started)) sched_yield(); /* the yielder runs: inject behind it */
  OK(weft_runtime_spawn(rt, &inj, lone_bump, NULL));
  void *yields;
  OK(weft_join(y, &yields));
  OK(weft_join(inj, NULL));
  cr_assert_eq(atomic_load(&lone_ran), 3);
  cr_assert_gt(PINT(yields), 0);
  OK(weft_runtime_destroy(rt));
}

/* ---- #13: yielded tasks keep their FIFO order through the owner's batches ---- */

/* YIELD_RING_TASKS tasks, injected from this thread, yield in turn on one worker: first until
 * all of them are queued (the gate), then YIELD_RING_ROUNDS times, logging their index before
 * each yield. The yield queue is FIFO, taken in batches (lib/worker.c, take_own_yielded), so
 * the log repeats with period YIELD_RING_TASKS: a batch taken newest-first or out of order
 * breaks it. More tasks than one batch (WEFT__YRING = 32), so batches and the queue interleave. */
enum { YIELD_RING_TASKS = 77, YIELD_RING_ROUNDS = 6 };
static atomic_int ring_gate, ring_pos;
static int ring_log[YIELD_RING_TASKS * YIELD_RING_ROUNDS];
static void *ring_yielder(void *arg) {
  while (!atomic_load(&ring_gate)) weft_yield();
  for (int r = 0; r < YIELD_RING_ROUNDS; r++) {
    ring_log[atomic_fetch_add(&ring_pos, 1)] = (int)(intptr_t)arg;
    weft_yield();
  }
  return NULL;
}
Test(scheduler, yielders_keep_fifo_order_through_batches) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t[YIELD_RING_TASKS];
  atomic_store(&ring_gate, 0);
  atomic_store(&ring_pos, 0);
  for (int i = 0; i < YIELD_RING_TASKS; i++) OK(weft_runtime_spawn(rt, &t[i], ring_yielder, IPTR(i)));
  /* Open the gate once every task has started (each injected entry was taken). */
  weft_metrics_t m = WEFT_METRICS_INIT;
  do {
    OK(weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m));
    sched_yield();
  } while (m.injected_taken < YIELD_RING_TASKS);
  atomic_store(&ring_gate, 1);
  for (int i = 0; i < YIELD_RING_TASKS; i++) OK(weft_join(t[i], NULL));
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(atomic_load(&ring_pos), YIELD_RING_TASKS * YIELD_RING_ROUNDS);
  for (int i = YIELD_RING_TASKS; i < YIELD_RING_TASKS * YIELD_RING_ROUNDS; i++)
    cr_assert_eq(ring_log[i], ring_log[i - YIELD_RING_TASKS], "entry %d of the yield log", i);
}

/* ---- Spawn throttling (weft_options_t.spawn_throttle; lib/task.c, "Child first") ---- */

static weft_runtime_t *throttled_runtime(int workers, uint32_t throttle) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = workers;
  o.spawn_throttle = throttle;
  return runtime_with(&o);
}

static atomic_long throttled_started;
static weft_waitgroup_t *throttled_done; /* NULL: no one counts */
static void *throttled_child(void *arg) {
  atomic_fetch_add(&throttled_started, 1);
  if (throttled_done) OK(weft_waitgroup_done(throttled_done));
  return arg;
}

enum { STORM_THROTTLE = 64 };
#define STORM_SPAWNS SCALE(20000L, 2000L) /* either far above what the throttle lets queue */

/* One worker: nothing runs a child but the spawner's own worker, so the backlog after the
 * i-th spawn is exactly i - started. */
static void *throttled_storm(void *arg) {
  long most_queued = 0;
  weft_task_t **t = malloc(sizeof *t * STORM_SPAWNS);
  cr_assert(t);
  OK(weft_waitgroup_create(&throttled_done));
  OK(weft_waitgroup_add(throttled_done, STORM_SPAWNS));
  for (long i = 0; i < STORM_SPAWNS; i++) {
    OK(weft_spawn(PINT(arg) ? NULL : &t[i], throttled_child, IPTR(i)));
    long queued = i + 1 - atomic_load(&throttled_started);
    if (queued > most_queued) most_queued = queued;
  }
  if (!PINT(arg)) {
    long sum = 0;
    for (long i = 0; i < STORM_SPAWNS; i++) {
      void *r;
      OK(weft_join(t[i], &r));
      sum += PINT(r);
    }
    cr_assert_eq(sum, (long)STORM_SPAWNS * (STORM_SPAWNS - 1) / 2);
  }
  OK(weft_waitgroup_wait(throttled_done, UINT64_MAX)); /* the detached ones too */
  weft_waitgroup_destroy(throttled_done);
  throttled_done = NULL;
  free(t);
  return IPTR(most_queued);
}

static long storm_backlog(uint32_t throttle, bool detached) {
  atomic_store(&throttled_started, 0);
  weft_runtime_t *rt = throttled_runtime(1, throttle);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, throttled_storm, IPTR(detached)));
  void *most;
  OK(weft_join(t, &most));
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m));
  if (throttle) cr_assert_gt(m.tasks_run_first, 0, "no spawn ran its child first");
  else cr_assert_eq(m.tasks_run_first, 0);
  cr_assert_leq(m.tasks_run_first, STORM_SPAWNS);
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(atomic_load(&throttled_started), STORM_SPAWNS, "every child ran once");
  return PINT(most);
}

/* The deque holds `throttle` entries, the private run at most 64 more (WEFT__PRIV_CAP), before
 * a spawn runs its child first; without the option nothing ran before the spawner paused. */
Test(throttle, a_spawn_storm_keeps_its_backlog_bounded) {
  for (int detached = 0; detached < 2; detached++) {
    long most = storm_backlog(STORM_THROTTLE, detached);
    cr_assert_leq(most, 2 * STORM_THROTTLE + 64 + 2, "%ld children were queued at once (detached %d)", most, detached);
  }
}

Test(throttle, is_off_by_default_so_a_spawn_never_runs_its_child_first) {
  cr_assert_eq(storm_backlog(0, false), STORM_SPAWNS);
}

/* A child run first that waits for its spawner (a future the spawner resolves after its last
 * spawn): the spawner is queued, not under the child's frames, so it goes on. */
static weft_future_t *gate;
static void *gated_child(void *arg) {
  void *v;
  OK(weft_future_await(gate, &v));
  return IPTR(PINT(arg) + PINT(v));
}
static void *gated_main(void *arg) {
  (void)arg;
  enum { N = 1000 };
  weft_task_t *t[N];
  OK(weft_future_create(&gate));
  for (long i = 0; i < N; i++) OK(weft_spawn(&t[i], gated_child, IPTR(i)));
  OK(weft_future_resolve(gate, IPTR(1)));
  long sum = 0;
  for (long i = 0; i < N; i++) {
    void *r;
    OK(weft_join(t[i], &r));
    sum += PINT(r);
  }
  weft_future_destroy(gate);
  return IPTR(sum);
}
/* .timeout: ~30 s under gcc TSan on one shared CPU (review, session 35) */
Test(throttle, a_child_run_first_may_wait_for_its_spawner, .timeout = 180) {
  for (uint32_t throttle = 1; throttle <= 16; throttle *= 4) {
    weft_runtime_t *rt = throttled_runtime(1, throttle);
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, gated_main, NULL));
    void *r;
    OK(weft_join(t, &r));
    OK(weft_runtime_destroy(rt));
    cr_assert_eq(PINT(r), 1000L * 999 / 2 + 1000);
  }
}

/* A child run first that cancels its spawner: the spawn still returns 0 (the child exists),
 * and the cancel waits for the spawner's next suspension point. */
static void *cancel_spawner(void *arg) { return IPTR(weft_cancel(arg)); }
static void *cancelled_spawner(void *arg) {
  (void)arg;
  weft_task_t *self = weft_current();
  enum { N = 300 }; /* the private run (64) and the deque (4) fill well before */
  weft_task_t *t[N];
  int n = 0;
  bool ran_first = false;
  while (n < N && !ran_first) { /* every child cancels us; none runs before we pause but one */
    int err = weft_spawn(&t[n], cancel_spawner, self);
    cr_assert_eq(err, 0, "the spawn that ran its child first returned %d", err);
    ran_first = weft_task_done(t[n++]);
  }
  cr_assert(ran_first, "throttle 4: no child of %d ran before its spawn returned", N);
  cr_assert_eq(weft_yield(), WEFT_ECANCELED);
  for (int i = 0; i < n; i++) {
    weft__await_shielded(t[i]);
    weft_task_release(t[i]);
  }
  return NULL;
}
Test(throttle, a_spawner_cancelled_by_its_child_run_first_sees_it_at_its_next_suspension) {
  weft_runtime_t *rt = throttled_runtime(1, 4);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, cancelled_spawner, NULL));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED);
  OK(weft_runtime_destroy(rt));
}

/* weft_runtime_spawn and weft_group_spawn (which spawns under its lock) never run a child
 * first, however deep the deque. */
static void *unthrottled_main(void *arg) {
  weft_runtime_t *rt = arg;
  enum { N = 300 };
  weft_group_t *g;
  OK(weft_group_create(&g, NULL));
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, NULL, throttled_child, NULL));
  for (int i = 0; i < N; i++) OK(weft_group_spawn(g, throttled_child, NULL));
  cr_assert_eq(atomic_load(&throttled_started), 0, "a child ran before its spawner paused");
  OK(weft_group_wait(g));
  weft_group_destroy(g);
  return NULL;
}
Test(throttle, never_in_runtime_or_group_spawns) {
  atomic_store(&throttled_started, 0);
  weft_runtime_t *rt = throttled_runtime(1, 1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, unthrottled_main, rt));
  OK(weft_join(t, NULL));
  OK(weft_runtime_destroy(rt));
}

/* A chain — each task spawns the next and returns — behind a deque kept deep by fillers: every
 * link finds the deque deep, and each child-first spawn holds its spawner's stack until the
 * worker comes back to it. The cap on held spawners keeps the stacks to a handful; without it
 * every link's stack was held until the chain's end (review, session 21: 10^5 links, 420 MB). */
enum { CHAIN_THROTTLE = 8 };
static weft_runtime_t *chain_rt;
static uint64_t chain_stacks;
static void *chain_link(void *arg) {
  long left = PINT(arg);
  if (left > 0) {
    OK(weft_spawn(NULL, chain_link, IPTR(left - 1)));
    return NULL;
  }
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(chain_rt, WEFT_METRICS_ALL, &m));
  chain_stacks = m.stacks_mapped; /* at the chain's end: every held stack still held */
  OK(weft_future_resolve(gate, NULL));
  return NULL;
}
static void *chain_start(void *arg) {
  OK(weft_future_create(&gate));
  for (int i = 0; i < 2 * CHAIN_THROTTLE; i++) OK(weft_spawn(NULL, throttled_child, NULL));
  OK(weft_spawn(NULL, chain_link, arg));
  OK(weft_future_await(gate, NULL)); /* the chain's end */
  weft_future_destroy(gate);
  return NULL;
}
Test(throttle, a_chain_of_spawns_holds_a_bounded_number_of_stacks, .timeout = 120) {
  long links = SCALE(20000, 2000);
  chain_rt = throttled_runtime(1, CHAIN_THROTTLE);
  atomic_store(&throttled_started, 0);
  weft_task_t *t;
  OK(weft_runtime_spawn(chain_rt, &t, chain_start, IPTR(links)));
  OK(weft_join(t, NULL));
  OK(weft_runtime_destroy(chain_rt));
  cr_assert_gt(chain_stacks, 0, "the chain's last link never ran");
  cr_assert_leq(chain_stacks, 4 * CHAIN_THROTTLE + 64, "%llu stacks mapped for a chain of %ld",
                (unsigned long long)chain_stacks, links);
}

/* More workers than cores, a throttle of 2: spawners requeued by their children are stolen and
 * resumed elsewhere while their trees grow; every node counted once. */
typedef struct {
  int depth;
  weft_waitgroup_t *wg;
  atomic_long *nodes;
} tree_t;
static void *tree_node(void *arg) {
  tree_t *n = arg;
  atomic_fetch_add(n->nodes, 1);
  if (n->depth > 0) {
    tree_t *kids = malloc(sizeof *kids * 6);
    cr_assert(kids);
    weft_waitgroup_t *wg;
    OK(weft_waitgroup_create(&wg));
    OK(weft_waitgroup_add(wg, 6));
    for (int i = 0; i < 6; i++) {
      kids[i] = (tree_t){n->depth - 1, wg, n->nodes};
      OK(weft_spawn(NULL, tree_node, &kids[i]));
    }
    OK(weft_waitgroup_wait(wg, UINT64_MAX));
    weft_waitgroup_destroy(wg);
    free(kids);
  }
  if (n->wg) OK(weft_waitgroup_done(n->wg));
  return NULL;
}
Test(throttle, trees_of_spawns_are_whole_with_oversubscribed_workers, .timeout = 300) {
  int depth = SCALE(6, 4); /* 6^6 + ... nodes: 55 987 (sanitized: 1 555) */
  long want = 0;
  for (int d = 0, k = 1; d <= depth; d++, k *= 6) want += k;
  for (int round = 0; round < SCALE(5, 2); round++) {
    atomic_long nodes = 0;
    weft_runtime_t *rt = throttled_runtime(4, 2);
    tree_t root = {depth, NULL, &nodes};
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, tree_node, &root));
    OK(weft_join(t, NULL));
    OK(weft_runtime_destroy(rt));
    cr_assert_eq(atomic_load(&nodes), want);
  }
}
