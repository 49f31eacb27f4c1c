/*
 * Strict fork-join frames: weft_fork / weft_sync — Lace's SPAWN/SYNC, Cilk's spawn/sync.
 *
 * A frame is a call that may run elsewhere: weft_fork records (fn, arg) in a frame on the
 * caller's stack and pushes it onto the worker's split deque (frame_impl.h); weft_sync pops it
 * back and, unless a thief took it, runs it as a plain call. So an unstolen fork+sync costs a
 * few stores and loads and no atomic instruction — no descriptor, no stack, no handle, no
 * completion word touched — and only a stolen frame becomes a task: the thief makes a
 * detached runner task for it (lazy task creation, Mohr–Kranz–Halstead), which runs fn on a
 * stack of its own, stores the result in the frame and completes the frame's word; the owner's
 * sync waits on that word like any await (so its worker runs other tasks meanwhile).
 *
 * The price is strictness: syncs in reverse fork order, every fork synced before the forking
 * function returns, and the frame alive until then (it lives in the caller's frame, as the
 * name says). weft_spawn/weft_join remain for everything else.
 *
 * Suspension. The deque is the worker's, but the frames in it belong to the task running there.
 * A task that suspends (awaits, sleeps, yields) may resume on another worker, and the next
 * task here must find the deque empty. So weft__suspend first detaches them: every frame not
 * stolen becomes a queued runner task, every frame becomes AWAY, and the deque is reset; the
 * suspended task's later syncs of those frames wait on their words. (A detach that cannot get
 * a descriptor leaves the frame DEFERRED: its sync runs it as a call.) Invariant: a QUEUED
 * frame is in the current worker's deque, at index head-1 when it is synced.
 *
 * Failure is never lost work: a frame that nobody could run (no descriptor for its runner, its
 * runner could not get a stack, or was cancelled before it started) comes back "unrun" and its
 * sync runs it. So weft_sync always returns fn's result, as a call would; fn's errors are its
 * result's business. Off a worker (a plain thread) a fork is recorded and its sync runs it.
 *
 * Files: fork, sync and the owner's wait are here; the thief's steal and the suspension's
 * detach are lib/worker.c's, and a runner's end lib/task.c's (they run inside the scheduler,
 * which this file calls into: lib/'s link graph keeps frames above it).
 *
 * Rejected: frames in the task deque as tagged entries (a Chase–Lev take's fence per sync; see
 * frame_impl.h); leapfrogging at a stolen sync (running the thief's work on our stack while
 * waiting — Lace does; here a stolen frame's function may suspend, and a task's worker is free
 * to run others while it waits anyway); a deque per task (thieves would need to find it, and
 * it dies with the task).
 */
#include "frame.h"
#include "internal.h"
#include "join.h"
#include "wake.h"

#include <sched.h>
#include <stdlib.h>


