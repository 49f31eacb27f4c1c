/* Notebook idea 5: asyncio.gather(factorial("A", 2), factorial("B", 3), factorial("C", 4)):
 * the same three coroutines handed to gather without create_task; results in argument order,
 * [2, 6, 24], in ~3 s. weft_gather_calls takes the (function, argument) pairs. */
#include "factorial.h"

static void *main_task(void *arg) {
  (void)arg;
  uint64_t start = weft_now_ns();
  fact_arg_t args[3] = {{"A", 2, 0, start}, {"B", 3, 1, start}, {"C", 4, 2, start}};
  weft_call_t calls[3] = {{factorial, &args[0]}, {factorial, &args[1]}, {factorial, &args[2]}};
  void *r[3];
  CHECK(weft_gather_calls(calls, 3, r));
  printf("[%ld, %ld, %ld]\n", (long)(intptr_t)r[0], (long)(intptr_t)r[1], (long)(intptr_t)r[2]);
  return NULL;
}

int main(void) {
  return notebook_main("gather runs coroutines concurrently, results in argument order: ~3 s",
                       main_task);
}
