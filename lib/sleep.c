/*
 * Sleeping and yielding: asyncio.sleep(d) on the timer wheel and asyncio.sleep(0). A sleeping
 * task arms its own timer entry after it is switched out; the entry's callback makes it
 * runnable again. A plain thread sleeps the plain way.
 */
#include "internal.h"

#include <errno.h>
#include <time.h>

/* ---- Sleeping ----------------------------------------------------------------------------- */

static void sleep_fire(weft__timer_entry_t *e) {
  struct weft_task *t = e->ctx;
  weft__schedule(t->rt, (uintptr_t)t | WEFT__ENTRY_RESUME);
}

int weft_sleep_until(uint64_t deadline_ns) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(w, "weft_sleep_until");
  if (!self) { /* a plain thread sleeps the plain way */
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return 0;
  }
  if (deadline_ns <= weft_now_ns()) return weft_yield();
  self->timer.deadline_ns = deadline_ns;
  weft__wait_reason(self, WEFT__WAIT_SLEEP, deadline_ns);
  self->timer.fire = sleep_fire;
  self->timer.ctx = self;
  weft__suspend(w, WEFT__AFTER_TIMER, &self->timer);
  return 0;
}

int weft_sleep_ns(uint64_t duration_ns) {
  uint64_t now = weft_now_ns();
  return weft_sleep_until(duration_ns > UINT64_MAX - now ? UINT64_MAX - 1 : now + duration_ns);
}

int weft_sleep_ms(uint64_t duration_ms) {
  return weft_sleep_ns(duration_ms > UINT64_MAX / 1000000u ? UINT64_MAX : duration_ms * 1000000u);
}

int weft_yield(void) {
  weft__worker_t *w = weft__worker_self();
  if (!w || !w->current) return WEFT_EPERM;
  weft__suspend(w, WEFT__AFTER_YIELD, w->current);
  return 0;
}

