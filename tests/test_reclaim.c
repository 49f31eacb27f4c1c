/* Grown-out deque arrays are freed while the runtime runs (#13, lib/deque.c): bursts of spawns
 * grow the workers' deques many times while thieves steal (more workers than this VM's two
 * cores), the metrics' deque_arrays_retired/freed pair shows every retired array freed before
 * the runtime is destroyed, and deque_retired_bytes stays below the live arrays' bytes at every
 * sample. ASan (a thief reading a freed array) and TSan (a free racing a thief's read) builds
 * run the same workload. */
#include "support.h"

#include <stdatomic.h>

enum {
  WORKERS = 4,   /* oversubscribed: thieves get preempted inside their steal rounds */
  ROUNDS = 5,    /* each round's bursts are twice the last's: every round grows some deque */
  FIRST = 2048,  /* leaves per burst in round 0 (the deques start at 1024 entries) */
};

typedef struct {
  weft_runtime_t *rt;
  long leaves;
  _Atomic uint64_t samples; /* bound checks made */
} burst_t;

static void *leaf(void *arg) { return arg; }

/* The bound at one sample: per deque, its retired arrays add up to less than its live one
 * (each grow doubles), so the sums do too; and the live arrays fit the queued work. */
static void check_bound(burst_t *b) {
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(b->rt, WEFT_METRICS_ALL, &m));
  uint64_t live = m.deque_bytes - m.deque_retired_bytes;
  cr_assert(m.deque_retired_bytes < live, "retired %llu bytes, live %llu",
            (unsigned long long)m.deque_retired_bytes, (unsigned long long)live);
  /* two queues per worker, each at most 4x the most leaves it held (two bursts at once) */
  uint64_t most = 2ull * WORKERS * (4ull * (uint64_t)(FIRST << (ROUNDS - 1)) * 8 + 64);
  cr_assert(live <= most, "live %llu bytes > %llu", (unsigned long long)live,
            (unsigned long long)most);
  cr_assert(m.deque_arrays_freed <= m.deque_arrays_retired);
  atomic_fetch_add_explicit(&b->samples, 1, memory_order_relaxed); /* relaxed: a count */
}

/* Spawns b->leaves leaves onto this worker's deque (it grows while thieves take from its
 * top), sampling the bound as it goes, then gathers them and checks every result. */
static void *burst(void *arg) {
  burst_t *b = arg;
  weft_task_t **t = malloc(sizeof *t * (size_t)b->leaves);
  void **r = malloc(sizeof *r * (size_t)b->leaves);
  cr_assert(t && r);
  for (long i = 0; i < b->leaves; i++) {
    OK(weft_spawn(&t[i], leaf, IPTR(i)));
    if (i % 1024 == 1023) check_bound(b);
  }
  OK(weft_gather(t, (size_t)b->leaves, r));
  for (long i = 0; i < b->leaves; i++) {
    cr_assert_eq(PINT(r[i]), i);
    weft_task_release(t[i]);
  }
  check_bound(b);
  free(t);
  free(r);
  return NULL;
}

/* Round after round, WORKERS bursts at once, each round's twice the size of the last. */
static void *rounds(void *arg) {
  burst_t *base = arg;
  burst_t b[WORKERS];
  weft_task_t *t[WORKERS];
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < WORKERS; i++) {
      b[i].rt = base->rt;
      b[i].leaves = (long)FIRST << r;
      atomic_init(&b[i].samples, 0);
      OK(weft_spawn(&t[i], burst, &b[i]));
    }
    OK(weft_gather(t, WORKERS, NULL));
    for (int i = 0; i < WORKERS; i++) {
      weft_task_release(t[i]);
      /* relaxed: the gather ordered the burst's end before us */
      atomic_fetch_add_explicit(&base->samples,
                                atomic_load_explicit(&b[i].samples, memory_order_relaxed),
                                memory_order_relaxed);
    }
  }
  return NULL;
}

/* One runtime through all the rounds, then idle until every retired array is freed. */
static void grow_and_reclaim(void) {
  weft_runtime_t *rt = test_runtime(WORKERS);
  burst_t base = {.rt = rt, .leaves = 0};
  atomic_init(&base.samples, 0);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, rounds, &base));
  OK(weft_join(t, NULL)); /* join releases the handle */
  cr_assert(atomic_load(&base.samples) >= (uint64_t)WORKERS * ROUNDS * 3);
  /* The workload is over; idle workers reclaim when they park and retry while a steal round
   * holds arrays back (lib/worker.c's park): the event is freed catching up with retired. */
  weft_metrics_t m = WEFT_METRICS_INIT;
  uint64_t until = weft_now_ns() + 30000000000ull; /* a bound on failure, not a wait */
  do OK(weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m));
  while ((m.deque_arrays_freed < m.deque_arrays_retired || m.deque_retired_bytes) &&
         weft_now_ns() < until);
  /* The largest burst (FIRST << (ROUNDS-1) leaves) grew some deque from 1024 entries ROUNDS
   * times at least; all of it freed with the runtime still running. */
  cr_assert(m.deque_arrays_retired >= ROUNDS, "retired %llu",
            (unsigned long long)m.deque_arrays_retired);
  cr_assert_eq(m.deque_arrays_freed, m.deque_arrays_retired, "freed %llu of %llu",
               (unsigned long long)m.deque_arrays_freed,
               (unsigned long long)m.deque_arrays_retired);
  cr_assert_eq(m.deque_retired_bytes, 0, "%llu bytes retired, not freed",
               (unsigned long long)m.deque_retired_bytes);
  cr_assert(m.tasks_stolen > 0, "no thief ran: the test did not test reclamation under steals");
  OK(weft_runtime_destroy(rt));
}

/* CYCLES fresh runtimes, so that the deques grow from their first size again each time. A
 * planted free without a grace period (built with -DEP_GRACE=0) is reported by TSan in 1 of 3
 * runs of one cycle and 3 of 4 runs of four (a thief's read is unordered with the free only when
 * its CAS on top failed or is still to come: a successful steal's CAS is acquired by the owner's
 * next push); the relacy model (tests/model/reclaim_model.cpp) catches it every time. */
enum { CYCLES = 4 };
Test(reclaim, grown_arrays_are_freed_while_running_and_retired_bytes_stay_below_live) {
  for (int c = 0; c < CYCLES; c++) grow_and_reclaim();
}

/* One worker: no thief can hold an array, so each grow frees the array it grew out of at once
 * (its reclaim advances the epoch twice); read from the only worker, nothing moves meanwhile. */
static void *grow_alone(void *arg) {
  weft_runtime_t *rt = arg;
  enum { N = 9000 }; /* 1024 → 2048 → 4096 → 8192 → 16384: four grows */
  weft_task_t **t = malloc(sizeof *t * N);
  cr_assert(t);
  for (long i = 0; i < N; i++) OK(weft_spawn(&t[i], leaf, IPTR(i)));
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m));
  cr_assert_eq(m.deque_arrays_retired, 4);
  cr_assert_eq(m.deque_arrays_freed, 4);
  cr_assert_eq(m.deque_retired_bytes, 0);
  cr_assert(m.deque_bytes >= 16384 * sizeof(void *));
  OK(weft_gather(t, N, NULL));
  for (long i = 0; i < N; i++) weft_task_release(t[i]);
  free(t);
  return NULL;
}

Test(reclaim, a_lone_worker_frees_each_array_at_its_grow) { run_given_runtime(1, grow_alone); }
