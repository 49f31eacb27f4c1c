/* Memory goes back after a burst: stacks and descriptors beyond a working set are returned to
 * the system by idle workers (lib/stack.c, lib/task.c), so a runtime's resident set falls
 * back to about what it was before the burst while the runtime lives on. */
#include "support.h"
#include "probes.h"

#include "../lib/internal.h" /* test-only probes (weft__probe_count) */

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { BURST = 100000, SLEEP_MS = 500, SLACK_MIB = 32, WAIT_S = 15 };

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  cr_assert_not_null(f);
  cr_assert_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
  fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *sleeper(void *arg) {
  char touched[512]; /* a frame's worth of stack, as a real task would use */
  touched[0] = (char)(intptr_t)arg;
  __asm__ __volatile__("" : : "r"(touched) : "memory");
  weft_sleep_ms(SLEEP_MS);
  return arg;
}

static void *burst(void *arg) {
  (void)arg;
  weft_task_t **tasks = malloc(sizeof *tasks * BURST);
  for (int i = 0; i < BURST; i++) OK(weft_spawn(&tasks[i], sleeper, (void *)(intptr_t)i));
  OK(weft_gather(tasks, BURST, NULL));
  for (int i = 0; i < BURST; i++) weft_task_release(tasks[i]);
  free(tasks);
  return NULL;
}

static void *nothing(void *arg) { return arg; }

Test(memory, rss_returns_within_32_mib_after_a_burst_of_sleepers, .timeout = 120) {
#if TEST_SANITIZED
  cr_skip_test("RSS means nothing under a sanitizer (shadow memory, quarantine)");
#else
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, nothing, NULL)); /* the runtime has run a task: warm */
  OK(weft_join(t, NULL));
  long before = rss_kib();
  OK(weft_runtime_spawn(rt, &t, burst, NULL));
  OK(weft_join(t, NULL));
  long peak = rss_kib();
  uint64_t ended = weft_now_ns();
  long now = peak;
  while ((now = rss_kib()) > before + SLACK_MIB * 1024 &&
         weft_now_ns() - ended < (uint64_t)WAIT_S * 1000000000u)
    usleep(100 * 1000);
  double took = (double)(weft_now_ns() - ended) / 1e9;
  fprintf(stderr, "memory: RSS %ld KiB before the burst, %ld KiB when it ended, %ld KiB %.1f s later\n",
          before, peak, now, took);
  cr_assert_leq(now, before + SLACK_MIB * 1024,
                "RSS %ld KiB, %ld KiB before the burst: not returned within %d s", now, before,
                WAIT_S);
  sleep(2); /* where it settles, for the record (the descriptor pass runs once a second) */
  fprintf(stderr, "memory: RSS %ld KiB 2 s after that\n", rss_kib());
  OK(weft_runtime_destroy(rt));
#endif
}

/* Every build (sanitizers included): tasks that run on stacks and descriptors the scavenger
 * has given back behave like any others (the pages read as zeros; nothing is reused twice). */
enum { REUSE_BURST = 2000 };

static void *stamp_stack(void *arg) {
  volatile char frame[2048]; /* dirties the stack's top pages */
  for (size_t i = 0; i < sizeof frame; i += 64) frame[i] = (char)(intptr_t)arg;
  weft_sleep_ms(1);
  long sum = 0;
  for (size_t i = 0; i < sizeof frame; i += 64) sum += frame[i];
  return (void *)(intptr_t)sum;
}

static void *reuse_burst(void *arg) {
  (void)arg;
  weft_task_t **tasks = malloc(sizeof *tasks * REUSE_BURST);
  for (int i = 0; i < REUSE_BURST; i++) OK(weft_spawn(&tasks[i], stamp_stack, (void *)(intptr_t)(i % 100)));
  for (int i = 0; i < REUSE_BURST; i++) {
    void *r;
    OK(weft_join(tasks[i], &r));
    cr_assert_eq((intptr_t)r, (intptr_t)(i % 100) * 32, "task %d saw a changed stack", i);
  }
  free(tasks);
  return NULL;
}

Test(memory, tasks_run_correctly_on_stacks_and_descriptors_given_back, .timeout = 120) {
  weft_runtime_t *rt = test_runtime(2);
  for (int round = 0; round < 3; round++) {
    long trimmed = weft__probe_count(WEFT__PROBE_STACK_TRIMMED);
    long freed = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED);
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, reuse_burst, NULL));
    OK(weft_join(t, NULL));
    /* Idle until the scavengers have given back some of what the burst left (≥ 1 s old), so
     * that the next round runs on trimmed stacks and on descriptors from a discarded slab. */
    idle_until_probe_passes(WEFT__PROBE_STACK_TRIMMED, trimmed, "gave a stack back");
    idle_until_probe_passes(WEFT__PROBE_TASK_SLAB_FREED, freed, "gave a descriptor slab back");
  }
  weft_stats_t st = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &st));
  cr_assert_eq(st.tasks_unrun, 0);
  OK(weft_runtime_destroy(rt));
}

