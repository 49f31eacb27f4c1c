/* Exhaustion and fault injection: every allocation that can fail does, one at a time, and the
 * runtime must report it, keep running, lose no task and run none twice, and leak nothing. */
#include "support.h"

#include "../lib/internal.h" /* test-only fault injection hooks */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>

static void *one(void *arg) { return arg; }

/* The runtime still runs tasks after whatever failed before. */
static void assert_still_runs(weft_runtime_t *rt) {
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, one, IPTR(9)));
  void *r;
  OK(weft_join(t, &r));
  cr_assert_eq(PINT(r), 9);
}

#if TEST_ASAN
#define ASSERT_NO_LEAKS(what) cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, what " leaked")
#else
#define ASSERT_NO_LEAKS(what) ((void)0)
#endif

/* ---- The sweep: the n-th allocation fails, for every n over a spawn+gather workload ---- */

/* A complete tree of fan-out 3 and depth 5 (364 nodes, 363 spawns): each node spawns its
 * children and gathers them. A child whose spawn fails is computed by a plain call instead, and
 * one that ended unrun (no stack at start) likewise: the tree's size comes out right only if
 * no node is lost, and the ledger shows no node ran twice. */
enum { FAN = 3, DEPTH = 5, NODES = 364 };

typedef struct sweep {
  _Atomic unsigned char ran[NODES];
  atomic_long failed_spawns; /* WEFT_ENOMEM from a spawn */
  atomic_long unrun;         /* awaits that returned WEFT_ENOMEM: the child never ran */
} sweep_t;
static sweep_t sweep;

static int depth_of(long id) {
  int d = 0;
  for (; id > 0; id = (id - 1) / FAN) d++;
  return d;
}

static void *node(void *arg);

static long child_by_call(long id) { return PINT(node(IPTR(id))); }

static void *node(void *arg) {
  long id = PINT(arg);
  cr_assert_eq(atomic_fetch_add(&sweep.ran[id], 1), 0, "node %ld ran twice", id);
  if (depth_of(id) == DEPTH) return IPTR(1);
  weft_task_t *t[FAN];
  long kid[FAN], size = 1;
  int spawned = 0;
  for (int k = 0; k < FAN; k++) {
    long c = FAN * id + 1 + k;
    int err = weft_spawn(&t[spawned], node, IPTR(c));
    if (err == 0) {
      kid[spawned++] = c;
      continue;
    }
    cr_assert_eq(err, WEFT_ENOMEM, "spawn failed with %s", weft_err_name(err));
    atomic_fetch_add(&sweep.failed_spawns, 1);
    size += child_by_call(c);
  }
  /* Even nodes gather (newest first: children run inline on this stack); odd nodes await the
   * oldest first, so the others are started by the scheduler on stacks of their own. */
  if (id % 2 == 0) { /* the first error in order: a child that found no stack ended unrun */
    int err = weft_gather(t, (size_t)spawned, NULL);
    cr_assert(err == 0 || err == WEFT_ENOMEM, "gather: %s", weft_err_name(err));
  }
  for (int k = 0; k < spawned; k++) {
    void *r;
    int err = weft_join(t[k], &r);
    if (err == WEFT_ENOMEM) { /* ended unrun: it is ours to compute */
      atomic_fetch_add(&sweep.unrun, 1);
      size += child_by_call(kid[k]);
    } else {
      cr_assert_eq(err, 0, "await: %s", weft_err_name(err));
      size += PINT(r);
    }
  }
  return IPTR(size);
}

typedef struct sweep_run {
  int kind;
  long nth;
} sweep_run_t;

static void *sweep_root(void *arg) {
  sweep_run_t *run = arg;
  memset(&sweep, 0, sizeof sweep);
  weft__fault_set(run->kind, run->nth); /* counting starts with this tree's allocations */
  long size = PINT(node(IPTR(0)));
  weft__fault_set(run->kind, 0);
  return IPTR(size);
}

