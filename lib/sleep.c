/*
 * Sleeping and yielding: asyncio.sleep(d) on the timer wheel and asyncio.sleep(0). A sleeping
 * task parks with its own timer entry as its deadline (lib/join.c: the same park as every
 * wait, so a cancel wakes it and removes the entry); a plain thread sleeps the plain way.
 * Both are cancellation points: a pending cancel returns WEFT_ECANCELED instead.
 */
#include "internal.h"

#include <errno.h>
#include <time.h>

/* ---- Sleeping ----------------------------------------------------------------------------- */

/* `now`: a clock read taken by the caller just before, or 0 (CLOCK_MONOTONIC never reads 0
 * after boot) to read it here, only where needed (a plain thread's sleep never reads it).
 * weft_sleep_ns passes the read its deadline came from: one clock read per sleep, not two. */
static int sleep_until(uint64_t deadline_ns, uint64_t now, const char *what) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(w, what); /* the misuse's sentence names it */
  if (!self) { /* a plain thread sleeps the plain way */
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return 0;
  }
  if (deadline_ns <= (now ? now : weft_now_ns())) return weft_yield();
  weft__wait_reason(self, WEFT__WAIT_SLEEP, deadline_ns);
  return weft__park_until(self, deadline_ns); /* UINT64_MAX: until cancelled */
}

int weft_sleep_until(uint64_t deadline_ns) {
  return sleep_until(deadline_ns, 0, "weft_sleep_until");
}

/* A duration's deadline saturates at UINT64_MAX - 1, a time, never at UINT64_MAX, which means
 * "until cancelled" (review, session 25: a duration of exactly UINT64_MAX - now reached it). */
static int sleep_for(uint64_t duration_ns, const char *what) {
  uint64_t now = weft_now_ns();
  return sleep_until(duration_ns >= UINT64_MAX - now ? UINT64_MAX - 1 : now + duration_ns, now,
                     what);
}

int weft_sleep_ns(uint64_t duration_ns) { return sleep_for(duration_ns, "weft_sleep_ns"); }

int weft_sleep_ms(uint64_t duration_ms) {
  return sleep_for(duration_ms > UINT64_MAX / 1000000u ? UINT64_MAX : duration_ms * 1000000u,
                   "weft_sleep_ms");
}

int weft_yield(void) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  if (weft__checkpoint(self)) return weft__cancelled(self);
  if (weft__scope_check(self)) return WEFT_ETIMEDOUT; /* its deadline scope passed */
  weft__suspend(w, WEFT__AFTER_YIELD, self);
  return 0;
}