/* Descriptors move between workers in batches (lib/task.c's "Batches"): a worker that frees
 * more than it keeps hands the older half of its list to the runtime, and a spawner with none
 * takes one back whole — or, from a thread that is not a worker, one descriptor of it. No
 * descriptor may then be handed out twice: every live task's handle is distinct and returns
 * its own value, through two rounds of batches, foreign spawns and a scavenger pass between
 * them. */
enum { BATCH_TASKS = 5000, FOREIGN_TASKS = 300 };

static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* Spawns n tasks (foreign: from this thread onto rt, else from the calling task), checks that
 * their handles are distinct while they are all held and that each returns its value. */
static void spawn_distinct(weft_runtime_t *rt, int n, bool foreign) {
  weft_task_t **tasks = malloc(sizeof *tasks * (size_t)n);
  uintptr_t *sorted = malloc(sizeof *sorted * (size_t)n);
  cr_assert(tasks && sorted);
  for (int i = 0; i < n; i++) {
    if (foreign)
      OK(weft_runtime_spawn(rt, &tasks[i], twice, (void *)(intptr_t)i));
    else
      OK(weft_spawn(&tasks[i], twice, (void *)(intptr_t)i));
    sorted[i] = (uintptr_t)tasks[i];
  }
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_ptr);
  for (int i = 1; i < n; i++)
    cr_assert_neq(sorted[i - 1], sorted[i], "one descriptor was handed out to two live tasks");
  for (int i = 0; i < n; i++) {
    void *r;
    OK(weft_join(tasks[i], &r));
    cr_assert_eq((intptr_t)r, (intptr_t)i * 2, "task %d returned %ld", i, (long)(intptr_t)r);
  }
  free(sorted);
  free(tasks);
}

static void *spawn_round(void *arg) {
  (void)arg;
  spawn_distinct(NULL, BATCH_TASKS, false);
  return NULL;
}

/* The scavenger may merge the batches back into the plain list at any pass (after a second of
 * quiet); so the takes are asserted over up to MAX_ROUNDS rounds, not per round. */
enum { MAX_ROUNDS = 20 };

Test(memory, descriptors_move_between_workers_in_whole_batches_and_are_never_handed_out_twice,
     .timeout = 300) {
  weft_runtime_t *rt = test_runtime(2);
  long put0 = weft__probe_count(WEFT__PROBE_TASK_BATCH_PUT);
  bool foreign_took = false, worker_took = false;
  /* At least two rounds, with an idle pause (a scavenger pass) between them; more until both
   * kinds of take were seen. */
  for (int round = 0; round < MAX_ROUNDS && (round < 2 || !(foreign_took && worker_took));
       round++) {
    weft_task_t *t;
    /* 5 000 joined and freed on one worker: its list passes 1 024 and spills half, often */
    OK(weft_runtime_spawn(rt, &t, spawn_round, NULL));
    OK(weft_join(t, NULL));
    long one0 = weft__probe_count(WEFT__PROBE_TASK_BATCH_ONE);
    spawn_distinct(rt, FOREIGN_TASKS, true); /* one at a time out of those batches */
    foreign_took |= weft__probe_count(WEFT__PROBE_TASK_BATCH_ONE) - one0 >= FOREIGN_TASKS / 2;
    long take0 = weft__probe_count(WEFT__PROBE_TASK_BATCH_TAKE);
    OK(weft_runtime_spawn(rt, &t, spawn_round, NULL)); /* a worker takes them back whole */
    OK(weft_join(t, NULL));
    worker_took |= weft__probe_count(WEFT__PROBE_TASK_BATCH_TAKE) > take0;
    if (round == 0) /* idle until the scavenger has merged the batches (after ≥ 1 s quiet) */
      idle_until_probe_passes(WEFT__PROBE_TASK_SCAVENGE, weft__probe_count(WEFT__PROBE_TASK_SCAVENGE),
                              "ran its descriptor scavenger");
  }
  cr_assert_geq(weft__probe_count(WEFT__PROBE_TASK_BATCH_PUT) - put0, 4,
                "the freeing worker's list never went to the runtime as a batch");
  cr_assert(foreign_took, "spawns from a plain thread never took their descriptors from a batch");
  cr_assert(worker_took, "a spawning worker never took a batch back whole");
  weft_stats_t st = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &st));
  cr_assert_eq(st.tasks_unrun, 0);
  OK(weft_runtime_destroy(rt));
}

