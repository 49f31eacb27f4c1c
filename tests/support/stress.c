/* The stress matrix's scenarios (see stress.h). Public API only: what users can do, done at once.
 *
 * Sizes: gcc's TSan allows ~8k live threads + fibers, so under gcc's TSan the live-at-once
 * counts stay in the hundreds (clang's allows ~40k: full size there, SIZE_LIVE); the 10^6 of
 * the foreign flood is kept in release and ASan builds and cut to 5*10^4 under TSan (10^6 TSan
 * tasks per worker count would take CI's whole budget: a foreign spawn + join costs ~200 µs
 * there). The soak runs the TSan matrix for as long as asked. */
#include "stress.h"

#include "weft.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define SMALL 1 /* ASan runs at ~2x: it keeps the release sizes */
#else
#define SMALL 0
#endif
/* gcc 12's TSan runtime clears ~770 KB for every fiber it creates (one per task start; gdb in
 * __tsan_create_fiber, sys time in its mmap/munmap/madvise): CI's matrix took 550 s under
 * gcc's TSan against 44 s under clang's at the same sizes. gcc's build runs half the tasks. */
#if SMALL && !defined(__clang__)
#define TSAN_SHARE 0.5
#else
#define TSAN_SHARE 1.0
#endif
#define SIZE(release, tsan, scale) ((long)((SMALL ? (tsan) * TSAN_SHARE : (release)) * (scale)))
/* Counts of tasks alive at once. gcc 12's TSan dies past 8128 threads + fibers; clang 14's
 * ran 40 000 live tasks here (README, "Testing your program under ThreadSanitizer"), so a
 * clang TSan build keeps the release sizes: the matrix at full size. */
#if SMALL && defined(__clang__)
#define LIVE_SMALL 0
#else
#define LIVE_SMALL SMALL
#endif
#define SIZE_LIVE(release, tsan, scale) ((long)((LIVE_SMALL ? (tsan) : (release)) * (scale)))

const int stress_worker_counts[] = {1, 2, 4, 8};
const int stress_worker_count_n = 4;

/* ---- Shared pieces ------------------------------------------------------------------------ */

static uint64_t rnd(uint64_t *state) { /* splitmix64, the project's PRNG (as in support.h) */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t below(uint64_t *state, uint64_t n) { return rnd(state) % n; }

uint64_t stress_derive_seed(uint64_t base, uint64_t round) {
  uint64_t s = base ^ (round * 0xd1b54a32d192ed03ull);
  return rnd(&s);
}

/* The one way a scenario fails: a line with everything needed to replay it, then abort. */
__attribute__((noreturn, format(printf, 3, 4))) static void fail(const char *scenario,
                                                                  const stress_config_t *cfg,
                                                                  const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  fprintf(stderr,
          "stress FAILED: %s workers=%d seed=0x%llx: %s\n"
          "replay: WEFT_TEST_SEED=0x%llx test_stress, or weft-stress --scenario %s --workers %d "
          "--seed 0x%llx --runs 1\n",
          scenario, cfg->workers, (unsigned long long)cfg->seed, what,
          (unsigned long long)cfg->seed, scenario, cfg->workers, (unsigned long long)cfg->seed);
  fflush(stderr);
  abort();
}

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) fail(SCENARIO, cfg, __VA_ARGS__);        \
  } while (0)
#define CHECK_OK(expr)                                                                  \
  do {                                                                                  \
    int check_err_ = (expr);                                                            \
    if (check_err_) fail(SCENARIO, cfg, "%s: %s", #expr, weft_err_name(check_err_));    \
  } while (0)

static weft_runtime_t *make_runtime(const char *SCENARIO, const stress_config_t *cfg) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = cfg->workers;
  o.stack_size = 32 * 1024; /* gather trees nest up to 8 inline levels (deep frames in ASan) */
  /* Spawn throttling (a spawn may run its child first) in half the configurations, whatever the
   * seed: the one-worker cells against the others, which side from the seed. */
  o.spawn_throttle = ((cfg->seed >> 8) + (uint64_t)(cfg->workers == 1)) % 2 ? 8 : 0;
  weft_runtime_t *rt = NULL;
  CHECK_OK(weft_runtime_create(&rt, &o));
  return rt;
}

/* Exactly-once ledger: one counter per task index. */
typedef struct ledger {
  long n;
  _Atomic unsigned char *ran;
} ledger_t;

static void ledger_init(ledger_t *l, long n) {
  l->n = n;
  l->ran = calloc((size_t)n, 1);
}

/* Returns false if index i had run before. */
static bool ledger_mark(ledger_t *l, long i) {
  return atomic_fetch_add_explicit(&l->ran[i], 1, memory_order_relaxed) == 0;
}

/* Index of the first entry not run exactly once, or -1. Up to `upto` entries. */
static long ledger_first_bad(ledger_t *l, long upto, bool at_most_once) {
  for (long i = 0; i < upto; i++) {
    unsigned char r = atomic_load_explicit(&l->ran[i], memory_order_relaxed);
    if (r > 1 || (!at_most_once && r != 1)) return i;
  }
  return -1;
}

/* ---- 1. Foreign flood --------------------------------------------------------------------- */

typedef struct flood {
  const stress_config_t *cfg;
  weft_runtime_t *rt;
  ledger_t ledger;
  atomic_long outstanding; /* tasks not yet run; the one that ends it resolves all_ran */
  weft_future_t *all_ran;
  atomic_int feeders_done;
  atomic_long churn_tasks;
} flood_t;

typedef struct feeder {
  flood_t *f;
  long first, count;
  uint64_t seed;
  pthread_t thread;
} feeder_t;

#undef SCENARIO
#define SCENARIO "foreign_flood"

static flood_t *flood_current; /* one flood at a time per process */

static void *flood_task(void *arg) {
  flood_t *f = flood_current;
  long i = (long)(intptr_t)arg;
  const stress_config_t *cfg = f->cfg;
  CHECK(ledger_mark(&f->ledger, i), "task %ld ran twice", i);
  if (atomic_fetch_sub_explicit(&f->outstanding, 1, memory_order_acq_rel) == 1)
    CHECK_OK(weft_future_resolve(f->all_ran, NULL));
  return arg;
}