/* weft.h's inline fast paths see frames and the owner's half of the deque through these. */
#ifdef WEFT__FRAMES_INLINE
#include <stddef.h>
#define FRAME_ABI_SAME(a, b, field) \
  _Static_assert(offsetof(a, field) == offsetof(b, field), "weft.h's " #b " ." #field)
FRAME_ABI_SAME(weft__frame_t, struct weft__frame_abi, fn);
FRAME_ABI_SAME(weft__frame_t, struct weft__frame_abi, arg);
FRAME_ABI_SAME(weft__frame_t, struct weft__frame_abi, where);
FRAME_ABI_SAME(weft__frames_t, struct weft__frames_abi, head);
FRAME_ABI_SAME(weft__frames_t, struct weft__frames_abi, osplit);
FRAME_ABI_SAME(weft__frames_t, struct weft__frames_abi, slot);
FRAME_ABI_SAME(weft__frames_t, struct weft__frames_abi, splitreq);
_Static_assert(sizeof(((weft__frames_t *)0)->splitreq) == sizeof(uint32_t), "splitreq's size");
#endif


_Static_assert(sizeof(weft__frame_t) <= sizeof(weft_frame_t), "weft.h's weft_frame_t is too small");
_Static_assert(_Alignof(weft_frame_t) >= _Alignof(weft__frame_t), "weft_frame_t's alignment");

int weft__frames_init(weft__frames_t *d) {
  d->slot = calloc(WEFT__FRAMES_CAP, sizeof *d->slot);
  if (!d->slot) return WEFT_ENOMEM;
  d->head = d->osplit = 0;
  atomic_init(&d->ts, 0);
  atomic_init(&d->splitreq, 0);
  return 0;
}

void weft__frames_fini(weft__frames_t *d) {
  free((void *)d->slot);
  d->slot = NULL;
}


/* The owner waits for its frame's runner, cancellation held back and deadline scopes ignored:
 * the frame lives on our stack and its runner writes into it, so this wait cannot be abandoned.
 * A cancel stays pending for the next suspension. */
static void frame_wait(weft__worker_t *w, weft__frame_t *f) {
  struct weft_task *self = weft__current(w);
  weft__wait_reason(self, WEFT__WAIT_FRAME, (uintptr_t)f);
  weft__await_word_to_end(self, &f->word);
  /* The runner may still be delivering to other waiters' nodes (none here, but the word is
   * BUSY until it lets go): the frame may die only after. acquire: pairs with its release. */
  while (atomic_load_explicit(&f->word, memory_order_acquire) & WEFT__BUSY) sched_yield();
  weft__tsan_acquire(&f->word); /* the frame edge (frame_complete) */
}

/* A thread that is not a worker, or a task whose runner never ran it: the answer arrives by
 * a plain call. */
static void *frame_call(weft__frame_t *f) { return f->fn(f->arg); }

/* ---- Fork ----------------------------------------------------------------------------------- */

/* Off a worker, the deque full, its first frame, or an ask from a thief or a parker. */
static void __attribute__((noinline)) fork_slow(weft__worker_t *w, weft__frame_t *f, int pushed) {
  if (!w || pushed < 0) { /* a plain thread, or nested deeper than the deque: a call at sync */
    f->where = FRAME_DEFERRED;
    return;
  }
  /* A lone worker has no thief to share with (its first frame would pay a CAS at its fork and
   * at its sync for nothing: 10x on a flat fork/sync loop). */
  if (w->rt->nworkers == 1) {
    atomic_store_explicit(&w->frames.splitreq, 0, memory_order_relaxed); /* relaxed: a hint */
    return;
  }
  /* After the seq_cst share, the wake check (worker.c's rule for making work visible). An ask
   * is answered for private spawns too (lib/worker.c), which weft__priv_share does with ours. */
  if (atomic_load_explicit(&w->npriv, memory_order_relaxed)) /* relaxed: the owner's own */
    weft__priv_share(w);
  else if (frames_share(&w->frames))
    weft__wake_one_if_needed(w->rt);
}

void weft__fork(weft_frame_t *frame, weft_fn fn, void *arg) {
  weft__frame_t *f = (weft__frame_t *)frame;
  if (WEFT__UNLIKELY(!f || !fn)) weft__die("weft: weft_fork was given a NULL frame or function.");
  f->fn = fn;
  f->arg = arg;
  f->where = FRAME_QUEUED;
  /* A worker thread runs user code only inside a task: w set means a task forks. */
  weft__worker_t *w = weft__worker_self();
  int pushed = w ? frames_push(&w->frames, f) : -1;
  if (WEFT__UNLIKELY(pushed != 0)) fork_slow(w, f, pushed);
}

/* ---- Sync ----------------------------------------------------------------------------------- */

static void *__attribute__((noinline)) sync_slow(weft__frame_t *f) {
  if (WEFT__UNLIKELY(!f)) weft__die("weft: weft_sync was given a NULL frame.");
  if (f->where == FRAME_QUEUED)
    weft__die("weft: weft_sync was given a frame that is not the newest one forked and not "
              "synced on this thread; frames are synced in reverse order of their forks, by "
              "the task that forked them.");
  if (f->where == FRAME_AWAY) {
    weft__worker_t *w = weft__worker_self();
    /* Detached frames exist only in tasks (review, session 31: from a plain thread this read
     * a NULL current task) */
    if (WEFT__UNLIKELY(!w || !weft__current(w) || !weft__current(w)->runs_on->frames_away))
      weft__die("weft: weft_sync was given a frame forked by another task; frames are synced "
                "by the task that forked them.");
    frame_wait(w, f);
    w = weft__worker_self(); /* the wait may have moved us */
    weft__current(w)->runs_on->frames_away--;
  } else if (f->where != FRAME_DEFERRED) {
    weft__die("weft: weft_sync was given a frame that was never forked, or was synced already.");
  }
  bool call = f->where == FRAME_DEFERRED || f->unrun;
  f->where = FRAME_SYNCED;
  return call ? frame_call(f) : f->result;
}

void *weft__sync(weft_frame_t *frame) {
  weft__frame_t *f = (weft__frame_t *)frame;
  /* A QUEUED frame is in this worker's deque; synced in order, it is the newest there. */
  weft__worker_t *w;
  weft__frames_t *d;
  if (WEFT__UNLIKELY(!f || f->where != FRAME_QUEUED || !(w = weft__worker_self()) ||
                     frames_newest(d = &w->frames) != f))
    return sync_slow(f);
  f->where = FRAME_SYNCED;
  if (WEFT__LIKELY(frames_pop(d) == f)) return frame_call(f);
  frame_wait(w, f); /* a thief has it */
  return f->unrun ? frame_call(f) : f->result;
}