/* The scavenger's age test against stacks stamped after its own clock read (another worker's
 * spill between that read and the pass): they are seconds young, not 2^64 ns old. Replayed on
 * one thread with the pool's own calls (review, session 20: every one of them was trimmed). */
Test(memory, stacks_spilled_after_the_scavengers_clock_read_are_not_trimmed) {
  struct weft__stack_pool *p;
  OK(weft__stack_pool_create(&p, 64 * 1024, 4096));
  weft__stack_cache_t scavenger = {0}, spiller = {0};
  enum { N = 80 }; /* past the cache's bound: the puts spill to the pool */
  weft__stack_t *s[N];
  for (int i = 0; i < N; i++) OK(weft__stack_get(p, &spiller, &s[i]));
  uint64_t clock_read = weft_now_ns(); /* the scavenger's, before the spill */
  for (int i = 0; i < N; i++) weft__stack_put(p, &spiller, s[i]);
  long trimmed = weft__probe_count(WEFT__PROBE_STACK_TRIMMED);
  weft__stack_scavenge(p, &scavenger, clock_read);
  cr_assert_eq(weft__probe_count(WEFT__PROBE_STACK_TRIMMED), trimmed,
               "stacks idle for no time were trimmed");
  weft__stack_pool_destroy(p); /* the caches' stacks are in its slabs */
}

/* Two workers find the pool empty and each maps a slab, outside the pool's lock (lib/stack.c,
 * slab_map). The first's map fails after the second filed its slab: the second's spare stacks
 * must serve the first (review, session 22: it answered ENOMEM with stacks in the pool).
 * Replayed with a pause point that holds the first inside its map until the second is done,
 * and the slab-map fault on the second map to be tried, the first's. */
static struct weft__stack_pool *race_pool;
static atomic_int race_in_map, race_second_done;

static void hold_the_first_map(void) {
  if (atomic_fetch_add(&race_in_map, 1) == 0)
    while (!atomic_load(&race_second_done)) sched_yield();
}

typedef struct {
  weft__stack_cache_t cache;
  weft__stack_t *stack;
  int err;
} race_taker_t;

static void *second_taker(void *arg) {
  race_taker_t *r = arg;
  while (!atomic_load(&race_in_map)) sched_yield(); /* the first is held in its map */
  r->err = weft__stack_get(race_pool, &r->cache, &r->stack);
  atomic_store(&race_second_done, 1);
  return NULL;
}

Test(memory, a_failed_slab_map_takes_the_stacks_another_worker_mapped_meanwhile) {
  /* Stacks of 2 pages and a guard page: 170 a 2 MiB slab with 4 KiB pages, of which the
   * second taker keeps 16 (a cache refill) and files the rest. With 64 KiB pages a slab holds
   * only 10: nothing would be spare. */
  size_t page = (size_t)sysconf(_SC_PAGESIZE), one = 3 * page;
  if ((2u << 20) / one <= 16) cr_skip_test("pages of %zu bytes: a slab has no spare stacks", page);
  OK(weft__stack_pool_create(&race_pool, 2 * page, page));
  race_taker_t first = {0}, second = {0};
  pthread_t th;
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, hold_the_first_map);
  weft__fault_set(WEFT__FAULT_SLAB_MAP, 2); /* the second map tried fails: the first's */
  cr_assert_eq(pthread_create(&th, NULL, second_taker, &second), 0);
  first.err = weft__stack_get(race_pool, &first.cache, &first.stack);
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, NULL);
  weft__fault_set(WEFT__FAULT_SLAB_MAP, 0);
  cr_assert_eq(atomic_load(&race_in_map), 2, "both took the mapping path");
  OK(second.err);
  cr_assert_eq(first.err, 0, "the failed map ignored the stacks the other filed meanwhile");
  cr_assert_neq(first.stack, second.stack);
  cr_assert_eq(weft__stack_pool_mapped(race_pool), (2u << 20) / one, "one slab was mapped");
  weft__stack_pool_destroy(race_pool);
}

/* A scavenger's batch is out for trimming (madvised outside the pool's lock) while a taker
 * empties the pool and its slab map fails (out of memory or map entries): the taker waits for
 * the batch instead of answering ENOMEM with free stacks on their way back (review M, session
 * 38: 451 task starts ended WEFT_ENOMEM so). Replayed with a pause point that holds the
 * scavenger with its batch out until the taker waits (or has answered), and the slab-map
 * fault on every map. */
static struct weft__stack_pool *trim_pool;
static atomic_int trim_held, trim_go;

static void hold_the_trim(void) {
  atomic_store(&trim_held, 1);
  while (!atomic_load(&trim_go)) sched_yield();
}

static void *scavenge_long_after(void *arg) {
  weft__stack_cache_t *c = arg;
  weft__stack_scavenge(trim_pool, c, weft_now_ns() + 10000000000ull); /* all aged */
  return NULL;
}