static void sweep_kind(int kind, const char *name, long *hits) {
  weft_runtime_t *rt = test_runtime(3); /* more workers than cores: races between spawners */
  /* Under TSan each n costs ~30 ms: sample the range there, cover it all elsewhere. */
  long step = TEST_TSAN ? 7 : 1;
  for (long n = 1; n <= 400; n += step) {
    sweep_run_t run = {kind, n};
    weft_stats_t before = WEFT_STATS_INIT, after = WEFT_STATS_INIT;
    OK(weft_runtime_stats(rt, &before));
    weft_task_t *root;
    OK(weft_runtime_spawn(rt, &root, sweep_root, &run));
    void *size;
    OK(weft_join(root, &size));
    OK(weft_runtime_stats(rt, &after));
    cr_assert_eq(PINT(size), NODES, "%s fault at n=%ld: the tree counted %ld nodes", name, n,
                 PINT(size));
    for (int i = 0; i < NODES; i++)
      cr_assert_eq(atomic_load(&sweep.ran[i]), 1, "%s fault at n=%ld: node %d ran %d times", name,
                   n, i, atomic_load(&sweep.ran[i]));
    long failed = atomic_load(&sweep.failed_spawns), unrun = atomic_load(&sweep.unrun);
    cr_assert_eq(after.tasks_unrun - before.tasks_unrun, (uint64_t)unrun,
                 "%s fault at n=%ld: the unrun count disagrees with the awaits", name, n);
    if (kind == WEFT__FAULT_STACK_START) {
      cr_assert_eq(failed, 0, "a fault at start failed a spawn");
      cr_assert_leq(unrun, 1, "%s fault at n=%ld: %ld tasks unrun", name, n, unrun);
      *hits += unrun;
    } else {
      /* 363 spawns: every n up to there fails exactly one of them. */
      cr_assert_eq(failed, n <= NODES - 1 ? 1 : 0, "%s fault at n=%ld: %ld spawns failed", name, n,
                   failed);
      cr_assert_eq(unrun, 0);
      *hits += failed;
    }
  }
  assert_still_runs(rt);
  OK(weft_runtime_destroy(rt));
}

Test(faults, nth_stack_check_fails_for_every_n, .timeout = 300) {
  long hits = 0;
  sweep_kind(WEFT__FAULT_STACK, "stack", &hits);
  cr_assert_gt(hits, 0);
  ASSERT_NO_LEAKS("the stack sweep");
}

Test(faults, nth_descriptor_fails_for_every_n, .timeout = 300) {
  long hits = 0;
  sweep_kind(WEFT__FAULT_TASK, "descriptor", &hits);
  cr_assert_gt(hits, 0);
  ASSERT_NO_LEAKS("the descriptor sweep");
}

Test(faults, nth_stack_at_start_fails_for_every_n, .timeout = 300) {
  long hits = 0;
  sweep_kind(WEFT__FAULT_STACK_START, "stack-at-start", &hits);
  cr_assert_gt(hits, 10, "only %ld of the sweep's faults met a task start", hits);
  ASSERT_NO_LEAKS("the start sweep");
}

Test(faults, nth_worker_thread_fails) {
  enum { W = 4 };
  for (long n = 1; n <= W; n++) {
    weft__fault_set(WEFT__FAULT_THREAD, n);
    weft_options_t o = WEFT_OPTIONS_INIT;
    o.workers = W;
    weft_runtime_t *rt = NULL;
    cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_EAGAIN, "thread %ld of %d failed", n, W);
    cr_assert_null(rt, "a failed create handed out a runtime");
  }
  weft__fault_set(WEFT__FAULT_THREAD, 0);
  weft_runtime_t *rt = test_runtime(W); /* nothing left behind stops the next one */
  assert_still_runs(rt);
  OK(weft_runtime_destroy(rt));
  ASSERT_NO_LEAKS("failed runtime creation");
}

/* ---- Diagnostics are allocated per slab, on first use (#13, session 15) ---- */

/* A task whose slab has no diagnostics array yet (the fault makes its allocation fail): a
 * name and a deadline scope are refused with WEFT_ENOMEM, the task keeps running and nothing is
 * half set; once memory is back, both work and the name reads back. */
static void *diag_refused(void *arg) {
  (void)arg;
  weft_task_t *self = weft_current();
  weft__fault_set(WEFT__FAULT_DIAG, 1);
  cr_assert_eq(weft_task_set_name(self, "refused"), WEFT_ENOMEM, "no array: the name is refused");
  cr_assert_null(weft_task_name(self), "a refused name must not read back");
  weft__fault_set(WEFT__FAULT_DIAG, 1);
  weft_deadline_t scope;
  cr_assert_eq(weft_deadline_begin(&scope, weft_now_ns()), WEFT_ENOMEM, "no array: no scope");
  /* nothing begun: a wait is not bounded by the refused (already passed) deadline */
  OK(weft_sleep_ms(1));
  weft__fault_set(WEFT__FAULT_DIAG, 0);
  OK(weft_task_set_name(self, "named"));
  cr_assert_str_eq(weft_task_name(self), "named");
  OK(weft_deadline_begin(&scope, weft_now_ns()));
  cr_assert_eq(weft_sleep_ms(1000), WEFT_ETIMEDOUT, "the scope begun once memory came back");
  cr_assert_eq(weft_deadline_end(&scope), WEFT_ETIMEDOUT);
  return IPTR(1);
}

