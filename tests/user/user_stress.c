/* A user's stress program, built outside weft's build flags (with -fsanitize=thread, or
 * address+undefined, or plain for valgrind) and linked against an installed weft: `total`
 * tasks in waves of `wave` alive at once, each reading what its spawner wrote, yielding, some
 * awaiting a child or a future resolved by a sibling, writing its result for the spawner to
 * read after the gather. Under TSan every hand-off is a plain (non-atomic) access, so a
 * missing happens-before edge in weft shows as a report. Usage: user_stress [total] [wave].
 * Prints "user_stress ok: tasks T stolen S" and exits 0 when every result checked out. */
#include <weft.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct item {
  long in;               /* written by the spawner before the spawn */
  long out;              /* written by the task, read by the spawner after the gather */
  weft_future_t *future; /* odd items await it; the even sibling before them resolves it */
  long handed;           /* written by the even sibling before resolving, read after await */
} item_t;

static void *child(void *arg) {
  long *v = arg;
  weft_yield();
  *v *= 2;
  return NULL;
}

static void *work(void *arg) {
  item_t *it = arg;
  long v = it->in;
  for (int k = 0; k < 3; k++) weft_yield(); /* suspend: another worker may steal the resume */
  if (v % 2 == 0) {
    it[1].handed = v + 1; /* the sibling reads it after its await: weft's resolve edge */
    weft_future_resolve(it[1].future, NULL);
  } else {
    weft_future_await(it->future, NULL);
    if (it->handed != v) fprintf(stderr, "handed %ld, expected %ld\n", it->handed, v), abort();
  }
  if (v % 5 == 0) { /* a child writes into our frame; we read it after the join */
    long c = v;
    weft_task_t *t;
    if (weft_spawn(&t, child, &c) != 0 || weft_join(t, NULL) != 0) abort();
    v = c / 2;
  }
  it->out = v * 3;
  return it;
}

typedef struct {
  long total, wave;
} cfg_t;

static void *main_task(void *arg) {
  cfg_t *cfg = arg;
  item_t *items = calloc((size_t)cfg->wave, sizeof *items);
  weft_task_t **tasks = calloc((size_t)cfg->wave, sizeof *tasks);
  if (!items || !tasks) abort();
  for (long base = 0; base < cfg->total; base += cfg->wave) {
    long n = cfg->total - base < cfg->wave ? cfg->total - base : cfg->wave;
    n &= ~1L; /* pairs */
    for (long i = 0; i < n; i++) {
      items[i].in = base + i;
      items[i].out = -1;
      if (i % 2 && weft_future_create(&items[i].future) != 0) abort();
    }
    for (long i = 0; i < n; i++)
      if (weft_spawn(&tasks[i], work, &items[i]) != 0) abort();
    weft_gather(tasks, (size_t)n, NULL);
    for (long i = 0; i < n; i++) {
      if (items[i].out != (base + i) * 3)
        fprintf(stderr, "item %ld: %ld\n", base + i, items[i].out), abort();
      weft_task_release(tasks[i]);
      if (i % 2) weft_future_destroy(items[i].future);
    }
  }
  free(items);
  free(tasks);
  return (void *)cfg->total;
}

int main(int argc, char **argv) {
  cfg_t cfg = {argc > 1 ? atol(argv[1]) : 100000, argc > 2 ? atol(argv[2]) : 2000};
  if (cfg.wave < 2) cfg.wave = 2;
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  o.stack_size = 16384;
  weft_runtime_t *rt;
  if (weft_runtime_create(&rt, &o) != 0) return 1;
  weft_task_t *t; /* spawned and joined from this thread, which is no worker: the foreign path */
  void *r = NULL;
  if (weft_runtime_spawn(rt, &t, main_task, &cfg) != 0 || weft_join(t, &r) != 0) return 1;
  weft_stats_t st = WEFT_STATS_INIT;
  weft_runtime_stats(rt, &st);
  weft_runtime_destroy(rt);
  printf("user_stress ok: tasks %llu stolen %llu\n", (unsigned long long)st.tasks_spawned,
         (unsigned long long)st.tasks_stolen);
  return r == (void *)cfg.total ? 0 : 1;
}