typedef struct {
  weft__stack_cache_t cache;
  long got;      /* stacks taken */
  long want;     /* stacks to take */
  int err;       /* the first failed take's */
  atomic_int done;
} drainer_t;

static void *take_them_all(void *arg) {
  drainer_t *d = arg;
  weft__stack_t *s;
  while (d->got < d->want && (d->err = weft__stack_get(trim_pool, &d->cache, &s)) == 0) d->got++;
  atomic_store(&d->done, 1);
  return NULL;
}

Test(memory, a_failed_slab_map_waits_for_the_stacks_being_trimmed) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  OK(weft__stack_pool_create(&trim_pool, 2 * page, page));
  weft__stack_cache_t spiller = {0}, scavenger = {0};
  enum { N = 80 }; /* past the cache's bound: the puts spill to the pool's used list */
  weft__stack_t *s[N];
  for (int i = 0; i < N; i++) OK(weft__stack_get(trim_pool, &spiller, &s[i]));
  for (int i = 0; i < N; i++) weft__stack_put(trim_pool, &spiller, s[i]);
  long mapped = (long)weft__stack_pool_mapped(trim_pool), in_spiller = (long)spiller.count;
  long awaited = weft__probe_count(WEFT__PROBE_STACKS_AWAITED);
  atomic_store(&trim_held, 0);
  atomic_store(&trim_go, 0);
  weft__pause_set(WEFT__PAUSE_TRIMMING, hold_the_trim);
  pthread_t scav, taker;
  cr_assert_eq(pthread_create(&scav, NULL, scavenge_long_after, &scavenger), 0);
  uint64_t until = weft_now_ns() + 30000000000ull; /* bounds on failure */
  while (!atomic_load(&trim_held) && weft_now_ns() < until) sched_yield();
  cr_assert(atomic_load(&trim_held), "the scavenger never detached a batch");
  weft__fault_set(WEFT__FAULT_SLAB_MAP, WEFT__FAULT_ALWAYS);
  /* every stack not in the spiller's cache: the pool's, and then the batch out for trimming */
  static drainer_t d;
  d = (drainer_t){.want = mapped - in_spiller};
  cr_assert_eq(pthread_create(&taker, NULL, take_them_all, &d), 0);
  while (!atomic_load(&d.done) && weft__probe_count(WEFT__PROBE_STACKS_AWAITED) == awaited &&
         weft_now_ns() < until)
    sched_yield();
  atomic_store(&trim_go, 1); /* the batch goes on to be trimmed and filed */
  pthread_join(scav, NULL);
  pthread_join(taker, NULL);
  weft__pause_set(WEFT__PAUSE_TRIMMING, NULL);
  weft__fault_set(WEFT__FAULT_SLAB_MAP, 0);
  cr_assert_gt(weft__probe_count(WEFT__PROBE_STACKS_AWAITED), awaited,
               "the taker never waited for the batch (took %ld of %ld, err %d)", d.got, d.want,
               d.err);
  cr_assert_eq(d.err, 0, "a take answered %d with stacks out for trimming", d.err);
  cr_assert_eq(d.got, d.want, "every free stack was taken");
  cr_assert_eq(weft__stack_pool_mapped(trim_pool), (uint64_t)mapped, "no slab was mapped");
  weft__stack_pool_destroy(trim_pool); /* the caches' stacks are in its slabs */
}

/* A slab is being mapped (not yet filed) when another taker's map fails: the failed one waits
 * for that slab's spare stacks instead of answering ENOMEM (review O, session 38: 154 spare
 * stacks were filed just after the ENOMEM). Through a spawn's check (weft__stack_check), the
 * other path that waits. Replayed with a pause point that holds the first map before its mmap
 * until the second has waited (or answered), and the slab-map fault on the second's map (the
 * first fault hit: the first map is held before its own). */
static atomic_int inflight_held, inflight_go;

static void hold_the_first_map_until_told(void) {
  if (atomic_fetch_add(&inflight_held, 1) == 0)
    while (!atomic_load(&inflight_go)) sched_yield();
}

static void *map_a_slab(void *arg) {
  race_taker_t *r = arg;
  r->err = weft__stack_get(race_pool, &r->cache, &r->stack);
  return NULL;
}

typedef struct {
  weft__stack_cache_t cache;
  int err;
  atomic_int done;
} checker_t;

static void *check_for_a_stack(void *arg) {
  checker_t *k = arg;
  k->err = weft__stack_check(race_pool, &k->cache);
  atomic_store(&k->done, 1);
  return NULL;
}