static void *feeder_thread(void *arg) {
  feeder_t *fd = arg;
  flood_t *f = fd->f;
  const stress_config_t *cfg = f->cfg;
  enum { BATCH_MAX = 256 };
  weft_task_t *batch[BATCH_MAX];
  long batch_index[BATCH_MAX];
  uint64_t rs = fd->seed;
  long i = fd->first, end = fd->first + fd->count;
  while (i < end) {
    /* A random batch: some tasks joined from here (handles), the rest detached. */
    int size = 1 + (int)below(&rs, BATCH_MAX);
    int held = 0;
    for (int k = 0; k < size && i < end; k++, i++) {
      bool keep = below(&rs, 2);
      CHECK_OK(weft_runtime_spawn(f->rt, keep ? &batch[held] : NULL, flood_task, (void *)(intptr_t)i));
      if (keep) batch_index[held++] = i;
    }
    for (int k = 0; k < held; k++) {
      void *r;
      CHECK_OK(weft_join(batch[k], &r));
      CHECK((intptr_t)r == batch_index[k], "task %ld returned %ld", batch_index[k], (long)(intptr_t)r);
    }
  }
  return NULL;
}

static void *churn_leaf(void *arg) { return arg; }

/* Keeps the workers spawning and stealing among themselves while the feeders flood them, and
 * yields without pause so that injected work must get past a busy worker (a worker that polled
 * the inject queue one task per 61 ticks took 16.9 s for 10^6 foreign spawns). Bounded to about
 * as many tasks as the flood, so a slow host (valgrind runs one thread at a time) is not spent
 * on churn while the feeders wait for the CPU. */
static void *churn(void *arg) {
  flood_t *f = arg;
  long tasks = 0;
  while (tasks < f->ledger.n && !atomic_load_explicit(&f->feeders_done, memory_order_acquire)) {
    weft_call_t calls[8];
    for (int k = 0; k < 8; k++) calls[k] = (weft_call_t){churn_leaf, (void *)(intptr_t)k};
    void *res[8];
    const stress_config_t *cfg = f->cfg;
    CHECK_OK(weft_gather_calls(calls, 8, res));
    for (int k = 0; k < 8; k++) CHECK((intptr_t)res[k] == k, "gather_calls result %d wrong", k);
    tasks += 8;
    weft_yield();
  }
  atomic_store_explicit(&f->churn_tasks, tasks, memory_order_relaxed);
  return NULL;
}

uint64_t stress_foreign_flood(const stress_config_t *cfg) {
  enum { FEEDERS = 8 };
  flood_t f = {.cfg = cfg};
  long n = SIZE(1000000, 50000, cfg->scale);
  ledger_init(&f.ledger, n);
  atomic_init(&f.outstanding, n);
  flood_current = &f;
  f.rt = make_runtime(SCENARIO, cfg);
  CHECK_OK(weft_future_create(&f.all_ran));
  weft_task_t *churner;
  CHECK_OK(weft_runtime_spawn(f.rt, &churner, churn, &f));
  feeder_t fd[FEEDERS];
  for (int k = 0; k < FEEDERS; k++) {
    fd[k] = (feeder_t){&f, k * (n / FEEDERS), k == FEEDERS - 1 ? n - k * (n / FEEDERS) : n / FEEDERS,
                       stress_derive_seed(cfg->seed, (uint64_t)k), 0};
    CHECK(pthread_create(&fd[k].thread, NULL, feeder_thread, &fd[k]) == 0, "pthread_create");
  }
  for (int k = 0; k < FEEDERS; k++) pthread_join(fd[k].thread, NULL);
  CHECK_OK(weft_future_await(f.all_ran, NULL)); /* a thread that is not a worker blocks here */
  atomic_store_explicit(&f.feeders_done, 1, memory_order_release);
  CHECK_OK(weft_join(churner, NULL));
  CHECK_OK(weft_runtime_destroy(f.rt));
  weft_future_destroy(f.all_ran);
  long bad = ledger_first_bad(&f.ledger, n, false);
  CHECK(bad < 0, "task %ld ran %d times", bad, bad < 0 ? 0 : (int)f.ledger.ran[bad]);
  free((void *)f.ledger.ran);
  flood_current = NULL;
  return (uint64_t)n + (uint64_t)atomic_load(&f.churn_tasks);
}

/* ---- 2. Gather trees ---------------------------------------------------------------------- */

#undef SCENARIO
#define SCENARIO "gather_trees"

enum { TREE_DEPTH_MAX = 7, TREE_FANOUT_MAX = 4 };

typedef struct tree_node {
  uint64_t seed;
  int depth;
  const stress_config_t *cfg;
} tree_node_t;

enum { TREE_MODES = 6 }; /* the ways a node waits for its children (tree_task's switch) */

static int tree_fanout(uint64_t *rs, int depth) {
  return depth >= TREE_DEPTH_MAX ? 0 : (int)below(rs, TREE_FANOUT_MAX + 1) - (depth == 0 ? 0 : 1);
}

/* The tree's size by plain recursion: what the tasks must compute. */
static long tree_size_sequential(uint64_t seed, int depth) {
  uint64_t rs = seed;
  int fan = tree_fanout(&rs, depth);
  (void)below(&rs, TREE_MODES); /* the mode draw, kept in step with tree_task */
  long size = 1;
  for (int k = 0; k < fan; k++) size += tree_size_sequential(rnd(&rs), depth + 1);
  return size;
}

