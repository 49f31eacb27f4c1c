/* Notebook idea 1: a coroutine. `async def main(): print('hello'); await asyncio.sleep(1);
 * print('world')` run by asyncio.run(main()). In weft a coroutine is a plain C function run
 * as a task; awaiting a sleep suspends it without blocking its worker thread. */
#include "notebook.h"

static void *main_task(void *arg) {
  (void)arg;
  printf("hello\n");
  fflush(stdout);
  CHECK(weft_sleep_ms(1000));
  printf("world\n");
  return NULL;
}

int main(void) {
  return notebook_main("a coroutine: hello, sleep 1 s, world", main_task);
}
