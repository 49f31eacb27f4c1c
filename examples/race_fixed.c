/* race_planted.c made correct: each task counts into its own slot and returns it, and the
 * parent adds the slots after weft_gather. No lock is needed: weft orders the parent's writes
 * before the spawn with the task's start, and the task's end with the gather's return, and a
 * program built with -fsanitize=thread sees those edges (README, "Testing your program under
 * ThreadSanitizer"), so TSan reports nothing here.
 *
 *   cc -fsanitize=thread -g race_fixed.c $(pkg-config --cflags --libs weft) && ./a.out */
#include <weft.h>

#include <stdatomic.h>
#include <stdio.h>

enum { ADDS = 1000 };

typedef struct {
  int id;
  long start; /* written by the parent before the spawn, read by the task */
  long count; /* written by the task, read by the parent after the gather */
} slot_t;

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
  slot_t *slot = arg;
  meet();
  take_turn(slot->id);
  slot->count = slot->start;
  for (int i = 0; i < ADDS; i++) slot->count++; /* this task's own slot: no race */
  end_turn(slot->id);
  return slot;
}

static void *main_task(void *arg) {
  (void)arg;
  slot_t slots[2];
  weft_task_t *t[2];
  for (int i = 0; i < 2; i++) {
    slots[i].id = i;
    slots[i].start = 0;
    weft_spawn(&t[i], adder, &slots[i]);
  }
  weft_gather(t, 2, NULL);
  long total = 0;
  for (int i = 0; i < 2; i++) {
    total += slots[i].count;
    weft_task_release(t[i]);
  }
  printf("total %ld (expected %d)\n", total, 2 * ADDS);
  return NULL;
}

int main(void) {
  weft_options_t options = WEFT_OPTIONS_INIT;
  options.workers = 2; /* the tasks wait for each other: they need two workers */
  return weft_run(&options, main_task, NULL, NULL) == 0 ? 0 : 1;
}
