/* Run by test_runtime's overflow test: a task that recurses without end while tasks on the other
 * workers keep writing lines to stderr. Must die by SIGSEGV after weft printed one whole line
 * naming the task, not garbled by the other writers' lines. */
#include "weft.h"

#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { NOISY = 3 };
static atomic_int noisy_running;

static long recurse(long depth) {
  volatile char pad[512];
  pad[0] = (char)depth;
  return depth > (1L << 40) ? pad[0] : recurse(depth + 1) + pad[0];
}

static void *overflow(void *arg) {
  (void)arg;
  /* the newline must show as '?' (review N, session 38: a name could forge a line here) */
  weft_task_set_name(weft_current(), "deep\nrecursion");
  return (void *)(intptr_t)recurse(0);
}

/* Writes whole lines (one write each) until the process dies. */
static void *noise(void *arg) {
  (void)arg;
  static const char line[] = "noise from a busy worker: the report must not land inside me\n";
  for (bool first = true;; first = false) {
    ssize_t ignored = write(STDERR_FILENO, line, sizeof line - 1);
    (void)ignored;
    if (first) atomic_fetch_add(&noisy_running, 1); /* counted once a line is out */
    sched_yield();
  }
  return NULL;
}

static void *one(void *arg) { return arg; }

static void *spawn_overflow(void *arg) {
  (void)arg;
  for (int i = 0; i < NOISY; i++) weft_spawn(NULL, noise, NULL);
  while (atomic_load(&noisy_running) < NOISY) weft_yield(); /* the other workers are writing */
  weft_task_t *t, *other;
  weft_spawn(&t, overflow, NULL);
  weft_spawn(&other, one, NULL);
  /* t is not our newest entry, so this await suspends us and the worker starts t on a stack
   * of its own (the overflow under test); the other workers are busy writing. */
  weft_join(t, NULL);
  weft_join(other, NULL);
  return NULL;
}

int main(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = NOISY + 1;
  weft_run(&o, spawn_overflow, NULL, NULL);
  return 0; /* not reached */
}
