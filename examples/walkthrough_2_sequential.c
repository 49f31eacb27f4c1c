/* Notebook idea 2: awaiting coroutines in sequence. `await say_after(1, 'hello')` then
 * `await say_after(2, 'world')`: the second starts only when the first ends, ~3 s in all.
 * In weft, awaiting a coroutine is a plain call: say_after suspends inside, its caller waits. */
#include "notebook.h"

static void say_after(uint64_t delay_ms, const char *what) {
  CHECK(weft_sleep_ms(delay_ms));
  printf("%s\n", what);
  fflush(stdout);
}

static void *main_task(void *arg) {
  (void)arg;
  print_clock("started");
  say_after(1000, "hello");
  say_after(2000, "world");
  print_clock("finished");
  return NULL;
}

int main(void) {
  return notebook_main("coroutines awaited in sequence take 1 s + 2 s", main_task);
}