static void *tree_task(void *arg) {
  const tree_node_t *node = arg;
  const stress_config_t *cfg = node->cfg;
  uint64_t rs = node->seed;
  int fan = tree_fanout(&rs, node->depth);
  int mode = (int)below(&rs, TREE_MODES);
  if (fan <= 0) {
    if (mode == 0) weft_yield();
    return (void *)(intptr_t)1;
  }
  tree_node_t kids[TREE_FANOUT_MAX];
  weft_task_t *t[TREE_FANOUT_MAX];
  void *res[TREE_FANOUT_MAX];
  for (int k = 0; k < fan; k++) kids[k] = (tree_node_t){rnd(&rs), node->depth + 1, cfg};
  switch (mode) {
  case 0: { /* gather over calls: unstolen children run inline */
    weft_call_t calls[TREE_FANOUT_MAX];
    for (int k = 0; k < fan; k++) calls[k] = (weft_call_t){tree_task, &kids[k]};
    CHECK_OK(weft_gather_calls(calls, (size_t)fan, res));
    break;
  }
  case 1: /* spawn, then gather the handles */
    for (int k = 0; k < fan; k++) CHECK_OK(weft_spawn(&t[k], tree_task, &kids[k]));
    CHECK_OK(weft_gather(t, (size_t)fan, res));
    for (int k = 0; k < fan; k++) weft_task_release(t[k]);
    break;
  case 2: /* await one by one, oldest first (the newest may run inline at the end) */
    for (int k = 0; k < fan; k++) CHECK_OK(weft_spawn(&t[k], tree_task, &kids[k]));
    for (int k = 0; k < fan; k++) CHECK_OK(weft_join(t[k], &res[k]));
    break;
  case 3: /* a short deadline first (may time out), then a full await: awaiting twice */
    for (int k = 0; k < fan; k++) CHECK_OK(weft_spawn(&t[k], tree_task, &kids[k]));
    for (int k = 0; k < fan; k++) {
      int err = weft_await_timeout(t[k], 20000, &res[k]);
      CHECK(err == 0 || err == WEFT_ETIMEDOUT, "await_timeout: %s", weft_err_name(err));
      CHECK_OK(weft_join(t[k], &res[k]));
    }
    break;
  case 5: { /* fork-join frames, synced newest first: unstolen ones run as calls */
    weft_frame_t f[TREE_FANOUT_MAX];
    for (int k = 0; k < fan; k++) weft_fork(&f[k], tree_task, &kids[k]);
    if (below(&rs, 2)) CHECK_OK(weft_yield()); /* a suspension detaches the frames */
    for (int k = fan - 1; k >= 0; k--) res[k] = weft_sync(&f[k]);
    break;
  }
  default: /* spawn, sleep a little, then gather: children finish before and after */
    for (int k = 0; k < fan; k++) CHECK_OK(weft_spawn(&t[k], tree_task, &kids[k]));
    CHECK_OK(weft_sleep_ns(below(&rs, 200000)));
    CHECK_OK(weft_gather(t, (size_t)fan, res));
    for (int k = 0; k < fan; k++) weft_task_release(t[k]);
    break;
  }
  long size = 1;
  for (int k = 0; k < fan; k++) size += (long)(intptr_t)res[k];
  return (void *)(intptr_t)size;
}

typedef struct forest {
  const stress_config_t *cfg;
  long target_nodes;
  long nodes;
} forest_t;

static void *forest_main(void *arg) {
  forest_t *fo = arg;
  const stress_config_t *cfg = fo->cfg;
  enum { AT_ONCE_MAX = 8 };
  int at_once = LIVE_SMALL ? 2 : AT_ONCE_MAX;
  uint64_t rs = cfg->seed;
  while (fo->nodes < fo->target_nodes) {
    tree_node_t roots[AT_ONCE_MAX];
    weft_task_t *t[AT_ONCE_MAX];
    void *res[AT_ONCE_MAX];
    for (int k = 0; k < at_once; k++) {
      roots[k] = (tree_node_t){rnd(&rs), 0, cfg};
      CHECK_OK(weft_spawn(&t[k], tree_task, &roots[k]));
    }
    CHECK_OK(weft_gather(t, (size_t)at_once, res));
    for (int k = 0; k < at_once; k++) {
      weft_task_release(t[k]);
      long want = tree_size_sequential(roots[k].seed, 0);
      CHECK((long)(intptr_t)res[k] == want, "tree 0x%llx counted %ld nodes, has %ld",
            (unsigned long long)roots[k].seed, (long)(intptr_t)res[k], want);
      fo->nodes += want;
    }
  }
  return NULL;
}

uint64_t stress_gather_trees(const stress_config_t *cfg) {
  forest_t fo = {cfg, SIZE(300000, 20000, cfg->scale), 0};
  weft_runtime_t *rt = make_runtime(SCENARIO, cfg);
  weft_task_t *t;
  CHECK_OK(weft_runtime_spawn(rt, &t, forest_main, &fo));
  CHECK_OK(weft_join(t, NULL));
  CHECK_OK(weft_runtime_destroy(rt));
  return (uint64_t)fo.nodes;
}

/* ---- 3. Chaos: sleep, yield, spawn, await at random --------------------------------------- */

#undef SCENARIO
#define SCENARIO chaos->name

typedef struct chaos {
  const char *name;
  const stress_config_t *cfg;
  weft_runtime_t *rt;
  ledger_t ledger;
  atomic_long next_id;     /* ledger indices handed out */
  atomic_long outstanding; /* spawned tasks not yet finished, +1 held by the root */
  atomic_long ran;
  weft_future_t *all_done;
  long ran_trigger; /* shutdown: resolve `triggered` when this many tasks have run */
  weft_future_t *triggered;
  int steps;
  bool forever; /* shutdown: actors never end by themselves; destroy cancels and unwinds them */
  bool cancels; /* cancel: actors cancel children, await with cancelling deadlines, use groups */
  atomic_int stopping;
  struct actor *actors; /* one per ledger entry: discarded tasks leave nothing to free */
} chaos_t;

typedef struct actor {
  chaos_t *chaos;
  uint64_t seed;
  int depth;
  long id;
} actor_t;

static void *actor(void *arg);

static void chaos_count_run(chaos_t *chaos) {
  const stress_config_t *cfg = chaos->cfg;
  long ran = atomic_fetch_add_explicit(&chaos->ran, 1, memory_order_relaxed) + 1;
  if (chaos->triggered && ran == chaos->ran_trigger)
    CHECK_OK(weft_future_resolve(chaos->triggered, NULL));
}