Test(memory, a_failed_slab_map_waits_for_a_slab_another_is_mapping) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), one = 3 * page;
  if ((2u << 20) / one <= 16) cr_skip_test("pages of %zu bytes: a slab has no spare stacks", page);
  OK(weft__stack_pool_create(&race_pool, 2 * page, page));
  atomic_store(&inflight_held, 0);
  atomic_store(&inflight_go, 0);
  long awaited = weft__probe_count(WEFT__PROBE_STACKS_AWAITED);
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, hold_the_first_map_until_told);
  static race_taker_t mapper;
  static checker_t checker;
  mapper = (race_taker_t){0};
  checker = (checker_t){0};
  pthread_t m, k;
  cr_assert_eq(pthread_create(&m, NULL, map_a_slab, &mapper), 0);
  uint64_t until = weft_now_ns() + 30000000000ull; /* bounds on failure */
  while (!atomic_load(&inflight_held) && weft_now_ns() < until) sched_yield();
  weft__fault_set(WEFT__FAULT_SLAB_MAP, 1); /* the next map to reach its fault: the checker's */
  cr_assert_eq(pthread_create(&k, NULL, check_for_a_stack, &checker), 0);
  while (!atomic_load(&checker.done) &&
         weft__probe_count(WEFT__PROBE_STACKS_AWAITED) == awaited && weft_now_ns() < until)
    sched_yield();
  atomic_store(&inflight_go, 1); /* the first map goes on and files its slab */
  pthread_join(m, NULL);
  pthread_join(k, NULL);
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, NULL);
  weft__fault_set(WEFT__FAULT_SLAB_MAP, 0);
  cr_assert_eq(atomic_load(&inflight_held), 2, "both took the mapping path");
  OK(mapper.err);
  cr_assert_gt(weft__probe_count(WEFT__PROBE_STACKS_AWAITED), awaited,
               "the failed check never waited for the slab in flight (err %d)", checker.err);
  cr_assert_eq(checker.err, 0, "the check answered %d with a slab's spare stacks coming",
               checker.err);
  cr_assert_eq(weft__stack_pool_mapped(race_pool), (2u << 20) / one, "one slab was mapped");
  weft__stack_pool_destroy(race_pool);
}

/* ---- Threads' descriptor caches (lib/task.c's "Threads' caches", session 28) ---- */

static long spawn_join_sum(weft_runtime_t *rt, int n) {
  long sum = 0;
  for (int i = 0; i < n; i++) {
    weft_task_t *t;
    void *r;
    OK(weft_runtime_spawn(rt, &t, nothing, IPTR(i)));
    OK(weft_await(t, &r));
    weft_task_release(t); /* freed by this thread: into its cache */
    sum += PINT(r);
  }
  return sum;
}

/* A plain thread keeps spawning while another thread destroys each runtime it used and makes
 * the next, which the allocator tends to place at the same address: the spawner's cache of the
 * destroyed one's descriptors (unmapped with it) must never be read. Without the cache's
 * generation check this read unmapped slabs (SIGSEGV) or a live runtime's free memory. */
typedef struct {
  weft_runtime_t *_Atomic rt;
  atomic_int round_done, round_go, reused;
  long sums;
} respawner_t;
enum { RESPAWN_ROUNDS = 12, RESPAWN_TASKS = 300 };

static void *respawner(void *arg) {
  respawner_t *r = arg;
  for (int round = 0; round < RESPAWN_ROUNDS; round++) {
    while (atomic_load(&r->round_go) <= round) sched_yield();
    r->sums += spawn_join_sum(atomic_load(&r->rt), RESPAWN_TASKS);
    atomic_store(&r->round_done, round + 1);
  }
  return NULL;
}

Test(memory, a_threads_cached_descriptors_die_with_their_runtime_even_at_a_reused_address,
     .timeout = 120) {
  respawner_t r = {.sums = 0}; /* the rest zero too; {0} gave the atomic pointer an int (clang) */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, respawner, &r), 0);
  weft_runtime_t *last = NULL;
  for (int round = 0; round < RESPAWN_ROUNDS; round++) {
    weft_runtime_t *rt = test_runtime(2);
    atomic_fetch_add(&r.reused, rt == last);
    last = rt;
    atomic_store(&r.rt, rt);
    atomic_store(&r.round_go, round + 1);
    while (atomic_load(&r.round_done) <= round) sched_yield();
    OK(weft_runtime_destroy(rt)); /* by this thread: the spawner's cache still names it */
  }
  pthread_join(th, NULL);
  long per_round = (long)RESPAWN_TASKS * (RESPAWN_TASKS - 1) / 2;
  cr_assert_eq(r.sums, RESPAWN_ROUNDS * per_round);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  /* glibc hands a freed block of the same size straight back (the sanitizers' allocators
   * quarantine it): the address was reused, so the check above met the case it is for. */
  cr_assert_gt(atomic_load(&r.reused), 0, "no runtime was made at its predecessor's address");
