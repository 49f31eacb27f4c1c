/* The notebook's factorial coroutine, shared by walkthroughs 4 and 5:
 *   async def factorial(name, number):
 *       f = 1
 *       for i in range(2, number + 1):
 *           print(f"Task {name}: Compute factorial({number}), currently i={i}...")
 *           await asyncio.sleep(1)
 *           f *= i
 *       print(f"Task {name}: factorial({number}) = {f}")
 *       return f
 * Each task starts and sleeps on absolute deadlines, staggered by 50 ms per task (A, B, C), so that
 * the lines of one second print in the notebook's order on any number of workers (asyncio's
 * single thread gives that order for free; weft's workers would otherwise race by microseconds).
 * 10 ms was not enough under ThreadSanitizer on a loaded 2-core machine: A, started last (LIFO),
 * printed after B's first deadline. */
#ifndef WEFT_FACTORIAL_H
#define WEFT_FACTORIAL_H
#include "notebook.h"

typedef struct {
  const char *name;
  long number;
  int stagger;
  uint64_t start_ns;
} fact_arg_t;

static void *factorial(void *arg) {
  fact_arg_t *a = arg;
  long f = 1;
  uint64_t deadline = a->start_ns + (uint64_t)a->stagger * 50000000u;
  CHECK(weft_sleep_until(deadline)); /* the stagger: A at +0 ms, B at +50 ms, C at +100 ms */
  for (long i = 2; i <= a->number; i++) {
    printf("Task %s: Compute factorial(%ld), currently i=%ld...\n", a->name, a->number, i);
    fflush(stdout);
    deadline += 1000000000u;
    CHECK(weft_sleep_until(deadline));
    f *= i;
  }
  printf("Task %s: factorial(%ld) = %ld\n", a->name, a->number, f);
  fflush(stdout);
  return (void *)(intptr_t)f;
}
#endif