static void chaos_finish_one(chaos_t *chaos) {
  const stress_config_t *cfg = chaos->cfg;
  if (atomic_fetch_sub_explicit(&chaos->outstanding, 1, memory_order_acq_rel) != 1) return;
  int err = weft_future_resolve(chaos->all_done, NULL);
  /* Shutdown: the main thread resolves it before destroy, and a root whose spawns all met
   * the shutdown (WEFT_ESHUTDOWN) ends its empty gather right after (seen in the soak). */
  CHECK(err == 0 || (err == WEFT_EALREADY && chaos->forever), "resolve: %s", weft_err_name(err));
}

/* The next ledger entry for a new actor, counted outstanding before it can end; NULL when the
 * ledger is full. */
static actor_t *claim_actor(chaos_t *chaos, uint64_t seed, int depth, long *id_out) {
  long id = atomic_fetch_add_explicit(&chaos->next_id, 1, memory_order_relaxed);
  if (id_out) *id_out = id;
  if (id >= chaos->ledger.n) return NULL;
  actor_t *a = &chaos->actors[id];
  *a = (actor_t){chaos, seed, depth, id};
  atomic_fetch_add_explicit(&chaos->outstanding, 1, memory_order_relaxed); /* before it can end */
  return a;
}

/* Spawns a child actor (detached if handle is NULL). Returns the spawn's error: during
 * shutdown WEFT_ESHUTDOWN is the only allowed one. */
static int spawn_actor_id(chaos_t *chaos, weft_task_t **handle, uint64_t seed, int depth,
                          long *id_out) {
  const stress_config_t *cfg = chaos->cfg;
  actor_t *a = claim_actor(chaos, seed, depth, id_out);
  if (!a) return WEFT_EAGAIN; /* ledger full: the caller carries on */
  int err = weft_spawn(handle, actor, a);
  if (err) {
    CHECK(err == WEFT_ESHUTDOWN && chaos->forever, "spawn: %s", weft_err_name(err));
    atomic_fetch_sub_explicit(&chaos->outstanding, 1, memory_order_relaxed);
  }
  return err;
}

