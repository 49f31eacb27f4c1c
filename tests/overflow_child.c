/* Run by test_runtime's overflow test: a task that recurses without end. Must die by SIGSEGV
 * after weft printed one line naming the task. */
#include "weft.h"

#include <stdint.h>

static long recurse(long depth) {
  volatile char pad[512];
  pad[0] = (char)depth;
  return depth > (1L << 40) ? pad[0] : recurse(depth + 1) + pad[0];
}

static void *overflow(void *arg) {
  (void)arg;
  weft_task_set_name(weft_current(), "deep-recursion");
  return (void *)(intptr_t)recurse(0);
}

static void *one(void *arg) { return arg; }

static void *spawn_overflow(void *arg) {
  (void)arg;
  weft_task_t *t, *other;
  weft_spawn(&t, overflow, NULL);
  weft_spawn(&other, one, NULL); /* t is not our newest entry: it runs on its own stack */
  weft_join(other, NULL);
  weft_join(t, NULL);
  return NULL;
}

int main(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  weft_run(&o, spawn_overflow, NULL, NULL);
  return 0; /* not reached */
}