#endif
}

/* A thread's cache goes back to its runtime when the thread turns to a third runtime (a thread
 * keeps caches for two) and when it exits (or the scavenger takes it first, if the runtime
 * idled a second meanwhile): never dropped while the runtime lives, or every such turn would
 * leak descriptors from the store, and never left listed after its thread is gone. */
static size_t store_free(weft_runtime_t *rt) {
  pthread_mutex_lock(&rt->task_lock);
  size_t n = rt->free_task_total;
  pthread_mutex_unlock(&rt->task_lock);
  return n;
}

static bool lists_a_cache(weft_runtime_t *rt) {
  pthread_mutex_lock(&rt->task_lock);
  bool listed = rt->thread_caches != NULL;
  pthread_mutex_unlock(&rt->task_lock);
  return listed;
}

typedef struct {
  weft_runtime_t *rts[3];
  long sums[3];
  bool a_listed_before, a_back, a_listed_after;
} turner_t;

static void *turn_then_exit(void *arg) {
  turner_t *t = arg;
  t->sums[0] = spawn_join_sum(t->rts[0], 100);
  t->sums[1] = spawn_join_sum(t->rts[1], 100); /* a second cache: A's stays */
  t->a_listed_before = lists_a_cache(t->rts[0]);
  size_t a_before = store_free(t->rts[0]);
  long taken_before = weft__probe_count(WEFT__PROBE_CACHE_RECLAIMED);
  t->sums[2] = spawn_join_sum(t->rts[2], 100); /* a third: A's, used least recently, goes back */
  t->a_back = store_free(t->rts[0]) > a_before ||
              weft__probe_count(WEFT__PROBE_CACHE_RECLAIMED) > taken_before;
  t->a_listed_after = lists_a_cache(t->rts[0]);
  return NULL; /* exits holding caches of B's and C's descriptors */
}

Test(memory, a_threads_cache_goes_back_when_it_turns_to_a_third_runtime_and_when_it_exits,
     .timeout = 60) {
  turner_t t = {.rts = {test_runtime(2), test_runtime(2), test_runtime(2)}};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, turn_then_exit, &t), 0);
  pthread_join(th, NULL);
  for (int i = 0; i < 3; i++) cr_assert_eq(t.sums[i], 4950);
  cr_assert(t.a_listed_before, "A lost the cache of the thread that turned to B");
  cr_assert(t.a_back, "the cache of A's descriptors was dropped at the turn to C, not given back");
  cr_assert(!t.a_listed_after, "A still lists the cache given back");
  /* The exit's destructor gave B's and C's back and took them off the lists. */
  cr_assert(!lists_a_cache(t.rts[1]), "B still lists the exited thread's cache");
  cr_assert(!lists_a_cache(t.rts[2]), "C still lists the exited thread's cache");
  for (int i = 0; i < 3; i++) OK(weft_runtime_destroy(t.rts[i]));
}

/* Descriptors that a plain thread gives back after every worker parked (its joins of the tasks
 * it spawned, once they have all ended) go back to the system too: the scavenger runs as a
 * worker parks, and until session 34 nothing woke one, so an idle runtime kept them (review:
 * 18 MB after 200 000 tasks, given back only when an unrelated task came). The workers are
 * parked (their park count settles) before the joins begin. */
#define JOINED_LATE SCALE(20000, 4000)

static uint64_t parks_of(weft_runtime_t *rt) {
  weft_stats_t st = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &st));
  return st.parks;
}

/* Parked for good: the park count holds still over 300 ms (a parked worker's pass found
 * nothing given back since the last, so it armed no wake-up). */
static void until_the_workers_park_for_good(weft_runtime_t *rt) {
  uint64_t parks = parks_of(rt), until = weft_now_ns() + 20 * 1000000000ull;
  for (;;) {
    usleep(300 * 1000);
    uint64_t now_parks = parks_of(rt);
    if (now_parks == parks) break;
    parks = now_parks;
    cr_assert_lt(weft_now_ns(), until, "the workers never settled");
  }
}

Test(memory, descriptors_a_thread_frees_after_the_workers_parked_are_given_back, .timeout = 60) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t **tasks = malloc(sizeof *tasks * JOINED_LATE);
  cr_assert_not_null(tasks);
  for (int i = 0; i < JOINED_LATE; i++) OK(weft_runtime_spawn(rt, &tasks[i], twice, NULL));
  for (int i = 0; i < JOINED_LATE; i++)
    while (weft_task_done(tasks[i]) != 1) usleep(1000);
  until_the_workers_park_for_good(rt);
  long freed = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED);
  for (int i = 0; i < JOINED_LATE; i++) OK(weft_join(tasks[i], NULL));
  free(tasks);
  idle_until_probe_passes(WEFT__PROBE_TASK_SLAB_FREED, freed, "gave back a slab a thread freed");
  OK(weft_runtime_destroy(rt));
}

