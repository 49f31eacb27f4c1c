/* A data race between two tasks, planted for ThreadSanitizer to find (README, "Testing your
 * program under ThreadSanitizer"). Its correct twin is race_fixed.c; the two differ only in
 * how the tasks hand their counts back.
 *
 *   cc -fsanitize=thread -g race_planted.c $(pkg-config --cflags --libs weft) && ./a.out
 *
 * reports "WARNING: ThreadSanitizer: data race" on `total` with both tasks' stacks. The two
 * tasks meet first, so that they run at the same time on two workers: TSan sees a race only
 * between accesses it cannot order, and tasks that one worker runs one after the other are
 * ordered by the switches between them (README: what TSan can and cannot see). */
#include <weft.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

enum { ADDS = 1000 };

static long total; /* the planted race: both tasks add to it without synchronisation */
static atomic_int arrived, first_done;

/* The tasks meet (so that they run at the same time, on two workers), then the first goes
 * ahead and the second waits until it is done. Relaxed: this handshake orders nothing, so
 * TSan sees the two tasks' accesses as unordered; their being apart in time makes the report
 * certain (two truly simultaneous accesses can both miss each other's shadow). */
static void meet(void) {
  atomic_fetch_add_explicit(&arrived, 1, memory_order_relaxed);
  while (atomic_load_explicit(&arrived, memory_order_relaxed) < 2) {
  }
}
static void take_turn(int id) {
  while (id == 1 && !atomic_load_explicit(&first_done, memory_order_relaxed)) {
  }
}
static void end_turn(int id) {
  if (id == 0) atomic_store_explicit(&first_done, 1, memory_order_relaxed);
}

static void *adder(void *arg) {
  int id = (int)(intptr_t)arg;
  meet();
  take_turn(id);
  for (int i = 0; i < ADDS; i++) total++; /* RACE: the other task does the same */
  end_turn(id);
  return NULL;
}

static void *main_task(void *arg) {
  (void)arg;
  weft_task_t *t[2];
  weft_spawn(&t[0], adder, (void *)(intptr_t)0);
  weft_spawn(&t[1], adder, (void *)(intptr_t)1);
  weft_gather(t, 2, NULL);
  weft_task_release(t[0]);
  weft_task_release(t[1]);
  printf("total %ld (expected %d)\n", total, 2 * ADDS);
  return NULL;
}

int main(void) {
  weft_options_t options = WEFT_OPTIONS_INIT;
  options.workers = 2; /* the tasks wait for each other: they need two workers */
  return weft_run(&options, main_task, NULL, NULL) == 0 ? 0 : 1;
}
