/* TSan builds only: every TSan fiber weft creates is destroyed exactly once, on every path
 * that ends a started task's stack — a plain finish, a finish after yields, a cancel
 * delivered while parked, a cancel before the start (no fiber), a child joined inline (no
 * fiber), fork/sync frames, and a task discarded by weft_runtime_destroy (its fiber goes with
 * the stack pool). The fiber calls are counted by wrapping them at link time
 * (-Wl,--wrap=__tsan_create_fiber,--wrap=__tsan_destroy_fiber; tests/CMakeLists.txt), so the
 * library carries no test counter. A fiber leaked per task is what a soak pays for most under
 * clang's TSan (tests/README.md, "Soak mode"); this test fails if weft ever leaks or doubles
 * one. Each phase runs in its own runtime and is checked after weft_runtime_destroy. */
#include "weft.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void *__real___tsan_create_fiber(unsigned flags);
void __real___tsan_destroy_fiber(void *fiber);

/* relaxed: counters read after weft_runtime_destroy has joined every worker thread */
static atomic_long created, destroyed;

void *__wrap___tsan_create_fiber(unsigned flags) {
  atomic_fetch_add_explicit(&created, 1, memory_order_relaxed);
  return __real___tsan_create_fiber(flags);
}

void __wrap___tsan_destroy_fiber(void *fiber) {
  if (!fiber) {
    fprintf(stderr, "tsan_fibers: __tsan_destroy_fiber(NULL)\n");
    abort();
  }
  atomic_fetch_add_explicit(&destroyed, 1, memory_order_relaxed);
  __real___tsan_destroy_fiber(fiber);
}

static int failures;

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "tsan_fibers: %s:%d: %s: ", __FILE__, __LINE__, #cond);                  \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fputc('\n', stderr);                                                                     \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

enum { N = 2000 }; /* tasks per phase: well below gcc's 8128 live fibers */

static weft_future_t *all_ran; /* finish phase: resolved by the last task to start */
static atomic_int ran;

static void count_start(void) {
  if (atomic_fetch_add(&ran, 1) + 1 == N) weft_future_resolve(all_ran, NULL);
}

static void *leaf(void *arg) {
  count_start();
  return arg;
}

static void *yielder(void *arg) {
  count_start();
  for (int i = 0; i < 3; i++) weft_yield();
  return arg;
}

static void *child(void *arg) { return arg; }

static weft_future_t *all_parking; /* resolved by the last sleeper to start */
static atomic_int parking;

static void *sleeper(void *arg) { /* parked until cancelled */
  if (arg && atomic_fetch_add(&parking, 1) + 1 == N) weft_future_resolve(all_parking, NULL);
  weft_sleep_ms(60 * 1000);
  return NULL;
}

enum { STUBBORN = 16 };
static weft_future_t *never;       /* resolved by nobody: its waiters are discarded at destroy */
static weft_future_t *all_started; /* resolved by the last stubborn task to start */
static atomic_int started;

static void *stubborn(void *arg) { /* shielded: shutdown's cancel cannot end it */
  (void)arg;
  weft_shield_begin();
  if (atomic_fetch_add(&started, 1) + 1 == STUBBORN) weft_future_resolve(all_started, NULL);
  weft_future_await(never, NULL);
  weft_shield_end();
  return NULL;
}

static void *fib(void *arg) {
  intptr_t n = (intptr_t)arg;
  if (n < 2) return arg;
  weft_frame_t f;
  weft_fork(&f, fib, (void *)(n - 1));
  intptr_t b = (intptr_t)fib((void *)(n - 2));
  return (void *)((intptr_t)weft_sync(&f) + b);
}

/* Phases: each runs as the main task of its own runtime. */

static void *finish_phase(void *arg) {
  (void)arg;
  static weft_task_t *t[N];
  CHECK(weft_future_create(&all_ran) == 0, "future_create");
  for (int i = 0; i < N; i++) CHECK(weft_spawn(i % 2 ? &t[i] : NULL, i % 4 < 2 ? leaf : yielder,
                                               (void *)(intptr_t)i) == 0, "spawn %d", i);
  /* All have started, each on its own stack: none is left for an await to run inline. */
  CHECK(weft_future_await(all_ran, NULL) == 0, "all ran");
  for (int i = 1; i < N; i += 2) {
    void *r;
    CHECK(weft_await(t[i], &r) == 0 && r == (void *)(intptr_t)i, "await %d", i);
    weft_task_release(t[i]);
  }
  weft_future_destroy(all_ran);
  return NULL;
}

