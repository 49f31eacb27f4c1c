/* Proof that the sanitizer builds and the valgrind run are on (the way Go's race-detector suite
 * has tests that must race). `race`: two tasks on different workers write one plain int with no
 * synchronisation — the TSan build must report a data race. `uaf`: a task reads a freed block —
 * the ASan build and memcheck must report it. `leak`: a task drops the only pointer to a block —
 * LeakSanitizer and memcheck must report it. ctest passes only if the report appears (see
 * tests/CMakeLists.txt); if these ever pass silently, the checking setup is broken. */
#include "weft.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shared_plain;        /* the deliberate race */
static atomic_int both_started; /* so the two writers overlap on two workers */
static atomic_int first_done;   /* relaxed: orders the writes in time, not for TSan */
static atomic_int second_done;  /* relaxed, likewise: keeps writer 1 alive past writer 2's write */

static void *writer(void *arg) {
  atomic_fetch_add(&both_started, 1);
  while (atomic_load(&both_started) < 2) {
  }
  /* Writer 2 writes after writer 1, so that the accesses are apart in time: clang folds the
   * loop into one read-modify-write, and two truly simultaneous accesses can both miss each
   * other's shadow (seen: 5 runs in 10 unreported). relaxed: no happens-before for TSan. */
  while ((intptr_t)arg == 2 && !atomic_load_explicit(&first_done, memory_order_relaxed)) {
  }
  for (int i = 0; i < 1000; i++) shared_plain += (int)(intptr_t)arg;
  if ((intptr_t)arg == 1) {
    atomic_store_explicit(&first_done, 1, memory_order_relaxed);
    /* Writer 1 outlives writer 2's write: TSan drops a report whose earlier access it cannot
     * restore a stack for, and a finished task's fiber takes its trace with it (seen: 62 runs
     * in 200 unreported once weft_join ran writer 2 inline and writer 1 ended first). */
    while (!atomic_load_explicit(&second_done, memory_order_relaxed)) {
    }
  } else {
    atomic_store_explicit(&second_done, 1, memory_order_relaxed);
  }
  return NULL;
}

static void *race_main(void *arg) {
  (void)arg;
  weft_task_t *a, *b;
  weft_spawn(&a, writer, (void *)1);
  weft_spawn(&b, writer, (void *)2);
  weft_join(b, NULL); /* b runs inline here, a on the other worker (stolen) */
  weft_join(a, NULL);
  return NULL;
}

static void *uaf_main(void *arg) {
  (void)arg;
  volatile char *p = malloc(64);
  memset((void *)p, 1, 64);
  free((void *)p);
  return (void *)(intptr_t)p[7]; /* the deliberate use after free */
}

static void *leak_main(void *arg) {
  (void)arg;
  volatile char *p = malloc(64);
  p[0] = 1;
  return NULL; /* the deliberate leak: the only pointer dies with this frame */
}

int main(int argc, char **argv) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  if (argc > 1 && !strcmp(argv[1], "race")) return weft_run(&o, race_main, NULL, NULL);
  if (argc > 1 && !strcmp(argv[1], "uaf")) return weft_run(&o, uaf_main, NULL, NULL);
  if (argc > 1 && !strcmp(argv[1], "leak")) return weft_run(&o, leak_main, NULL, NULL);
  fprintf(stderr, "usage: %s race|uaf|leak\n", argv[0]);
  return 2;
}