Test(faults, names_and_scopes_report_enomem_when_their_array_cannot_be_had) {
  unsetenv("WEFT_TRACE"); /* traced spawns would make the array before the test asks for it */
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, diag_refused, NULL));
  void *r;
  OK(weft_join(t, &r));
  cr_assert_eq(PINT(r), 1);
  assert_still_runs(rt);
  OK(weft_runtime_destroy(rt));
  ASSERT_NO_LEAKS("a slab's diagnostics array");
}

/* Names on many slabs' tasks, descriptors freed and reused, the runtime destroyed while one
 * named handle is held (its slab outlives the runtime with its array): every name reads back
 * for its own task only, and no array leaks (the ASan build's leak check). */
static void *named_child(void *arg) {
  OK(weft_task_set_name(weft_current(), arg));
  return arg;
}
Test(faults, names_on_many_slabs_read_back_across_reuse_and_an_orphan) {
  enum { N = 3000 }; /* ~6 slabs of 511 */
  static const char *names[] = {"a", "b", "c"};
  weft_runtime_t *rt = test_runtime(2);
  static weft_task_t *ts[N];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &ts[i], named_child, (void *)names[(i + round) % 3]));
    for (int i = 0; i < N; i++) {
      OK(weft_await(ts[i], NULL));
      cr_assert_str_eq(weft_task_name(ts[i]), names[(i + round) % 3], "task %d's own name", i);
    }
    for (int i = 1; i < N; i++) weft_task_release(ts[i]); /* reused next round */
    if (round == 0) weft_task_release(ts[0]);
  }
  cr_assert_geq(weft__task_diag_arrays(), 5, "%d named tasks: an array per slab of 511", N);
  /* ts[0] of the last round stays held across destroy: an orphan, its name still readable */
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(weft__task_diag_arrays(), 1, "destroy unmaps every array but the orphan's slab's");
  cr_assert_str_eq(weft_task_name(ts[0]), names[1], "an orphan keeps its name");
  weft_task_release(ts[0]);
  cr_assert_eq(weft__task_diag_arrays(), 0, "the orphan's last release unmaps its slab's array");
  ASSERT_NO_LEAKS("slabs' diagnostics arrays");
}

/* The scavenger gives back a slab whose descriptors are all free, and its names array with it;
 * a descriptor reused from that slab has no name, and one that is named again gets a fresh
 * array. Unnamed tasks make no array. */
static void *scoped_named(void *arg) {
  OK(weft_task_set_name(weft_current(), "burst"));
  weft_deadline_t scope;
  OK(weft_deadline_begin(&scope, weft_now_ns() + 3600000000000ull));
  OK(weft_sleep_ms(1));
  OK(weft_deadline_end(&scope));
  return arg;
}
static void *unnamed(void *arg) { return arg; }
static void burst(weft_runtime_t *rt, weft_fn fn, weft_task_t **ts, int n) {
  for (int i = 0; i < n; i++) OK(weft_runtime_spawn(rt, &ts[i], fn, IPTR(i)));
  for (int i = 0; i < n; i++) OK(weft_await(ts[i], NULL));
}
/* .timeout: 63-106 s under gcc TSan on one shared CPU (review, session 35): its 12 000 fiber
 * starts are the cost, not the scavenger's wait. */
Test(faults, the_scavenger_gives_back_names_arrays_with_their_slabs, .timeout = 300) {
  enum { N = 4000, WAIT_S = 30 };
  unsetenv("WEFT_TRACE");
  static weft_task_t *ts[N];
  weft_runtime_t *rt = test_runtime(2);
  burst(rt, scoped_named, ts, N);
  long named = weft__task_diag_arrays();
  cr_assert_geq(named, N / 511, "named tasks on %d slabs", N / 511);
  for (int i = 0; i < N; i++) weft_task_release(ts[i]);
  /* The scavenger runs once the free descriptors have stood still for a second, when a worker
   * parks: wait (bounded) for the arrays to go. */
  uint64_t until = weft_now_ns() + WAIT_S * 1000000000ull;
  while (weft__task_diag_arrays() > 0) {
    cr_assert(weft_now_ns() < until, "%ld of %ld arrays still mapped after %d s",
              weft__task_diag_arrays(), named, WAIT_S);
    usleep(20 * 1000);
  }
  burst(rt, unnamed, ts, N); /* reuses the given-back slabs */
  cr_assert_eq(weft__task_diag_arrays(), 0, "unnamed tasks made a names array");
  for (int i = 0; i < N; i++) {
    cr_assert_null(weft_task_name(ts[i]), "task %d read a name from the slab's last life", i);
    weft_task_release(ts[i]);
  }
  burst(rt, scoped_named, ts, N);
  for (int i = 0; i < N; i++) {
    cr_assert_str_eq(weft_task_name(ts[i]), "burst");
    weft_task_release(ts[i]);
  }
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(weft__task_diag_arrays(), 0, "destroy unmaps every array");
  ASSERT_NO_LEAKS("names arrays through the scavenger");
}