/* A plain thread that frees into its cache handles it did not take from the store (tasks a
 * task spawned on a worker, from the worker's own list) moves no count of the store's: its
 * first such free since the scavenger last took its cache asks for the pass that takes it
 * again (review, session 34: nothing asked, and the cache stayed for good). Before the fix
 * the first wait failed already: a pass also needed a slab's worth free in the store, which
 * the cache kept there. */
enum { HANDED_OVER = 100 };

static void *spawn_for_the_caller(void *arg) {
  weft_task_t **kids = arg;
  for (int i = 0; i < HANDED_OVER; i++) OK(weft_spawn(&kids[i], twice, IPTR(i)));
  return NULL;
}

Test(memory, a_threads_frees_of_handles_a_worker_spawned_ask_for_the_pass_that_takes_its_cache,
     .timeout = 90) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *kids[HANDED_OVER], *parent;
  long reclaimed = weft__probe_count(WEFT__PROBE_CACHE_RECLAIMED);
  OK(weft_runtime_spawn(rt, &parent, spawn_for_the_caller, kids));
  while (weft_task_done(parent) != 1) usleep(1000); /* ran on a worker, not inline here */
  OK(weft_join(parent, NULL)); /* its descriptor: into this thread's cache */
  for (int i = 0; i < HANDED_OVER; i++)
    while (weft_task_done(kids[i]) != 1) usleep(1000);
  idle_until_probe_passes(WEFT__PROBE_CACHE_RECLAIMED, reclaimed, "took the spawner's cache");
  until_the_workers_park_for_good(rt);
  reclaimed = weft__probe_count(WEFT__PROBE_CACHE_RECLAIMED);
  for (int i = 0; i < HANDED_OVER; i++) {
    void *r;
    OK(weft_join(kids[i], &r)); /* into this thread's cache: no count of the store moves */
    cr_assert_eq(PINT(r), 2 * i);
  }
  idle_until_probe_passes(WEFT__PROBE_CACHE_RECLAIMED, reclaimed,
                          "took a cache of handles a worker spawned");
  OK(weft_runtime_destroy(rt));
}

/* A pass leaves a cache its owner is using at that moment (it never waits for one): the next
 * park arms another pass for it, which takes it (review, session 34: none did, and the owner's
 * later frees into it moved no count). The owner here holds its cache, through the pause,
 * until a pass has begun; a pass that came before the hold took the cache instead, and the
 * round is tried again. */
static _Atomic long pass_to_hold_for = -1;

static void hold_the_cache_through_a_pass(void) {
  long since = atomic_exchange(&pass_to_hold_for, -1);
  if (since >= 0)
    idle_until_probe_passes(WEFT__PROBE_TASK_SCAVENGE, since, "ran a pass while a thread freed");
}

Test(memory, a_cache_a_pass_left_as_in_use_is_taken_by_a_later_pass, .timeout = 150) {
  weft_runtime_t *rt = test_runtime(2);
  weft__pause_set(WEFT__PAUSE_THREAD_FREED, hold_the_cache_through_a_pass);
  long skipped = weft__probe_count(WEFT__PROBE_CACHE_SKIPPED);
  for (int round = 0; weft__probe_count(WEFT__PROBE_CACHE_SKIPPED) == skipped; round++) {
    cr_assert_lt(round, 3, "no pass found the cache in use");
    cr_assert_eq(spawn_join_sum(rt, 200), 19900); /* refills from the store: a pass is armed */
    atomic_store(&pass_to_hold_for, weft__probe_count(WEFT__PROBE_TASK_SCAVENGE));
    cr_assert_eq(spawn_join_sum(rt, 1), 0); /* its free holds the cache until a pass began */
  }
  weft__pause_set(WEFT__PAUSE_THREAD_FREED, NULL);
  long reclaimed = weft__probe_count(WEFT__PROBE_CACHE_RECLAIMED);
  idle_until_probe_passes(WEFT__PROBE_CACHE_RECLAIMED, reclaimed,
                          "took a cache its last pass left as in use");
  OK(weft_runtime_destroy(rt));
}

/* A second release, or a second join, of a handle whose descriptor's slab the scavenger has
 * given back aborts, as one whose descriptor is merely free does (docs/api.md): the given-back
 * page reads as zeros, which the word read as a running task's — the release "detached" it in
 * silence, and the join waited for ever (review, session 34). */
