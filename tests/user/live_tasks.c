/* How many tasks can be alive (started and suspended) at once in a program built with
 * -fsanitize=thread and linked against the installed weft: every task is a TSan fiber, and
 * each compiler's TSan runtime caps threads + fibers (README, "Testing your program under
 * ThreadSanitizer"). Usage: live_tasks N — N tasks await one future, then it is resolved.
 * Prints "live N ok" when all N were alive at once and finished. The suite runs it at 20 000
 * under clang's TSan (above gcc's limit); the README's table comes from running it by hand. */
#include <weft.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static weft_future_t *gate;
static atomic_long started;

static void *waiter(void *arg) {
  atomic_fetch_add(&started, 1);
  weft_future_await(gate, NULL);
  return arg;
}

static void *main_task(void *arg) {
  long n = *(long *)arg;
  weft_task_t **t = malloc((size_t)n * sizeof *t);
  for (long i = 0; i < n; i++)
    if (weft_spawn(&t[i], waiter, (void *)i) != 0) {
      fprintf(stderr, "spawn %ld failed\n", i);
      exit(1);
    }
  while (atomic_load(&started) < n) weft_yield();
  weft_future_resolve(gate, (void *)1);
  weft_gather(t, (size_t)n, NULL);
  for (long i = 0; i < n; i++) weft_task_release(t[i]);
  free(t);
  return NULL;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  o.stack_size = 16384;
  weft_future_create(&gate);
  int err = weft_run(&o, main_task, &n, NULL);
  weft_future_destroy(gate);
  if (err) return fprintf(stderr, "weft_run: %s\n", weft_strerror(err)), 1;
  printf("live %ld ok\n", n);
  return 0;
}