/* WEFT_ECANCELED is allowed where something cancels: a shutdown, or the cancel scenario. */
#define CHECK_STEP(expr)                                                                     \
  do {                                                                                       \
    int step_err_ = (expr);                                                                  \
    CHECK(step_err_ == 0 || (step_err_ == WEFT_ECANCELED && (chaos->forever || chaos->cancels)), \
          "%s: %s", #expr, weft_err_name(step_err_));                                        \
    if (step_err_) return step_err_;                                                         \
  } while (0)

static int spawn_into_group(chaos_t *chaos, weft_group_t *g, uint64_t seed, int depth,
                            long *id_out);

static int spawn_actor(chaos_t *chaos, weft_task_t **handle, uint64_t seed, int depth) {
  return spawn_actor_id(chaos, handle, seed, depth, NULL);
}

/* An actor cancelled before it started never runs, so never counts itself finished: whoever
 * saw it end does, for the outstanding count to reach zero. */
static void finish_if_never_ran(chaos_t *chaos, long id) {
  if (id < chaos->ledger.n && !atomic_load_explicit(&chaos->ledger.ran[id], memory_order_relaxed))
    chaos_finish_one(chaos);
}

/* Awaits (and releases) a child actor, in one of the ways the scenario allows. */
static int await_child(chaos_t *chaos, weft_task_t *child, long id, uint64_t *rs) {
  const stress_config_t *cfg = chaos->cfg;
  int err = 0;
  if (chaos->cancels && below(rs, 4) == 0) weft_cancel(child);
  if (below(rs, 2)) {
    err = chaos->cancels && below(rs, 2) ? weft_await_for(child, below(rs, 200000), NULL)
                                         : weft_await_timeout(child, below(rs, 200000), NULL);
    CHECK(err == 0 || err == WEFT_ETIMEDOUT ||
              (err == WEFT_ECANCELED && (chaos->forever || chaos->cancels)),
          "await with a deadline: %s", weft_err_name(err));
  }
  void *r;
  err = weft_await(child, &r);
  CHECK(err == 0 || (err == WEFT_ECANCELED && (chaos->forever || chaos->cancels)),
        "await: %s", weft_err_name(err));
  if (!err) {
    void *again; /* awaiting a finished task again: the same result at once */
    CHECK_OK(weft_await(child, &again));
    CHECK(again == r, "a second await returned another result");
  }
  if (!weft_task_done(child)) { /* we were cancelled mid-await: it must end before we go */
    weft_cancel(child);
    CHECK_OK(weft_shield_begin());
    weft_await(child, NULL);
    weft_shield_end();
  }
  weft_task_release(child);
  finish_if_never_ran(chaos, id);
  return weft_cancelling() ? WEFT_ECANCELED : 0;
}

static int spawn_into_group(chaos_t *chaos, weft_group_t *g, uint64_t seed, int depth,
                            long *id_out) {
  const stress_config_t *cfg = chaos->cfg;
  long id;
  actor_t *a = claim_actor(chaos, seed, depth, &id);
  *id_out = -1;
  if (!a) return WEFT_EAGAIN;
  int err = weft_group_spawn(g, actor, a);
  if (!err) *id_out = id;
  if (err) { /* a cancelled group, or a shutdown */
    CHECK(err == WEFT_ECANCELED || (err == WEFT_ESHUTDOWN && chaos->forever), "group spawn: %s",
          weft_err_name(err));
    atomic_fetch_sub_explicit(&chaos->outstanding, 1, memory_order_relaxed);
  }
  return err;
}

static int actor_step(chaos_t *chaos, actor_t *self, uint64_t *rs) {
  const stress_config_t *cfg = chaos->cfg;
  switch (below(rs, chaos->cancels ? 7 : 6)) {
  case 0:
    CHECK_STEP(weft_yield());
    break;
  case 1:
    CHECK_STEP(weft_sleep_ns(below(rs, 300000)));
    break;
  case 2:
    if (self->depth < 3) spawn_actor(chaos, NULL, rnd(rs), self->depth + 1); /* detached */
    break;
  case 3:
  case 4: {
    weft_task_t *child;
    long id;
    if (self->depth >= 3 || spawn_actor_id(chaos, &child, rnd(rs), self->depth + 1, &id)) break;
    return await_child(chaos, child, id, rs);
  }
  case 6: { /* a group of two children; sometimes cancelled from here */
    if (self->depth >= 3) break;
    weft_group_t *g;
    CHECK_OK(weft_group_create(&g, NULL));
    long ids[2];
    for (int k = 0; k < 2; k++) spawn_into_group(chaos, g, rnd(rs), self->depth + 1, &ids[k]);
    if (below(rs, 4) == 0) weft_group_cancel(g);
    int err = weft_group_wait(g);
    CHECK(err == 0 || err == WEFT_ECANCELED, "group wait: %s", weft_err_name(err));
    weft_group_destroy(g); /* every child has ended now */
    for (int k = 0; k < 2; k++)
      if (ids[k] >= 0) finish_if_never_ran(chaos, ids[k]);
    return weft_cancelling() ? WEFT_ECANCELED : 0;
  }
  default:
    CHECK_STEP(weft_sleep_ns(0));
    break;
  }
  return 0;
}

static void *actor(void *arg) {
  actor_t *self = arg;
  chaos_t *chaos = self->chaos;
  const stress_config_t *cfg = chaos->cfg;
  CHECK(ledger_mark(&chaos->ledger, self->id), "actor %ld ran twice", self->id);
  chaos_count_run(chaos);
  uint64_t rs = self->seed;
  int steps = self->depth == 0 ? chaos->steps : (int)below(&rs, 8);
  /* Shutdown: the top-level actors never end; their descendants do (live tasks stay bounded). */
  bool forever = chaos->forever && self->depth == 0;
  for (int s = 0; forever || s < steps; s++)
    if (actor_step(chaos, self, &rs)) break; /* cancelled: unwind */
  void *result = (void *)(intptr_t)self->id;
  chaos_finish_one(chaos);
  return result;
}

/* The root: starts `actors` top-level actors, gathers them, then waits for every detached
 * descendant through the outstanding count. */
typedef struct chaos_root {
  chaos_t *chaos;
  int actors;
  weft_task_t **handles; /* owned by the scenario: a discarded root leaves nothing to free */
} chaos_root_t;

static void *chaos_root(void *arg) {
  chaos_root_t *root = arg;
  chaos_t *chaos = root->chaos;
  const stress_config_t *cfg = chaos->cfg;
  uint64_t rs = cfg->seed;
  weft_task_t **t = root->handles;
  int started = 0;
  for (int k = 0; k < root->actors; k++)
    if (spawn_actor(chaos, &t[started], rnd(&rs), 0) == 0) started++;
  bool cancellable = chaos->forever || chaos->cancels;
  int err = weft_gather(t, (size_t)started, NULL);
  CHECK(err == 0 || (err == WEFT_ECANCELED && cancellable), "gather: %s", weft_err_name(err));
  if (err && chaos->forever) /* the shutdown cancelled us: the actors unwind on their own */
    for (int k = 0; k < started; k++) weft_cancel(t[k]);
  for (int k = 0; k < started; k++) weft_task_release(t[k]);
  chaos_finish_one(chaos); /* the root's own count */
  err = weft_future_await(chaos->all_done, NULL); /* a shutdown's cancel unwinds this wait */
  CHECK(err == 0 || (err == WEFT_ECANCELED && chaos->forever), "await all_done: %s",
        weft_err_name(err));
  return NULL;
}

static void chaos_init(chaos_t *chaos, const char *name, const stress_config_t *cfg, long capacity) {
  *chaos = (chaos_t){.name = name, .cfg = cfg};
  ledger_init(&chaos->ledger, capacity);
  chaos->actors = calloc((size_t)capacity, sizeof *chaos->actors);
  atomic_init(&chaos->outstanding, 1);
  CHECK_OK(weft_future_create(&chaos->all_done));
}

static void chaos_free(chaos_t *chaos) {
  weft_future_destroy(chaos->all_done);
  free((void *)chaos->ledger.ran);
  free(chaos->actors);
}

/* The chaos scenario, and with `cancels` the cancel one: random cancels, cancelling deadlines,
 * groups; an actor cancelled before it started runs zero times, so the ledger then checks at
 * most once, and the shutdown afterwards must find nothing left (no task abandoned). */
static uint64_t run_chaos(const stress_config_t *cfg, const char *name, bool cancels) {
  chaos_t c, *chaos = &c;
  chaos_init(chaos, name, cfg, SIZE(400000, 40000, cfg->scale) + 64);
  chaos->steps = 24;
  chaos->cancels = cancels;
  int actors = (int)SIZE_LIVE(2000, 200, cfg->scale) + 1;
  chaos_root_t root = {chaos, actors, calloc((size_t)actors, sizeof(weft_task_t *))};
  chaos->rt = make_runtime(SCENARIO, cfg);
  weft_task_t *t;
  CHECK_OK(weft_runtime_spawn(chaos->rt, &t, chaos_root, &root));
  CHECK_OK(weft_join(t, NULL));
  weft_stats_t st = WEFT_STATS_INIT;
  CHECK_OK(weft_runtime_shutdown(chaos->rt, UINT64_MAX)); /* everything already ended */
  CHECK_OK(weft_runtime_stats(chaos->rt, &st));
  CHECK(st.tasks_abandoned == 0, "%llu tasks abandoned", (unsigned long long)st.tasks_abandoned);
  CHECK_OK(weft_runtime_destroy(chaos->rt));
  long spawned = atomic_load(&chaos->next_id);
  if (spawned > chaos->ledger.n) spawned = chaos->ledger.n;
  long bad = ledger_first_bad(&chaos->ledger, spawned, cancels);
  CHECK(bad < 0, "actor %ld ran %d times", bad, bad < 0 ? 0 : (int)chaos->ledger.ran[bad]);
  chaos_free(chaos);
  free(root.handles);
  return (uint64_t)atomic_load(&chaos->ran);
}

uint64_t stress_chaos(const stress_config_t *cfg) { return run_chaos(cfg, "chaos", false); }

/* ---- 3b. Cancellation: random cancels, cancelling deadlines, groups ----------------------- */

uint64_t stress_cancel(const stress_config_t *cfg) { return run_chaos(cfg, "cancel", true); }

/* ---- 4. Shutdown in the middle of all of it ----------------------------------------------- */

typedef struct spawner {
  chaos_t *chaos;
  pthread_t thread;
  long spawned;
} spawner_t;

static void *counted_leaf(void *arg) {
  chaos_count_run(arg);
  return NULL;
}

/* A thread that is not a worker, spawning detached tasks until told to stop. */
static void *foreign_spawner(void *arg) {
  spawner_t *sp = arg;
  chaos_t *chaos = sp->chaos;
  const stress_config_t *cfg = chaos->cfg;
  while (!atomic_load_explicit(&chaos->stopping, memory_order_acquire)) {
    CHECK_OK(weft_runtime_spawn(chaos->rt, NULL, counted_leaf, chaos));
    if (++sp->spawned % 64 == 0) sched_yield(); /* leave the workers some of the CPU */
  }
  return NULL;
}

uint64_t stress_shutdown_mid_flight(const stress_config_t *cfg) {
  enum { SPAWNERS = 2 };
  chaos_t c, *chaos = &c;
  chaos_init(chaos, "shutdown_mid_flight", cfg, SIZE(200000, 20000, cfg->scale) + 64);
  chaos->forever = true;
  uint64_t rs = cfg->seed;
  chaos->ran_trigger = 1 + (long)below(&rs, (uint64_t)SIZE(20000, 2000, cfg->scale) + 1);
  CHECK_OK(weft_future_create(&chaos->triggered));
  int actors = (int)SIZE(500, 100, cfg->scale) + 1;
  chaos_root_t root = {chaos, actors, calloc((size_t)actors, sizeof(weft_task_t *))};
  chaos->rt = make_runtime(SCENARIO, cfg);
  weft_task_t *t;
  CHECK_OK(weft_runtime_spawn(chaos->rt, &t, chaos_root, &root));
  weft_task_release(t); /* the root never ends: destroy discards it */
  spawner_t sp[SPAWNERS];
  for (int k = 0; k < SPAWNERS; k++) {
    sp[k] = (spawner_t){chaos, 0, 0};
    CHECK(pthread_create(&sp[k].thread, NULL, foreign_spawner, &sp[k]) == 0, "pthread_create");
  }
  CHECK_OK(weft_future_await(chaos->triggered, NULL)); /* mid-flight: a random number has run */
  atomic_store_explicit(&chaos->stopping, 1, memory_order_release);
  for (int k = 0; k < SPAWNERS; k++) pthread_join(sp[k].thread, NULL); /* rt must outlive them */
  /* No future is resolved first: destroy cancels every task, the ones blocked on all_done
   * included, and they unwind; none is left to discard. */
  CHECK_OK(weft_runtime_destroy(chaos->rt));
  long spawned = atomic_load(&chaos->next_id);
  if (spawned > chaos->ledger.n) spawned = chaos->ledger.n;
  long bad = ledger_first_bad(&chaos->ledger, spawned, true);
  CHECK(bad < 0, "actor %ld ran %d times", bad, bad < 0 ? 0 : (int)chaos->ledger.ran[bad]);
  weft_future_destroy(chaos->triggered);
  chaos_free(chaos);
  free(root.handles);
  return (uint64_t)atomic_load(&chaos->ran);
}

/* ---- 6. Channel chains (issue 11) ---------------------------------------------------------- */

#undef SCENARIO
#define SCENARIO "channels"

/* Producers (tasks and foreign threads) feed a rendezvous channel; relay tasks move each value
 * on to a buffered one, through a mutex-guarded counter; sinks (tasks and a foreign thread)
 * mark each value in a ledger. Sends and receives take short random deadlines that race the
 * hand-offs (a timed-out send is retried, so no value is lost); every value must arrive exactly
 * once and the mutex's count must match. */
enum { CHAIN_PRODUCERS = 3, CHAIN_THREADS = 2, CHAIN_RELAYS = 3, CHAIN_SINKS = 2 };

typedef struct chain {
  const stress_config_t *cfg;
  weft_chan_t *first, *second;
  weft_mutex_t *mutex;
  long relayed; /* under mutex */
  long per;     /* values per producer */
  ledger_t ledger;
  _Atomic int producers_left, relays_left;
} chain_t;

typedef struct chain_arg {
  chain_t *chain;
  long base;
  uint64_t seed;
} chain_arg_t;

/* A deadline 0-50 us ahead, or none. */
static uint64_t chain_deadline(uint64_t *rs) {
  uint64_t r = below(rs, 4);
  return r == 0 ? UINT64_MAX : weft_now_ns() + below(rs, 50000);
}

static void chain_send(chain_t *c, weft_chan_t *ch, long v, uint64_t *rs) {
  const stress_config_t *cfg = c->cfg;
  int err;
  while ((err = weft_chan_send(ch, (void *)(intptr_t)(v + 1), chain_deadline(rs))) == WEFT_ETIMEDOUT) {}
  CHECK(err == 0, "send of %ld: %s", v, weft_err_name(err));
}

/* 0 with *v, or WEFT_ECLOSED once the channel is drained. */
static int chain_recv(chain_t *c, weft_chan_t *ch, long *v, uint64_t *rs) {
  const stress_config_t *cfg = c->cfg;
  void *got;
  int err;
  while ((err = weft_chan_recv(ch, &got, chain_deadline(rs))) == WEFT_ETIMEDOUT) {}
  CHECK(err == 0 || err == WEFT_ECLOSED, "recv: %s", weft_err_name(err));
  if (!err) *v = (long)(intptr_t)got - 1;
  return err;
}

static void *chain_producer(void *arg) {
  chain_arg_t *a = arg;
  chain_t *c = a->chain;
  uint64_t rs = a->seed;
  for (long i = 0; i < c->per; i++) chain_send(c, c->first, a->base + i, &rs);
  if (atomic_fetch_sub(&c->producers_left, 1) == 1) weft_chan_close(c->first);
  return NULL;
}

static void *chain_relay(void *arg) {
  chain_arg_t *a = arg;
  chain_t *c = a->chain;
  uint64_t rs = a->seed;
  long v;
  while (chain_recv(c, c->first, &v, &rs) == 0) {
    weft_mutex_lock(c->mutex, UINT64_MAX);
    c->relayed++;
    weft_mutex_unlock(c->mutex);
    chain_send(c, c->second, v, &rs);
  }
  if (atomic_fetch_sub(&c->relays_left, 1) == 1) weft_chan_close(c->second);
  return NULL;
}

static void *chain_sink(void *arg) {
  chain_arg_t *a = arg;
  chain_t *c = a->chain;
  const stress_config_t *cfg = c->cfg;
  uint64_t rs = a->seed;
  long v;
  while (chain_recv(c, c->second, &v, &rs) == 0) {
    CHECK(v >= 0 && v < c->ledger.n, "value %ld out of range", v);
    CHECK(ledger_mark(&c->ledger, v), "value %ld delivered twice", v);
  }
  return NULL;
}

uint64_t stress_channels(const stress_config_t *cfg) {
  weft_runtime_t *rt = make_runtime(SCENARIO, cfg);
  chain_t c = {.cfg = cfg, .per = SIZE(20000, 1000, cfg->scale)};
  if (c.per < 1) c.per = 1;
  long total = (CHAIN_PRODUCERS + CHAIN_THREADS) * c.per;
  ledger_init(&c.ledger, total);
  CHECK_OK(weft_chan_create(&c.first, 0));
  CHECK_OK(weft_chan_create(&c.second, 8));
  CHECK_OK(weft_mutex_create(&c.mutex));
  atomic_init(&c.producers_left, CHAIN_PRODUCERS + CHAIN_THREADS);
  atomic_init(&c.relays_left, CHAIN_RELAYS);
  enum { TASKS = CHAIN_PRODUCERS + CHAIN_RELAYS + CHAIN_SINKS };
  chain_arg_t args[TASKS + CHAIN_THREADS + 1];
  uint64_t rs = cfg->seed;
  for (int i = 0; i < TASKS + CHAIN_THREADS + 1; i++)
    args[i] = (chain_arg_t){&c, 0, rnd(&rs)};
  weft_task_t *t[TASKS];
  int k = 0;
  for (int i = 0; i < CHAIN_SINKS; i++, k++) CHECK_OK(weft_runtime_spawn(rt, &t[k], chain_sink, &args[k]));
  for (int i = 0; i < CHAIN_RELAYS; i++, k++) CHECK_OK(weft_runtime_spawn(rt, &t[k], chain_relay, &args[k]));
  /* the producers' arguments carry their value ranges */
  chain_arg_t prod[CHAIN_PRODUCERS + CHAIN_THREADS];
  for (int i = 0; i < CHAIN_PRODUCERS + CHAIN_THREADS; i++)
    prod[i] = (chain_arg_t){&c, (long)i * c.per, rnd(&rs)};
  for (int i = 0; i < CHAIN_PRODUCERS; i++, k++)
    CHECK_OK(weft_runtime_spawn(rt, &t[k], chain_producer, &prod[i]));
  pthread_t th[CHAIN_THREADS + 1];
  for (int i = 0; i < CHAIN_THREADS; i++)
    CHECK(pthread_create(&th[i], NULL, chain_producer, &prod[CHAIN_PRODUCERS + i]) == 0, "pthread_create");
  CHECK(pthread_create(&th[CHAIN_THREADS], NULL, chain_sink, &args[TASKS]) == 0, "pthread_create");
  for (int i = 0; i < TASKS; i++) CHECK_OK(weft_join(t[i], NULL));
  for (int i = 0; i <= CHAIN_THREADS; i++) pthread_join(th[i], NULL);
  long bad = ledger_first_bad(&c.ledger, total, false);
  CHECK(bad < 0, "value %ld arrived %d times", bad, bad < 0 ? 0 : (int)c.ledger.ran[bad]);
  CHECK(c.relayed == total, "the mutex counted %ld relays of %ld", c.relayed, total);
  CHECK_OK(weft_runtime_destroy(rt));
  weft_chan_destroy(c.first);
  weft_chan_destroy(c.second);
  weft_mutex_destroy(c.mutex);
  free(c.ledger.ran);
  return (uint64_t)total;
}

/* ---- 7. Sockets (issue 12) ------------------------------------------------------------------ */

/* Echo clients over loopback against an accept loop and a task per connection, each client
 * doing something different by the seed: complete round trips of random sizes (checked byte
 * for byte), a close mid-conversation, a read with a deadline that passes, a cancel while
 * blocked. Invariants: every echo is exact, every connection task ends (its client's close,
 * reset or the server's cancel), the acceptor answers a close of its listener with WEFT_EBADF,
 * and every client ran exactly once. */
#undef SCENARIO
#define SCENARIO "sockets"

typedef struct sock_stress {
  const stress_config_t *cfg;
  weft_sock_t *listener;
  weft_group_t *conns;
  ledger_t ledger;
  atomic_long accepted, exact, timed_out, cancelled;
} sock_stress_t;

typedef struct sock_client {
  sock_stress_t *st;
  long index;
  uint64_t seed;
} sock_client_t;

static void *sock_echo(void *arg) {
  weft_sock_t *c = arg;
  char buf[2048];
  ptrdiff_t n;
  while ((n = weft_sock_read(c, buf, sizeof buf, UINT64_MAX)) > 0)
    if (weft_sock_write(c, buf, (size_t)n, NULL, UINT64_MAX) != 0) break;
  weft_sock_close(c);
  return NULL;
}

static void *sock_acceptor(void *arg) {
  sock_stress_t *st = arg;
  const stress_config_t *cfg = st->cfg;
  for (;;) {
    weft_sock_t *c;
    int err = weft_sock_accept(st->listener, &c, NULL, NULL, UINT64_MAX);
    if (err == WEFT_EBADF) return NULL; /* the listener was closed: done */
    CHECK(!err, "accept: %s", weft_err_name(err));
    atomic_fetch_add(&st->accepted, 1);
    CHECK_OK(weft_group_spawn(st->conns, sock_echo, c));
  }
}

/* One client's conversation; returns its outcome's counter. */
static atomic_long *sock_converse(sock_client_t *cl, weft_sock_t *c, char *out, char *in) {
  sock_stress_t *st = cl->st;
  const stress_config_t *cfg = st->cfg;
  uint64_t rs = cl->seed;
  int rounds = 1 + (int)below(&rs, 6);
  bool abrupt = below(&rs, 8) == 0, short_deadline = below(&rs, 8) == 0;
  for (int r = 0; r < rounds; r++) {
    size_t len = 1 + (size_t)below(&rs, 6000);
    for (size_t i = 0; i < len; i++) out[i] = (char)rnd(&rs);
    int err = weft_sock_write(c, out, len, NULL, UINT64_MAX);
    if (err == WEFT_ECANCELED) return &st->cancelled;
    CHECK(!err, "write: %s", weft_err_name(err));
    if (abrupt && r == rounds - 1) return &st->exact; /* closes without reading the echo */
    size_t got = 0;
    while (got < len) {
      ptrdiff_t n = weft_sock_read(c, in + got, len - got, UINT64_MAX);
      if (n == WEFT_ECANCELED) return &st->cancelled;
      CHECK(n > 0, "read: %s", n ? weft_err_name((int)n) : "end of stream");
      got += (size_t)n;
    }
    CHECK(memcmp(in, out, len) == 0, "client %ld got bytes that were not its own", cl->index);
  }
  if (short_deadline) { /* nothing more comes: the deadline must pass */
    ptrdiff_t n = weft_sock_read(c, in, 1, weft_now_ns() + 1000000u);
    if (n == WEFT_ECANCELED) return &st->cancelled;
    CHECK(n == WEFT_ETIMEDOUT, "an idle read answered %ld", (long)n);
    return &st->timed_out;
  }
  return &st->exact;
}

static void *sock_client(void *arg) {
  sock_client_t *cl = arg;
  sock_stress_t *st = cl->st;
  const stress_config_t *cfg = st->cfg;
  CHECK(ledger_mark(&st->ledger, cl->index), "client %ld ran twice", cl->index);
  struct sockaddr_storage ss;
  socklen_t len;
  CHECK_OK(weft_sock_addr("127.0.0.1", (uint16_t)weft_sock_port(st->listener), &ss, &len));
  weft_sock_t *c;
  int err = weft_sock_connect(NULL, (struct sockaddr *)&ss, len, UINT64_MAX, &c);
  if (err == WEFT_ECANCELED) {
    atomic_fetch_add(&st->cancelled, 1);
    return NULL;
  }
  CHECK(!err, "connect: %s", weft_err_name(err));
  char *bufs = malloc(2 * 6000);
  atomic_fetch_add(sock_converse(cl, c, bufs, bufs + 6000), 1);
  free(bufs);
  CHECK_OK(weft_sock_close(c));
  return NULL;
}

uint64_t stress_sockets(const stress_config_t *cfg) {
  weft_runtime_t *rt = make_runtime(SCENARIO, cfg);
  sock_stress_t st = {.cfg = cfg};
  long n = SIZE(400, 60, cfg->scale);
  ledger_init(&st.ledger, n);
  struct sockaddr_storage ss;
  socklen_t len;
  CHECK_OK(weft_sock_addr("127.0.0.1", 0, &ss, &len));
  CHECK_OK(weft_sock_listen(rt, (struct sockaddr *)&ss, len, 0, 0, &st.listener));
  CHECK_OK(weft_group_create(&st.conns, rt));
  weft_task_t *acceptor;
  CHECK_OK(weft_runtime_spawn(rt, &acceptor, sock_acceptor, &st));
  sock_client_t *cls = calloc((size_t)n, sizeof *cls);
  weft_task_t **ts = calloc((size_t)n, sizeof *ts);
  uint64_t rs = cfg->seed;
  for (long i = 0; i < n; i++) {
    cls[i] = (sock_client_t){&st, i, rnd(&rs)};
    CHECK_OK(weft_runtime_spawn(rt, &ts[i], sock_client, &cls[i]));
  }
  for (long i = 0; i < n; i++) { /* one in 8 is cancelled wherever it is */
    if (below(&rs, 8) == 0) weft_cancel(ts[i]);
  }
  for (long i = 0; i < n; i++) {
    int err = weft_join(ts[i], NULL);
    CHECK(err == 0 || err == WEFT_ECANCELED, "client %ld: %s", i, weft_err_name(err));
  }
  CHECK_OK(weft_sock_close(st.listener));
  CHECK_OK(weft_join(acceptor, NULL));
  CHECK_OK(weft_group_wait(st.conns)); /* every connection task saw its client go */
  weft_group_destroy(st.conns);
  long bad = ledger_first_bad(&st.ledger, n, true); /* a client cancelled unstarted never runs */
  CHECK(bad < 0, "client %ld ran %d times", bad, bad < 0 ? 0 : (int)st.ledger.ran[bad]);
  long ran = 0;
  for (long i = 0; i < n; i++) ran += atomic_load_explicit(&st.ledger.ran[i], memory_order_relaxed);
  long outcomes = atomic_load(&st.exact) + atomic_load(&st.timed_out) + atomic_load(&st.cancelled);
  CHECK(outcomes == ran, "%ld clients ended, %ld ran", outcomes, ran);
  CHECK_OK(weft_runtime_destroy(rt));
  free((void *)st.ledger.ran);
  free(cls);
  free(ts);
  return (uint64_t)(ran + atomic_load(&st.accepted));
}

const stress_scenario_t stress_scenarios[] = {
    {"foreign_flood", stress_foreign_flood},
    {"gather_trees", stress_gather_trees},
    {"chaos", stress_chaos},
    {"cancel", stress_cancel},
    {"shutdown_mid_flight", stress_shutdown_mid_flight},
    {"channels", stress_channels}, /* issue 11 */
    {"sockets", stress_sockets},   /* issue 12 */
};
const int stress_scenario_count = sizeof stress_scenarios / sizeof *stress_scenarios;