/* ---- Real exhaustion ---- */

static void *hold(void *arg) {
  weft_future_await(arg, NULL);
  return NULL;
}

/* Spawns tasks that hold their stacks until the gate opens, until a spawn is refused; then
 * opens the gate and checks that everything already running finishes. Returns the count. */
static void *spawn_until_refused(void *arg) {
  weft_future_t *gate = arg;
  enum { CAP = 200000 };
  long n = 0;
  weft_task_t **t = malloc(sizeof *t * CAP);
  int err = 0;
  while (n < CAP && !(err = weft_spawn(&t[n], hold, gate))) {
    n++;
    weft_yield(); /* let workers start them, so each takes a stack */
  }
  cr_assert_eq(err, WEFT_ENOMEM, "spawning until exhaustion ended with %s", weft_err_name(err));
  weft_future_resolve(gate, NULL);
  /* Everything already running still finishes; one spawned last may have found no stack at
   * its start and ended unrun (gather reports the first error: WEFT_ENOMEM). */
  err = weft_gather(t, (size_t)n, NULL);
  cr_assert(err == 0 || err == WEFT_ENOMEM, "gather: %s", weft_err_name(err));
  for (long i = 0; i < n; i++) weft_task_release(t[i]);
  free(t);
  return IPTR(n);
}

/* Runs spawn_until_refused on rt, then checks that rt still runs tasks. */
static long exhaust_then_recover(weft_runtime_t *rt) {
  weft_future_t *gate;
  OK(weft_future_create(&gate));
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, spawn_until_refused, gate));
  void *n;
  OK(weft_join(t, &n));
  fprintf(stderr, "exhaustion: %ld tasks held stacks before a spawn was refused\n", PINT(n));
  assert_still_runs(rt);
  weft_future_destroy(gate);
  return PINT(n);
}

/* With the mprotect guard fallback (as on kernels without MADV_GUARD_INSTALL) each stack costs
 * two map entries; a lowered address-space limit makes the mappings run out long before the
 * machine does. */
Test(exhaustion, address_space_limit_makes_spawn_fail_cleanly, .timeout = 120) {
#if TEST_SANITIZED
  cr_skip_test("sanitizer runtimes reserve terabytes of address space: no RLIMIT_AS possible");
#else
  weft__stack_force_mprotect_guards(1);
  weft_runtime_t *rt = test_runtime(2);
  struct rlimit old, lim;
  getrlimit(RLIMIT_AS, &old);
  lim = old;
  lim.rlim_cur = 1ull << 30; /* 1 GiB: ~15k stacks of 64 KiB */
  cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
  long n = exhaust_then_recover(rt);
  setrlimit(RLIMIT_AS, &old);
  cr_assert_gt(n, 100);
  OK(weft_runtime_destroy(rt));
  weft__stack_force_mprotect_guards(0);
#endif
}

static long read_long_file(const char *path) {
  FILE *f = fopen(path, "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

/* The real vm.max_map_count: with mprotect guards, ~max_map_count/2 stacks exhaust the
 * process's map entries (on this kernel, 65530 entries ended at ~32.7k stacks). */
Test(exhaustion, map_count_limit_makes_spawn_fail_cleanly, .timeout = 300) {
#if TEST_SANITIZED
  cr_skip_test("sanitizer runtimes use thousands of map entries of their own and 32k live "
               "fibers exceed TSan's limit");
#else
  long limit = read_long_file("/proc/sys/vm/max_map_count");
  if (limit <= 0 || limit > 200000) cr_skip_test("vm.max_map_count is %ld: too many stacks", limit);
  weft__stack_force_mprotect_guards(1);
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  o.stack_size = 8192; /* the limit is in entries, not bytes: small stacks keep RSS low */
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, &o));
  long n = exhaust_then_recover(rt);
  cr_assert_gt(n, limit / 4, "only %ld stacks before the map limit of %ld entries", n, limit);
  cr_assert_lt(n, limit, "%ld stacks under %ld map entries: the guards were not mprotect's", n,
               limit);
  OK(weft_runtime_destroy(rt));
  weft__stack_force_mprotect_guards(0);
#endif
}
