/* For tests that synchronise on the library's test-only probes (lib/sys.h: a counter bumped
 * where a path that leaves no other trace was taken): wait until a probe has moved, with a
 * bound on failure only (the probe's move is the event: no sleep-and-hope). Polled from a
 * plain thread (the test's main thread), never from a task. */
#ifndef WEFT_TEST_PROBES_H
#define WEFT_TEST_PROBES_H

#include "support.h"

#include "../../lib/sys.h"

#include <sched.h>
#include <unistd.h>

enum { PROBE_WAIT_BOUND_S = 30 }; /* a bound on failure, not a wait */

/* Until the probe has counted `count` hits in all (busy: for moves a few µs away). */
static inline void await_probe(int probe, long count) {
  uint64_t until = weft_now_ns() + PROBE_WAIT_BOUND_S * 1000000000ull;
  while (weft__probe_count(probe) < count) {
    cr_assert_lt(weft_now_ns(), until, "probe %d never reached %ld", probe, count);
    sched_yield();
  }
}

/* Until the probe has moved past `since` (idle, 10 ms a look: for what an idle runtime's
 * scavengers do on their own clock, seconds away). `what` completes "the idle runtime never". */
static inline void idle_until_probe_passes(int probe, long since, const char *what) {
  uint64_t until = weft_now_ns() + PROBE_WAIT_BOUND_S * 1000000000ull;
  while (weft__probe_count(probe) == since) {
    cr_assert_lt(weft_now_ns(), until, "the idle runtime never %s", what);
    usleep(10 * 1000);
  }
}

#endif
