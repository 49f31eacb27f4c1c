/* Notebook idea 3: tasks run concurrently. `task1 = asyncio.create_task(say_after(1, 'hello'))`,
 * `task2 = asyncio.create_task(say_after(2, 'world'))`, then await both: ~2 s, not 3.
 * weft_spawn is create_task; weft_await is `await task`. */
#include "notebook.h"

typedef struct {
  uint64_t delay_ms;
  const char *what;
} say_t;

static void *say_after(void *arg) {
  say_t *s = arg;
  CHECK(weft_sleep_ms(s->delay_ms));
  printf("%s\n", s->what);
  fflush(stdout);
  return NULL;
}

static void *main_task(void *arg) {
  (void)arg;
  say_t hello = {1000, "hello"}, world = {2000, "world"};
  weft_task_t *task1, *task2;
  CHECK(weft_spawn(&task1, say_after, &hello));
  CHECK(weft_spawn(&task2, say_after, &world));
  print_clock("started");
  CHECK(weft_join(task1, NULL));
  CHECK(weft_join(task2, NULL));
  print_clock("finished");
  return NULL;
}

int main(void) {
  return notebook_main("tasks run concurrently: 1 s and 2 s overlap into 2 s", main_task);
}
