/*
 * The ground floor: process-level helpers every file of lib/ may use, using nothing of weft
 * above them — the abort with one sentence, the test-only fault knobs, the futex, the clock.
 * Kept apart so that the concept files above (stacks, timer wheel, tasks, workers, runtime)
 * do not import one another for plumbing (they once formed one five-file import circle).
 */
#include "sys.h"
#include "weft.h"

#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Noreturn void weft__die(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
  (void)ignored;
  abort();
}

/* ---- Fault injection (test-only) ---------------------------------------------------------- */

/* relaxed throughout: a test knob; the countdown itself is the only shared state. */
#ifdef WEFT_FAULTS
static _Atomic long fault_countdown[WEFT__FAULT_KINDS];

void weft__fault_set(int kind, long nth) {
  if (kind >= 0 && kind < WEFT__FAULT_KINDS)
    atomic_store_explicit(&fault_countdown[kind], nth, memory_order_relaxed);
}

bool weft__fault_hit(int kind) {
  if (WEFT__LIKELY(atomic_load_explicit(&fault_countdown[kind], memory_order_relaxed) <= 0))
    return false;
  return atomic_fetch_sub_explicit(&fault_countdown[kind], 1, memory_order_relaxed) == 1;
}
#endif

/* ---- Futex -------------------------------------------------------------------------------- */

void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns) {
  struct timespec ts, *tsp = NULL;
  if (deadline_ns != UINT64_MAX) {
    ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts.tv_nsec = (long)(deadline_ns % 1000000000u);
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT a relative one). */
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
          FUTEX_BITSET_MATCH_ANY);
}

void weft__futex_wake(_Atomic uint32_t *word, int n) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

/* ---- Clock -------------------------------------------------------------------------------- */

uint64_t weft_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


uint64_t weft__coarse_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
