/* Notebook idea 4: three tasks A, B, C (factorial of 2, 3, 4) created at once and then awaited
 * one by one: they still run concurrently, so it takes ~3 s, and the results are [2, 6, 24]. */
#include "factorial.h"

static void *main_task(void *arg) {
  (void)arg;
  uint64_t start = weft_now_ns();
  fact_arg_t args[3] = {{"A", 2, 0, start}, {"B", 3, 1, start}, {"C", 4, 2, start}};
  weft_task_t *t[3];
  for (int i = 0; i < 3; i++) CHECK(weft_spawn(&t[i], factorial, &args[i]));
  long results[3];
  for (int i = 0; i < 3; i++) {
    void *r;
    CHECK(weft_join(t[i], &r));
    results[i] = (long)(intptr_t)r;
  }
  printf("[%ld, %ld, %ld]\n", results[0], results[1], results[2]);
  return NULL;
}

int main(void) {
  return notebook_main("tasks awaited one by one still overlap: ~3 s for A, B, C", main_task);
}