static void *cancel_phase(void *arg) {
  (void)arg;
  static weft_task_t *t[2 * N];
  CHECK(weft_future_create(&all_parking) == 0, "future_create");
  for (int i = 0; i < N; i++) CHECK(weft_spawn(&t[i], sleeper, &parking) == 0, "spawn %d", i);
  CHECK(weft_future_await(all_parking, NULL) == 0, "all parking"); /* all N have started */
  for (int i = N; i < 2 * N; i++) { /* and N more, cancelled as soon as spawned */
    CHECK(weft_spawn(&t[i], sleeper, NULL) == 0, "spawn %d", i);
    weft_cancel(t[i]);
  }
  for (int i = 0; i < N; i++) weft_cancel(t[i]);
  for (int i = 0; i < 2 * N; i++) {
    int err = weft_await(t[i], NULL);
    CHECK(err == WEFT_ECANCELED, "await %d: %s", i, weft_err_name(err));
    weft_task_release(t[i]);
  }
  weft_future_destroy(all_parking);
  return NULL;
}

static void *inline_phase(void *arg) {
  (void)arg;
  for (int i = 0; i < N; i++) {
    weft_task_t *t;
    void *r = NULL;
    CHECK(weft_spawn(&t, child, (void *)(intptr_t)i) == 0, "spawn %d", i);
    CHECK(weft_join(t, &r) == 0 && r == (void *)(intptr_t)i, "join %d", i);
  }
  return NULL;
}

static void *frames_phase(void *arg) {
  (void)arg;
  weft_task_t *t[8];
  for (int i = 0; i < 8; i++) CHECK(weft_spawn(&t[i], fib, (void *)(intptr_t)15) == 0, "spawn");
  for (int i = 0; i < 8; i++) {
    void *r = NULL;
    CHECK(weft_join(t[i], &r) == 0 && r == (void *)(intptr_t)610, "fib(15) = %ld", (long)r);
  }
  return NULL;
}

typedef struct phase {
  const char *name;
  weft_fn main;
  int min_fibers; /* a phase that creates fewer did not test what it says */
} phase_t;

static void run_phase(const phase_t *p) {
  long c0 = atomic_load(&created), d0 = atomic_load(&destroyed);
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 4;
  CHECK(weft_run(&o, p->main, NULL, NULL) == 0, "%s: weft_run", p->name);
  long c = atomic_load(&created) - c0, d = atomic_load(&destroyed) - d0;
  printf("%-8s fibers created %ld, destroyed %ld\n", p->name, c, d);
  CHECK(c == d, "%s: %ld fibers created, %ld destroyed", p->name, c, d);
  CHECK(c >= p->min_fibers, "%s: only %ld fibers created (at least %d expected)", p->name, c,
        p->min_fibers);
}

/* Tasks that outlive the shutdown: destroy discards them, and the stack pool destroys their
 * fibers. */
static void discard_phase(void) {
  long c0 = atomic_load(&created), d0 = atomic_load(&destroyed);
  weft_runtime_t *rt;
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  CHECK(weft_runtime_create(&rt, &o) == 0, "runtime_create");
  CHECK(weft_future_create(&never) == 0 && weft_future_create(&all_started) == 0, "futures");
  weft_task_t *t[STUBBORN];
  for (int i = 0; i < STUBBORN; i++)
    CHECK(weft_runtime_spawn(rt, &t[i], stubborn, NULL) == 0, "spawn %d", i);
  /* All started (a task cancelled before its start would end without a fiber). */
  CHECK(weft_future_await(all_started, NULL) == 0, "all started");
  int err = weft_runtime_shutdown(rt, 200 * 1000 * 1000ull);
  CHECK(err == WEFT_ETIMEDOUT, "shutdown: %s", weft_err_name(err));
  for (int i = 0; i < STUBBORN; i++) weft_task_release(t[i]);
  CHECK(weft_runtime_destroy(rt) == 0, "runtime_destroy");
  weft_future_destroy(never);
  weft_future_destroy(all_started);
  long c = atomic_load(&created) - c0, d = atomic_load(&destroyed) - d0;
  printf("%-8s fibers created %ld, destroyed %ld\n", "discard", c, d);
  CHECK(c == d && c == STUBBORN, "discard: %ld fibers created, %ld destroyed (%d expected)", c, d,
        STUBBORN);
}

int main(void) {
  static const phase_t phases[] = {
      {"finish", finish_phase, N + 1}, /* every task (all start before any await), and main */
      {"cancel", cancel_phase, N + 1}, /* those cancelled before their start get none */
      {"inline", inline_phase, 1},     /* the main task's; a child runs inline unless stolen */
      {"frames", frames_phase, 1},     /* the main task's; frames, tasks and thieves' runner
                                          * tasks run inline or on their own, by timing */
  };
  for (size_t i = 0; i < sizeof phases / sizeof *phases; i++) run_phase(&phases[i]);
  discard_phase();
  if (failures) return 1;
  printf("tsan_fibers: every fiber created was destroyed once\n");
  return 0;
}
