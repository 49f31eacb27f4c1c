/*
 * Futures: asyncio.Future — a one-shot value that tasks and threads await and any thread
 * resolves. The same completion word and waits as a task's (lib/join.c); RELEASED's bit means
 * "being resolved" here, since a future has no handle to release.
 */
#include "internal.h"
#include "join.h"

#include <sched.h>
#include <stdlib.h>

/* ---- Futures ------------------------------------------------------------------------------ */

struct weft_future {
  _Atomic uintptr_t word; /* waiters | DONE | RESOLVING */
  void *value;
};
#define FUTURE_RESOLVING WEFT__RELEASED /* futures have no handle: the bit means "being set" */

int weft_future_create(weft_future_t **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_future_t *f = malloc(sizeof *f);
  if (!f) return WEFT_ENOMEM;
  atomic_init(&f->word, 0);
  f->value = NULL;
  *out = f;
  return 0;
}

void weft_future_destroy(weft_future_t *f) {
  if (!f) return;
  uintptr_t s;
  /* acquire: pairs with the resolver's finish_waking; an awaiter may return (and its owner
   * destroy the future) while the resolver still delivers to the other waiters. */
  while ((s = atomic_load_explicit(&f->word, memory_order_acquire)) & WEFT__BUSY) sched_yield();
  if (s & ~WEFT__WORD_FLAGS)
    weft__die("weft: weft_future_destroy was called while tasks or threads still await the "
              "future.");
  free(f);
}

/* Every awaiter gets the value in its own frame before any is woken: a woken one may return,
 * and its owner destroy the future, while we still wake the others (weft__waiter_t's
 * `delivery`). The nodes stay ours until woken: BUSY holds off one that gives up meanwhile. */
static void deliver(weft__waiter_t *node, void *value) {
  for (; node; node = node->next)
    if (node->delivery) {
      node->delivery->value = value;
      node->delivery->set = true;
      weft__tsan_release(node->delivery); /* the resolve edge, for this awaiter */
    }
}

/* A resolver that lost to another still completing: WEFT_EALREADY means "resolved", so it
 * returns once the winner's completion is in (review, session 34: it returned while the
 * future still read as not done, and a caller that destroyed the future on that answer freed
 * it under the winner). The winner never suspends between its claim and its completion. */
static int resolved_by_another(weft_future_t *f) {
  /* acquire: as weft_future_done's (the loser may read the value next) */
  while (!(atomic_load_explicit(&f->word, memory_order_acquire) & WEFT__DONE)) sched_yield();
  return WEFT_EALREADY;
}

int weft_future_resolve(weft_future_t *f, void *value) {
  if (!f) return WEFT_EINVAL;
  /* RESOLVING first, so that of two racing resolvers exactly one writes the value. */
  uintptr_t s = atomic_load_explicit(&f->word, memory_order_relaxed);
  do {
    if (s & WEFT__DONE) return WEFT_EALREADY;
    if (s & FUTURE_RESOLVING) return resolved_by_another(f);
    /* relaxed: the value is published by the exchange below, not by this claim */
  } while (!atomic_compare_exchange_weak_explicit(&f->word, &s, s | FUTURE_RESOLVING,
                                                  memory_order_relaxed, memory_order_relaxed));
  weft__pause(WEFT__PAUSE_FUTURE_CLAIMED); /* tests: a second resolver comes here */
  f->value = value;
  /* The resolve edge: pairs with the acquire in weft_future_await*, weft_future_done. */
  weft__tsan_release(&f->word);
  /* The same completion as a task's (RESOLVING stays, in the RELEASED bit's place). */
  s = join_complete(&f->word);
  weft__waiter_t *waiters = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (waiters) {
    deliver(waiters, value);
    weft__wake_waiters(waiters);
    join_finish_waking(&f->word); /* its answer is about handles: futures have none */
  }
  return 0;
}

int weft_future_done(const weft_future_t *f) {
  if (!f) return WEFT_EINVAL;
  /* acquire: a caller that sees DONE may read the value next */
  if (!(atomic_load_explicit(&((weft_future_t *)f)->word, memory_order_acquire) & WEFT__DONE))
    return 0;
  weft__tsan_acquire(&((weft_future_t *)f)->word); /* the resolve edge */
  return 1;
}

/* The value, from our frame if the resolve woke us (the future may be gone by now), else from
 * the future, resolved before we came. */
static int future_await(weft_future_t *f, uint64_t deadline_ns, void **value, const char *fn,
                        bool may_park) {
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), fn);
  weft__wait_reason(self, WEFT__WAIT_FUTURE, (uintptr_t)f);
  weft__delivery_t got = {NULL, false};
  int err = weft__await_word_delivered(self, &f->word, deadline_ns, &got);
  /* Nothing of ours is left linked: past destroy's shutdown a cancelled task parks here (not
   * in weft_offload's await, which gives its job up first) */
  if (err == WEFT_ECANCELED && may_park) return weft__cancelled(self);
  if (err) return err;
  weft__tsan_acquire(&got); /* the resolve edge, if it came this way */
  if (!got.set) {
    weft__tsan_acquire(&f->word); /* the resolve edge */
    got.value = f->value;
  }
  if (value) *value = got.value;
  return 0;
}

int weft_future_await_until(weft_future_t *f, uint64_t deadline_ns, void **value) {
  if (!f) return WEFT_EINVAL;
  return future_await(f, deadline_ns, value, "weft_future_await_until", true);
}

void weft__future_await_to_end(weft_future_t *f) {
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), "weft_offload");
  weft__wait_reason(self, WEFT__WAIT_FUTURE, (uintptr_t)f);
  weft__await_word_to_end(self, &f->word);
  weft__tsan_acquire(&f->word); /* the resolve edge */
}

int weft_future_await(weft_future_t *f, void **value) {
  if (!f) return WEFT_EINVAL;
  return future_await(f, UINT64_MAX, value, "weft_future_await", true);
}

int weft__future_await_cancellable(weft_future_t *f, void **value) {
  return future_await(f, UINT64_MAX, value, "weft_offload", false);
}