static weft_task_t *handle_in_a_given_back_slab(void) {
  weft_runtime_t *rt = test_runtime(2);
  enum { N = 4000 };
  static weft_task_t *tasks[N];
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &tasks[i], twice, NULL));
  for (int i = 0; i < N; i++) OK(weft_join(tasks[i], NULL));
  long freed = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED);
  idle_until_probe_passes(WEFT__PROBE_TASK_SLAB_FREED, freed, "gave a slab back");
  for (int i = 0; i < N; i++)
    if (!weft__task_rt(tasks[i])) return tasks[i];
  cr_assert_fail("no handle's slab was given back");
  return NULL;
}

Test(memory, a_second_release_into_a_given_back_slab_aborts, .signal = SIGABRT, .timeout = 60) {
  weft_task_release(handle_in_a_given_back_slab()); /* the second release: aborts */
  cr_assert_fail("a second release into a given-back slab returned");
}

Test(memory, a_second_join_into_a_given_back_slab_aborts, .signal = SIGABRT, .timeout = 60) {
  weft_join(handle_in_a_given_back_slab(), NULL); /* the second join: aborts */
  cr_assert_fail("a second join into a given-back slab returned");
}

/* A descriptor slab given back takes its region off huge pages (VmFlags "nh"): khugepaged
 * merged a region with a page still in use back into a whole 2 MiB page, and the slabs given
 * back became resident again, for good (review, session 34: RSS 7.4 -> 29.9 MB within 20 s).
 * 10^5 descriptors fill four regions (511 a slab, 64 slabs a region); every region after the
 * first asked for huge pages. /proc/self/smaps is read once. */
enum { REGION_TASKS = 100000, VMAS_MAX = 4096 };

typedef struct {
  uintptr_t lo, hi;
  bool nh;
} vma_t;

static size_t read_vmas(vma_t *v, size_t cap) {
  FILE *f = fopen("/proc/self/smaps", "r");
  cr_assert_not_null(f);
  char line[512];
  size_t n = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char *space = strchr(line, ' '), *dash = strchr(line, '-');
    if (dash && space && dash < space && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      if (n < cap) v[n++] = (vma_t){lo, hi, false};
    } else if (n && !strncmp(line, "VmFlags:", 8)) {
      v[n - 1].nh = strstr(line, " nh") != NULL;
    }
  }
  fclose(f);
  return n;
}

static void *spawn_and_join_many(void *arg) {
  weft_task_t **tasks = arg;
  for (int i = 0; i < REGION_TASKS; i++) OK(weft_spawn(&tasks[i], twice, NULL));
  for (int i = 0; i < REGION_TASKS; i++) OK(weft_join(tasks[i], NULL));
  return NULL;
}

Test(memory, a_region_whose_slabs_are_given_back_leaves_huge_pages, .timeout = 60) {
#if TEST_TSAN
  cr_skip_test("10^5 spawns and joins take minutes under TSan; a flag, not a race");
#endif
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0)
    cr_skip_test("a kernel without transparent huge pages has no VmFlags to look at");
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t **tasks = malloc(sizeof *tasks * REGION_TASKS);
  vma_t *vmas = malloc(sizeof *vmas * VMAS_MAX);
  cr_assert(tasks && vmas);
  weft_task_t *t;
  long freed = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED);
  OK(weft_runtime_spawn(rt, &t, spawn_and_join_many, tasks));
  OK(weft_join(t, NULL));
  idle_until_probe_passes(WEFT__PROBE_TASK_SLAB_FREED, freed, "gave a slab back");
  /* the pass gives slabs back one by one: until it has ended (no slab for 200 ms) */
  for (long now = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED), then = -1; now != then;
       now = weft__probe_count(WEFT__PROBE_TASK_SLAB_FREED)) {
    then = now;
    usleep(200 * 1000);
  }
  size_t nvmas = read_vmas(vmas, VMAS_MAX);
  int given_back = 0, small = 0;
  uintptr_t regions_seen[64];
  int nregions = 0;
  for (int i = 0; i < REGION_TASKS; i++) {
    if (weft__task_rt(tasks[i])) continue;
    given_back++;
    uintptr_t a = (uintptr_t)tasks[i], region = a & ~(uintptr_t)(2 * 1024 * 1024 - 1);
    bool seen = false;
    for (int r = 0; r < nregions; r++) seen |= regions_seen[r] == region;
    if (!seen && nregions < 64) regions_seen[nregions++] = region;
    for (size_t v = 0; v < nvmas; v++)
      if (a >= vmas[v].lo && a < vmas[v].hi) {
        small += vmas[v].nh;
        break;
      }
  }
  free(tasks);
  free(vmas);
  cr_assert_gt(nregions, 1, "the given-back slabs lie in %d region: none asked for huge pages",
               nregions);
  cr_assert_eq(small, given_back, "%d of %d descriptors in given-back slabs sit in a region "
               "still open to huge pages", given_back - small, given_back);
  OK(weft_runtime_destroy(rt));
}
