/* Run by test_runtime's large-frame tests: one task whose frame is a 96 KiB local array on a
 * 64 KiB stack and which writes only the array's lowest page — the frame that jumps a guard
 * smaller than itself. Built twice: overflow_frame_probed with -fstack-clash-protection (as a
 * user's build gets it from weft's package), run with a one-page guard, where the probes must
 * hit the guard; overflow_frame_unprobed without it, run with the default guard, which must
 * be large enough to catch the frame by its size alone. Either way the process must die by
 * SIGSEGV after weft's one-line report. argv[1]: the guard size in bytes (0: the default). */
#include "weft.h"

#include <stdint.h>
#include <stdlib.h>

enum { FRAME_BYTES = 96 * 1024 };

__attribute__((noinline)) static int big_frame(int x) {
  volatile char frame[FRAME_BYTES];
  /* The array escapes, so the compiler must give it its whole size (clang shrank an unused
   * volatile array to the one byte written, and the frame no longer overflowed). */
  __asm__ __volatile__("" : : "r"(frame) : "memory");
  frame[0] = (char)x; /* the lowest byte: the only page written */
  return frame[0];
}

static void *overflow(void *arg) {
  weft_task_set_name(weft_current(), "big-frame");
  return (void *)(intptr_t)big_frame((int)(intptr_t)arg);
}

static void *one(void *arg) { return arg; }

static void *main_task(void *arg) {
  (void)arg;
  weft_task_t *t, *other;
  weft_spawn(&t, overflow, (void *)1);
  weft_spawn(&other, one, NULL);
  /* t is not our newest entry: this await suspends us and a worker starts t on a stack of its
   * own, just above another stack's guard. */
  weft_join(t, NULL);
  weft_join(other, NULL);
  return NULL;
}

int main(int argc, char **argv) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.stack_size = 64 * 1024;
  o.guard_size = argc > 1 ? strtoull(argv[1], NULL, 0) : 0;
  weft_run(&o, main_task, NULL, NULL);
  return 0; /* reached only if the overflow went unnoticed */
}
