/* Memory goes back after a burst: stacks and descriptors beyond a working set are returned to
 * the system by idle workers (lib/stack.c, lib/task.c), so a runtime's resident set falls
 * back to about what it was before the burst while the runtime lives on. */
#include "support.h"

#include <stdio.h>
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
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, reuse_burst, NULL));
    OK(weft_join(t, NULL));
    usleep(2500 * 1000); /* idle: the scavenger trims what the burst left (≥ 1 s old) */
  }
  weft_stats_t st = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &st));
  cr_assert_eq(st.tasks_unrun, 0);
  OK(weft_runtime_destroy(rt));
}
