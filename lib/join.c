/*
 * Completion, awaiting and gather: the join concept — the completion word and join counter
 * (protocol in join_impl.h, instantiated by join.h), waiter nodes and wait records, timed
 * waits with their removal, inline awaits, and the await/join/gather API. The delivering
 * side — a task's completion, arrivals at a join, cancel, the park commit and the wait
 * records destroy reads — is lib/task.c's last section: the scheduler calls it at a task's
 * end and at a suspension, and this file, which calls the scheduler, stays above both.
 *
 * Completion. One word per task holds the waiter list, DONE, RELEASED (the handle is gone) and
 * BUSY (delivery or an in-place removal under way). Completion is one CAS that sets DONE and
 * takes the list; the waiters' nodes live on their own (suspended) stacks and point to a join
 * counter. A gather is one join counter for N children; awaiting one task is a gather of one.
 * The waiting task holds one extra count until it is fully switched out (the scheduler drops
 * it after the switch), so the last child cannot make it runnable while it is still running —
 * Go's gopark with an unlock function.
 *
 * Inline awaits. A task that awaits (or gathers) a task whose start entry is the newest in its
 * own worker's deque takes the entry back (Chase–Lev take) and runs the task as a plain call
 * on its own stack — Lace's SYNC, Java ForkJoin's tryUnfork. Extraction from a deque is
 * exactly-once, so the inline path needs no claim CAS and no stale entries exist.
 * Rejected: claiming any unstarted task by a CAS on its state from wherever it sits (inlines
 * more awaits, but costs a CAS per task and leaves stale entries whose owners must then be
 * reference-counted); and "helping" — running other queued tasks while waiting — which can
 * deadlock when the helped task waits for something the helper would do after its await
 * returns.
 *
 * Wait records. While a task is suspended on a join, its `wait` points to the join's timer
 * entry, whose `fire` is a marker (or the timed callback) and `ctx` the join, whose `nodes` say
 * which words it is linked into: destroy reads them to take a discarded task's nodes out
 * (runtime.c, step 3).
 */
#include "deque.h"
#include "internal.h"
#include "join.h"
#include "wake.h"

#include <sched.h>
#include <stdlib.h>

static void wait_flag(_Atomic uint32_t *flag) {
  /* acquire: pairs with the release in park_timer_fire; the other side is mid-callback, so
   * the wait is short, but it may be preempted: yield the CPU rather than burn it. */
  while (!atomic_load_explicit(flag, memory_order_acquire)) sched_yield();
}


static void join_init(weft__join_t *j, struct weft_task *task, long pending, bool timed) {
  j->task = task;
  atomic_init(&j->pending, pending);
  atomic_init(&j->thread_word, JN_WAITING);
  j->timed = timed;
  j->any = false;
  atomic_init(&j->fired, 0);
  atomic_init(&j->timer_done, 0);
  j->nodes = NULL;
  j->nnodes = 0;
  j->abandon = NULL;
}

static int side_error(uint32_t side) {
  return side == WK_BY_COMPLETION ? 0 : side == WK_BY_TIMER ? WEFT_ETIMEDOUT : WEFT_ECANCELED;
}

/* ---- Deadline scopes (asyncio.timeout) ----------------------------------------------------- */

/* The task's shield depth (relaxed: the task's own bits). */
static uint32_t shield_depth(struct weft_task *self) {
  return (atomic_load_explicit(&self->state, memory_order_relaxed) & WK_SHIELD) / WK_SHIELD_ONE;
}

/* A wait's deadline bounded by the task's scopes (owner-only data on its stack). A shield holds
 * back the scopes begun outside it — cleanup (a shielded await of a cancelled child) must see
 * its task end — but not those begun inside it, which bound the cleanup's own waits (Trio's
 * shielded cancel scope; review, session 19: every scope was held back, so a shielded cleanup
 * could not be given a time limit). Unshielded, every scope applies: effective_ns, the chain's
 * minimum, kept by begin. Shielded (rare), the chain is walked for the scopes begun at this
 * depth or deeper. */
static uint64_t scoped_deadline(struct weft_task *self, uint64_t deadline_ns) {
  weft_deadline_t *scope = self ? weft__task_scope(self) : NULL;
  if (!scope) return deadline_ns;
  uint32_t depth = shield_depth(self);
  uint64_t bound = scope->effective_ns;
  if (WEFT__UNLIKELY(depth)) {
    bound = UINT64_MAX;
    for (weft_deadline_t *s = scope; s; s = s->outer)
      if (s->shield_depth >= depth && s->deadline_ns < bound) bound = s->deadline_ns;
  }
  return bound < deadline_ns ? bound : deadline_ns;
}

/* Whether a scope bounds self's waits now: then an unstarted task is not run inline (an inline
 * run cannot be cut short at the scope's deadline). */
static bool scope_applies(struct weft_task *self) {
  return self && WEFT__UNLIKELY(weft__task_scope(self) != NULL) &&
         scoped_deadline(self, UINT64_MAX) != UINT64_MAX;
}

int weft__scope_check_slow(struct weft_task *self) {
  uint64_t deadline_ns = scoped_deadline(self, UINT64_MAX); /* no clock read without a scope */
  return deadline_ns != UINT64_MAX && deadline_ns <= weft_now_ns() ? WEFT_ETIMEDOUT : 0;
}

int weft_deadline_begin(weft_deadline_t *scope, uint64_t deadline_ns) {
  if (!scope) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  /* A scope begun again before its end would link to itself (review, session 25: a retry
   * loop that skips the end; the next shielded wait's walk never ended). */
  for (weft_deadline_t *s = weft__task_scope(self); s; s = s->outer)
    if (s == scope)
      weft__die("weft: weft_deadline_begin was given a scope that is already begun and not "
                "ended.");
  weft__task_diag_t *diag = weft__task_diag_make(self);
  if (!diag) return WEFT_ENOMEM; /* nothing begun: the caller must not end it */
  scope->deadline_ns = deadline_ns;
  scope->outer = weft__task_scope(self);
  /* every enclosing scope's, shielded or not: what applies once the shields end */
  scope->effective_ns = scope->outer && scope->outer->effective_ns < deadline_ns
                            ? scope->outer->effective_ns
                            : deadline_ns;
  scope->shield_depth = shield_depth(self);
  diag->scope = scope;
  /* relaxed: the task's own byte (destroy and the overflow handler read it, after) */
  atomic_store_explicit(&self->started,
                        atomic_load_explicit(&self->started, memory_order_relaxed) | WEFT__SCOPED,
                        memory_order_relaxed);
  return 0;
}

int weft_deadline_end(weft_deadline_t *scope) {
  if (!scope) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  if (weft__task_scope(self) != scope)
    weft__die("weft: weft_deadline_end was given a scope that is not the task's innermost.");
  /* SCOPED: the array exists; and it stays, so the field stays valid */
  weft__task_diag(self)->scope = scope->outer;
  return weft_now_ns() >= scope->deadline_ns ? WEFT_ETIMEDOUT : 0;
}

/* ---- Waiting: tasks ------------------------------------------------------------------------ */

/* The task's side of every wait. The task is PARKING (wake_park_begin) and j's nodes are
 * linked. Suspends — the scheduler arms the timer if there is a deadline, then commits —
 * resumes on the first event, clears what the others left (the timer, unarrived nodes) and
 * returns 0 (completion), WEFT_ETIMEDOUT or WEFT_ECANCELED. */
static int task_wait(struct weft_task *self, weft__join_t *j, uint64_t deadline_ns) {
  bool timed = deadline_ns != UINT64_MAX;
  if (timed) j->timer.deadline_ns = deadline_ns;
  weft__wait_record_begin(self, j, timed);
  weft__suspend(weft__worker_self(), timed ? WEFT__AFTER_PARK_TIMED : WEFT__AFTER_PARK, self);
  uint32_t side = wake_park_end(&self->state);
  if (timed && (side == WK_BY_TIMER || !weft__timer_cancel(weft__task_rt(self)->timer, &j->timer)))
    wait_flag(&j->timer_done); /* the callback ran, or runs: its last touch of j */
  if (side != WK_BY_COMPLETION || j->any) weft__join_remove_nodes(j); /* unlinked, or delivered and let go */
  weft__wait_record_end(self);
  return side_error(side);
}

/* A wait that turned out to need no suspension (everything was already done). */
static int task_wait_skipped(struct weft_task *self) {
  return side_error(wake_park_abort(&self->state) ?: WK_BY_COMPLETION);
}

/* ---- Waiting: threads ---------------------------------------------------------------------- */

/* Blocks the calling thread (not a task) until the join's waker is finished with it. */
static void thread_wait_join(weft__join_t *j) {
  unsigned state;
  while (!join_may_return(state = join_signal_state(&j->thread_word))) {
    if (state == JN_WAITING)
      weft__futex_wait(&j->thread_word, JN_WAITING, UINT64_MAX);
    else
      sched_yield(); /* SIGNALLED: the waker is inside FUTEX_WAKE; WOKEN comes next */
  }
}

/* A thread's wait with a deadline (UINT64_MAX: none): the deadline is its own futex timeout,
 * and the first of completion and timeout claims the join. */
static int thread_wait(weft__join_t *j, uint64_t deadline_ns) {
  if (deadline_ns == UINT64_MAX) {
    thread_wait_join(j);
    return 0;
  }
  for (;;) {
    unsigned state = join_signal_state(&j->thread_word);
    if (join_may_return(state)) return 0;
    if (state != JN_WAITING) {
      sched_yield(); /* SIGNALLED: the waker is inside FUTEX_WAKE; WOKEN comes next */
      continue;
    }
    if (weft_now_ns() >= deadline_ns) {
      if (weft__join_claim_fired(j, WK_BY_TIMER)) {
        weft__join_remove_nodes(j);
        return WEFT_ETIMEDOUT;
      }
      thread_wait_join(j); /* the completion won the race: its wake is on the way */
      return 0;
    }
    weft__futex_wait(&j->thread_word, JN_WAITING, deadline_ns);
  }
}

/* ---- Waiting on completion words ----------------------------------------------------------- */

/* Waits until a completion word is DONE, the deadline passes (UINT64_MAX: none) or, for a
 * task, a cancel arrives: 0, WEFT_ETIMEDOUT or WEFT_ECANCELED. */
static int await_word(struct weft_task *self, _Atomic uintptr_t *word, uint64_t deadline_ns,
                      void (*abandon)(struct weft_task *t, void *ctx), void *abandon_ctx,
                      weft__delivery_t *delivery);

int weft__await_word_until(struct weft_task *self, _Atomic uintptr_t *word, uint64_t deadline_ns) {
  return await_word(self, word, scoped_deadline(self, deadline_ns), NULL, NULL, NULL);
}

int weft__await_word_delivered(struct weft_task *self, _Atomic uintptr_t *word,
                               uint64_t deadline_ns, weft__delivery_t *delivery) {
  return await_word(self, word, scoped_deadline(self, deadline_ns), NULL, NULL, delivery);
}

int weft__await_word_abandonable(struct weft_task *self, _Atomic uintptr_t *word,
                                 uint64_t deadline_ns,
                                 void (*abandon)(struct weft_task *t, void *ctx), void *ctx) {
  return await_word(self, word, scoped_deadline(self, deadline_ns), abandon, ctx, NULL);
}

/* For a wait that must not end before the word is done, whatever its task's cancels and
 * scopes: what it waits for writes into the task's stack (a frame's runner, a blocking-pool
 * call given a buffer there). Cancels are held back by a shield level (added only if the task
 * is not shielded already: one level holds them back as well as several),
 * and no deadline scope is consulted: not even one begun inside a shield, which bounds a
 * shielded task's other waits (review, session 20: weft_sync in a time-limited cleanup aborted
 * on its ETIMEDOUT). A cancel stays pending for the next suspension point. */
void weft__await_word_to_end(struct weft_task *self, _Atomic uintptr_t *word) {
  /* relaxed: the task's own shield bits (as weft_shield_begin) */
  bool shield = !(atomic_load_explicit(&self->state, memory_order_relaxed) & WK_SHIELD);
  if (shield) atomic_fetch_add_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed);
  int err = await_word(self, word, UINT64_MAX, NULL, NULL, NULL);
  if (shield) atomic_fetch_sub_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed);
  if (err) weft__die("weft: internal: a wait held to its end ended early (%d).", err);
}

static int await_word(struct weft_task *self, _Atomic uintptr_t *word, uint64_t deadline_ns,
                      void (*abandon)(struct weft_task *t, void *ctx), void *abandon_ctx,
                      weft__delivery_t *delivery) {
  /* A deadline already passed (a scope's, or 0: a poll): no wait — unless the word is done, as a
   * thread's wait would find (review, session 19: a task polling a resolved future got
   * WEFT_ETIMEDOUT). No clock read without one. acquire: as join_add_waiter's look. A cancel
   * pending wins, as at weft_yield: this is a suspension point (review, session 32: in a passed
   * scope a cancel was never delivered, so a loop ignoring it never parked past shutdown). */
  if (self && deadline_ns != UINT64_MAX && deadline_ns <= weft_now_ns() &&
      !(atomic_load_explicit(word, memory_order_acquire) & WEFT__DONE))
    return weft__checkpoint(self) ? WEFT_ECANCELED : WEFT_ETIMEDOUT; /* callers clean up */
  if (self && !wake_park_begin(&self->state, true)) return WEFT_ECANCELED; /* callers clean up */
  weft__join_t j;
  join_init(&j, self, 1, deadline_ns != UINT64_MAX);
  weft__waiter_t node = {.join = &j, .word = word, .delivery = delivery};
  j.nodes = &node;
  j.nnodes = 1;
  j.abandon = abandon;
  j.abandon_ctx = abandon_ctx;
  if (!join_add_waiter(word, &node)) return self ? task_wait_skipped(self) : 0;
  return self ? task_wait(self, &j, deadline_ns) : thread_wait(&j, deadline_ns);
}

uint64_t weft__wait_deadline(struct weft_task *self, uint64_t deadline_ns) {
  return scoped_deadline(self, deadline_ns);
}

int weft__park_published(struct weft_task *self, uint64_t deadline_ns,
                         void (*abandon)(struct weft_task *t, void *ctx), void *ctx) {
  weft__join_t j;
  join_init(&j, self, 1, deadline_ns != UINT64_MAX);
  j.abandon = abandon;
  j.abandon_ctx = ctx;
  return task_wait(self, &j, deadline_ns);
}

/* Sleeps until the deadline or a cancel: 0 or WEFT_ECANCELED. A task only. */
int weft__park_until(struct weft_task *self, uint64_t deadline_ns) {
  uint64_t bounded = scoped_deadline(self, deadline_ns);
  if (bounded < deadline_ns && bounded <= weft_now_ns()) /* a cancel first, as await_word */
    return weft__checkpoint(self) ? weft__cancelled(self) : WEFT_ETIMEDOUT;
  if (!wake_park_begin(&self->state, true)) return weft__cancelled(self);
  weft__join_t j;
  join_init(&j, self, 1, true);
  int err = task_wait(self, &j, bounded);
  /* Its own deadline is a sleep's success; a scope's is the scope's timeout. */
  return err == WEFT_ETIMEDOUT && bounded == deadline_ns ? 0 : err;
}

/* ---- A cancel delivered past the shutdown's bound ------------------------------------------ */

/* Once destroy has given up on the shutdown (its bound passed, or every task ended) and stops
 * the workers, a task still running is one that ignores its cancel: every suspension point
 * answers WEFT_ECANCELED at once (the cancel is sticky), so a task that loops on them never
 * switches out and its worker never stops (review, session 31: destroy hung for ever on
 * `for (;;) weft_sleep_ms(10);`). Such a point parks the task instead, woken by nothing: it
 * is discarded as any task asleep at destroy is, and the docs' bound holds. Only where the
 * point has nothing of its wait left linked and nothing left to undo: a sleep, a yield, an
 * await's or a gather's start (the gather's children cancelled first), a queue wait once its
 * node is out (mutex, semaphore, event, condition — before the relock — wait group, channel,
 * select), a future's await, wait_any, a socket call once its operation's count is given
 * back (weft__answer; an accept's EMFILE back-off sleeps holding it, as any discarded socket
 * call holds its socket: the poller closes the fd). Not inside await_word (a queue's node is
 * still linked there: the review of this fix crashed five ways on a stale node), nor in a
 * mutex's retry (its wake is passed on first) or weft_offload's await (its job is given up
 * first): those answer WEFT_ECANCELED, and the caller's next point parks.
 * A task that never reaches a suspension point still holds its worker (nothing preempts a
 * stackful task).
 * Rejected: a cancel delivered once, as asyncio's (weft's cancel is level-triggered, as Trio's,
 * so that a cleanup cannot lose it by accident). */
int __attribute__((noinline, cold)) weft__cancelled(struct weft_task *self) {
  /* relaxed: a flag destroy sets before it stops the workers; a late look parks at the next.
   * Only an unshielded task with a cancel pending (relaxed: its own bits): a shielded cleanup
   * may pass on the kernel's own ECANCELED (a timerfd's read), which is no cancel of ours
   * (review). */
  if (!atomic_load_explicit(&weft__task_rt(self)->discarding, memory_order_relaxed) ||
      !wake_cancel_pending(atomic_load_explicit(&self->state, memory_order_relaxed)))
    return WEFT_ECANCELED;
  weft__wait_reason(self, WEFT__WAIT_NONE, 0); /* destroy's report names it: no dump runs now */
  /* Shielded: a later weft_cancel (of the handle, or a group's) only requests, where it woke
   * the park and scheduled the task on a runtime that may be freed (review of this fix: ASan,
   * a weft_cancel after destroy). The depth is 0 here: a cancel was delivered. relaxed: the
   * task's own bits, as weft_shield_begin's. */
  atomic_fetch_add_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed);
  for (;;) { /* a wake (a stray cancel event) finds it parking again */
    wake_park_begin(&self->state, false);
    weft__suspend(weft__worker_self(), WEFT__AFTER_PARK, self);
    wake_park_end(&self->state);
  }
}

ptrdiff_t __attribute__((noinline, cold)) weft__cancelled_answer_slow(void) {
  struct weft_task *self = weft__running_task(weft__worker_self());
  return self ? weft__cancelled(self) : WEFT_ECANCELED;
}

/* ---- Inline awaits ------------------------------------------------------------------------ */

/* An inline run shares its awaiter's stack and worker, so the check at a task's end
 * (lib/worker.c) never sees an inline child end: a child that returned with one of its own
 * frames still in the worker's deque left a dead frame there, which a thief, the awaiter's next
 * suspension (detaching it into a runner) or a sync then used (review, session 31). So when the
 * deque is not empty after an inline run, its newest frame is looked at: a frame the child left
 * is newer than any of the awaiter's, and it lies on this stack below the inline run's own
 * stack frame (`here`, a local of the caller of fn), where the awaiter's live frames never are
 * (they are in its callers' frames, above). Frames outside the stack's bounds (an ASan fake
 * stack), or a `here` outside them, are not judged: a missed abort, never a false one. `here`
 * must not share a stack frame with the user's code: the entry points that reach an inline run
 * (weft_join, weft_await, the gathers) are kept out of line even under LTO. Cost: a load and a
 * branch a join (the deque is empty in spawn/join code). Rejected: comparing the deque's
 * count before and after the run (a register kept across the call: +4 instructions a join on
 * fib, +10 with the named-task check beside it); counting frames detached while the child was
 * suspended (the stack record's count, a pointer away). So a child that suspends with a frame
 * out and returns without its sync is caught only at its awaiter's end (docs/api.md, weft_sync). */
static void __attribute__((noinline, cold)) check_inline_frames(weft__worker_t *w,
                                                                 struct weft_task *awaiter,
                                                                 const char *here) {
  /* relaxed: our own write (the fork's push) */
  const char *top = atomic_load_explicit(&w->frames.slot[w->frames.head - 1], memory_order_relaxed);
  const weft__stack_t *s = awaiter->runs_on;
  const char *hi = s->lo + s->bytes;
  /* `here` on the stack too: under ASan's use-after-return mode it may be on a fake stack,
   * where every real frame would seem below it (review, session 31: a false abort) */
  if (here >= s->lo && here < hi && top >= s->lo && top < here)
    weft__die("weft: a task returned without weft_sync of a frame it forked with weft_fork.");
}

/* Runs t, whose start entry we took back from our own deque, as a plain call (or ends it
 * cancelled if a cancel reached it before it started). */
static void run_inline(weft__worker_t *w, struct weft_task *t) {
  if (wake_checkpoint(&t->state)) {
    weft__stat_bump(&w->n_inlined); /* it ended here: counted, or it stays live (metrics.c) */
    weft__task_unrun(t); /* as weft__task_start's (a group's task never comes here today) */
    weft__task_complete(t, NULL);
    return;
  }
  struct weft_task *awaiter = weft__current(w);
  /* The awaiter's INLINE first: the release of t as current publishes it, so a dump that sees
   * t running sees the awaiter awaiting it (the other order showed it queued: review) */
  weft__inline_begin(awaiter, t);
  weft__set_current(w, t);
  weft__tsan_acquire(&t->fn); /* the spawn edge (pairs with spawn()); same fiber, kept for form */
  /* Read last, just before the call (fewer registers held across the stores above), and
   * before weft__task_started puts runs_on and the wait record in their bytes. */
  weft_fn fn = t->fn;
  void *arg = t->arg;
  weft__task_started(t, awaiter->runs_on);
  char here; /* this frame: the child's are below it (check_inline_frames) */
  void *result = fn(arg);
  w = weft__worker_self(); /* t may have suspended and resumed elsewhere */
  if (WEFT__UNLIKELY(w->frames.head)) check_inline_frames(w, awaiter, &here);
  /* Counted at its end: counted at its start, a child suspended inline was not live (metrics.c) */
  weft__stat_bump(&w->n_inlined);
  weft__set_current(w, awaiter);
  weft__task_complete(t, result);
}

/* Takes t back from w's queues if it is the newest entry there: our newest private spawn (no
 * fence: lib/worker.c's "Private spawns"), or else the newest entry of our deque (take_if: only
 * we change the bottom end; it returns t if no thief took it). A join out of LIFO order shares
 * our private spawns first: they are t's younger siblings, and must not sit behind t's inline
 * run, or behind our wait, where no thief can reach them (t is then not the deque's newest:
 * our wait's scheduler loop takes the newest, and thieves the rest). */
static inline bool take_back(weft__worker_t *w, struct weft_task *t) {
  if (weft__priv_take_if(w, t)) return true;
  /* relaxed: our own count */
  if (WEFT__UNLIKELY(atomic_load_explicit(&w->npriv, memory_order_relaxed))) weft__priv_share(w);
  return weft__deque_take_if(&w->deque, (uintptr_t)t) == (uintptr_t)t;
}

/* If t is the newest entry of our queues, take it back and run it here. w: this thread's
 * worker, read after any earlier inline run (which may have resumed us on another worker: the
 * deque operations below are for the owner's thread only). */
static bool try_inline_on(weft__worker_t *w, struct weft_task *t) {
  if (w->rt != weft__task_rt(t) || !take_back(w, t)) return false;
  run_inline(w, t);
  return true;
}

static bool try_inline(struct weft_task *t) { return try_inline_on(weft__worker_self(), t); }

/* ---- Awaiting ----------------------------------------------------------------------------- */

/* The task running on this thread, NULL on a thread that is not a worker; aborts on a worker
 * thread outside any task (a scheduler callback cannot suspend). */
struct weft_task *weft__awaiting_task(weft__worker_t *w, const char *what) {
  if (!w) return NULL;
  struct weft_task *self = weft__current(w);
  if (!self)
    weft__die("weft: %s was called on a worker thread outside any task, where nothing can wait.",
              what);
  return self;
}

static bool task_is_done(const weft_task_t *t) {
  /* acquire: a caller that sees DONE may read the result next */
  return (atomic_load_explicit(&((weft_task_t *)t)->word, memory_order_acquire) & WEFT__DONE) != 0;
}

int weft_task_done(const weft_task_t *t) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (!task_is_done(t)) return 0;
  weft__tsan_acquire(&((weft_task_t *)t)->word); /* the completion edge (task_complete) */
  return 1;
}

int weft_task_result(const weft_task_t *t, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (!task_is_done(t)) return WEFT_EAGAIN;
  weft__tsan_acquire(&((weft_task_t *)t)->word); /* the completion edge (task_complete) */
  if (result) *result = weft__task_result(t);
  return t->error;
}

/* The awaited task's outcome, once it is done. */
static int task_outcome(weft_task_t *t, void **result) {
  weft__tsan_acquire(&t->word); /* the completion edge (weft__task_complete) */
  if (result) *result = weft__task_result(t);
  return t->error;
}

/* weft_await under the name the user called (weft_await or weft_join), for its abort texts. */
/* A handle into a slab the descriptor scavenger gave back was released already: its zeroed
 * word would read as a running task's, and an await of it waited for ever (review, session
 * 34; release_task has the same check). */
static inline void refuse_given_back(const weft_task_t *t, const char *what) {
  if (WEFT__UNLIKELY(!weft__task_rt(t)))
    weft__die("weft: %s was given a task handle that was already released.", what);
}

static int await_task(weft_task_t *t, void **result, const char *what) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  refuse_given_back(t, what);
  if (task_is_done(t)) return task_outcome(t, result);
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(w, what);
  if (self == t) weft__die("weft: %s: a task awaited itself, which can never finish.", what);
  if (self && wake_checkpoint(&self->state)) return weft__cancelled(self);
  if (!(self && !scope_applies(self) && try_inline(t))) {
    weft__wait_reason(self, WEFT__WAIT_TASK, atomic_load_explicit(&t->id, memory_order_relaxed));
    int err = weft__await_word_until(self, &t->word, UINT64_MAX);
    if (err) return err;
  }
  return task_outcome(t, result);
}

__attribute__((noinline)) /* check_inline_frames's `here` */
int weft_await(weft_task_t *t, void **result) { return await_task(t, result, "weft_await"); }

static void release_task(weft_task_t *t, const char *what) {
  /* A slab the descriptor scavenger gave back reads as zeros: a handle into it was released
   * already (every descriptor there was free), and its zeroed word would read as a running
   * task's and "detach" it (review, session 34: the second release passed in silence once the
   * runtime had idled a second). The word is read here anyway whenever r > 0. */
  struct weft_runtime *rt = weft__task_rt(t);
  int r = WEFT__LIKELY(rt != NULL) ? join_release_handle(&t->word) : -1;
  if (WEFT__UNLIKELY(r < 0))
    weft__die("weft: %s was given a task handle that was already released.", what);
  if (r > 0) weft__task_free(rt, weft__worker_self(), t);
  /* r == 0: it runs on, detached; its completion frees it */
}

void weft_task_release(weft_task_t *t) {
  if (t) release_task(t, "weft_task_release");
}

static int await_until_named(weft_task_t *t, uint64_t deadline_ns, void **result,
                             const char *what, bool may_park) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  refuse_given_back(t, what);
  if (!task_is_done(t)) {
    weft__worker_t *w = weft__worker_self();
    struct weft_task *self = weft__awaiting_task(w, what);
    if (self == t) weft__die("weft: %s: a task awaited itself, which can never finish.", what);
    /* No inline run here: a deadline means the caller wants the task run beside it. */
    weft__wait_reason(self, WEFT__WAIT_TASK, atomic_load_explicit(&t->id, memory_order_relaxed));
    int err = weft__await_word_until(self, &t->word, deadline_ns);
    /* nothing of the wait is linked now: past destroy's shutdown, a cancelled caller parks */
    if (err) return err == WEFT_ECANCELED && self && may_park ? weft__cancelled(self) : err;
  }
  return task_outcome(t, result);
}

int weft_await_until(weft_task_t *t, uint64_t deadline_ns, void **result) {
  return await_until_named(t, deadline_ns, result, "weft_await_until", true);
}

static uint64_t deadline_after(uint64_t timeout_ns) {
  uint64_t now = weft_now_ns();
  return timeout_ns > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + timeout_ns;
}

int weft_await_timeout(weft_task_t *t, uint64_t timeout_ns, void **result) {
  return await_until_named(t, deadline_after(timeout_ns), result, "weft_await_timeout", true);
}

/* ---- weft_join's own inline run (#13, session 8) ---------------------------------------------
 * The fork-join idiom's common case: the joiner holds t's handle, t's start entry is the newest
 * in the joiner's own deque (no thief took it), and the join releases the handle right after.
 * The generic path (await_task, run_inline, weft__task_complete, release_task) publishes t's
 * completion for awaiters that the idiom cannot have: a completion CAS (lock cmpxchg) that sets
 * DONE, a result stored for readers, a release check, and a worker lookup in each of four calls
 * (~220 instructions of fib's ~360 per spawn+join, callgrind). Here: t runs as a plain call
 * exactly as run_inline runs it (current, the dump's INLINE reason, n_inlined, the spawn edge,
 * started, cancel and deadline scopes: t is its own task), and when it returns its descriptor
 * goes straight back to the worker's free list if its word is still 0 — held, no waiter, not
 * done — with the outcome handed to the caller from registers: no locked instruction.
 * Why a plain load of the word suffices: the only writers of a held, unfinished task's word are
 * other awaiters of the same handle (their node) and its release. Another thread that awaits a
 * handle while its holder joins it already races the join's release (it reads the result after
 * being woken, when the joiner may have freed the descriptor: weft.h, "using a handle after
 * releasing it is undefined"), so the idiom's joiner is the word's only user. A word found
 * not 0 (someone awaits it anyway) takes the generic completion, which delivers to them — best
 * effort only: an awaiter that adds its node after that load is lost with the free (review),
 * as such a program was already undefined. What differs, observably: nothing but the descriptor's last state
 * — a dump taken in the instant between t's return and the free shows t not done rather than
 * done (both are racy snapshots).
 * Rejected: the same shortcut for weft_await (the handle stays valid after it: the result and
 * DONE must be published) and for a cancelled-before-start t (rare: run_inline's way). */
static int join_inline(weft__worker_t *w, struct weft_task *self, struct weft_task *t,
                       void **result) {
  weft__inline_begin(self, t);
  weft__set_current(w, t);
  weft__tsan_acquire(&t->fn); /* the spawn edge, as run_inline's */
  weft_fn fn = t->fn; /* read before weft__task_started puts runs_on in its bytes */
  void *arg = t->arg;
  weft__task_started_as(t, self->runs_on, WEFT__STARTED | WEFT__JOINED); /* we hold its handle */
  char here; /* this frame: the child's are below it (check_inline_frames) */
  void *r = fn(arg);
  w = weft__worker_self(); /* t may have suspended and resumed elsewhere */
  if (WEFT__UNLIKELY(w->frames.head)) check_inline_frames(w, self, &here);
  weft__stat_bump(&w->n_inlined); /* at its end, as run_inline's */
  weft__set_current(w, self);
  /* weft__task_complete's outcome rule: a delivered cancel ends t cancelled unless it failed
   * otherwise (relaxed: t's own bits, and t ran on this thread) */
  uint32_t state = atomic_load_explicit(&t->state, memory_order_relaxed);
  if ((state & WK_CANCEL_DELIVERED) && !t->error) t->error = WEFT_ECANCELED;
  /* A named t drops its name before the quick free below, as weft__task_free does (review,
   * session 31: a dump formatted the freed name of a joined task once its descriptor was
   * reused; ASan). */
  if (WEFT__UNLIKELY(state & WK_NAMED)) weft__task_forget_name(w->rt, t);
  if (WEFT__UNLIKELY(!join_holder_untouched(&t->word))) { /* join_impl.h, the relacy model's too */
    weft__task_complete(t, r); /* someone awaits it after all: publish, deliver */
    int err = task_outcome(t, result);
    release_task(t, "weft_join");
    return err;
  }
  int err = t->error;
  if (result) *result = err == WEFT_ECANCELED ? NULL : r;
  weft__probe_hit(WEFT__PROBE_JOIN_INLINE);
  weft__task_free_cached(w, t);
  return err;
}

/* weft_join's record (weft__discard_hook_t): its caller was discarded while it held t. */
static void join_discarded(void *t) { weft__task_release_discarded(t); }

static int join_waiting(struct weft_task *self, weft_task_t *t, void **result);

__attribute__((noinline)) /* check_inline_frames's `here` */
int weft_join(weft_task_t *t, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = w ? weft__current(w) : NULL;
  /* The idiom's case (see above): a task joins an unfinished, unawaited task of its own deque's
   * newest entry, has no cancel pending (relaxed: await_task's checkpoint handles a request
   * seen late the same way as one that arrives during the run) and t was not cancelled before
   * its start. Taking the entry back (the deque's take_if) makes the run exactly-once. t's word:
   * relaxed, a hint — join_inline checks it again after the run (holder_untouched). */
  if (WEFT__LIKELY(self && self != t && atomic_load_explicit(&t->word, memory_order_relaxed) == 0 &&
                   !scope_applies(self) &&
                   !(atomic_load_explicit(&self->state, memory_order_relaxed) &
                     WK_CANCEL_REQUESTED))) {
    if (WEFT__LIKELY(take_back(w, t))) {
      /* acquire: a canceller's writes come with its request (as wake_checkpoint's) */
      if (WEFT__LIKELY(!(atomic_load_explicit(&t->state, memory_order_acquire) & WK_CANCEL_REQUESTED)))
        return join_inline(w, self, t, result);
      run_inline(w, t); /* cancelled before it started: it ends unrun, as the generic path's */
      int err = task_outcome(t, result);
      release_task(t, "weft_join");
      return err;
    }
  }
  return join_waiting(self, t, result);
}

/* weft_join's general path, out of line: its record's frame kept off the inline path's (in
 * weft_join itself it cost fib ~2.5 instructions a join in saved registers). While we wait (or
 * run t inline through await_task), t's handle is ours to release: a record gives it back if
 * destroy discards us here. None for a t already done: no wait. */
static int __attribute__((noinline)) join_waiting(struct weft_task *self, weft_task_t *t,
                                                  void **result) {
  weft__discard_hook_t released_if_discarded;
  bool hooked = self && !task_is_done(t);
  if (hooked) weft__discard_hook_push(self, &released_if_discarded, join_discarded, t);
  int err = await_task(t, result, "weft_join");
  if ((err == WEFT_ECANCELED || err == WEFT_ETIMEDOUT) && !task_is_done(t)) {
    /* we were cancelled (or our deadline scope passed): t must not run on unowned */
    weft_cancel(t);
    if (weft__await_shielded(t) == WEFT_ECANCELED) err = WEFT_ECANCELED; /* came meanwhile */
  }
  if (hooked) weft__discard_hook_pop(self, &released_if_discarded);
  release_task(t, "weft_join");
  return err;
}

/* ---- Cancellation --------------------------------------------------------------------------- */


int weft__current_error(void) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = w ? weft__current(w) : NULL;
  if (!self) return 0;
  if (self->error) return self->error;
  /* relaxed: the task's own bits */
  return atomic_load_explicit(&self->state, memory_order_relaxed) & WK_CANCEL_DELIVERED
             ? WEFT_ECANCELED
             : 0;
}

/* Shield levels. The depth's byte holds 255; the API may take SHIELD_API_MAX of them and the
 * last is the runtime's own, for the cleanup waits that must not be cut short: weft_await_for's,
 * weft_join's and the gathers' await of a child they cancelled or could not gather (a failed
 * spawn in weft_gather_calls) — weft__await_shielded —, a group wait's cleanup, a condition's
 * relock. So such a wait always finds its level. Cleanup levels never nest in
 * one task: each is held around a wait that runs no user code as that task (an inline child
 * runs as itself, with its own depth). Rejected (sessions 20-26): sharing all 255 with the
 * API, where each cleanup wait needed a case of its own at the full depth (held to its end
 * without a shield, scopes set aside): three of them were found broken in review. */
enum { SHIELD_API_MAX = 254, SHIELD_LEVELS = WK_SHIELD / WK_SHIELD_ONE };

int weft_shield_begin(void) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  if (shield_depth(self) >= SHIELD_API_MAX) return WEFT_ERANGE;
  /* relaxed: the owner's own bits; a canceller reads them in its CAS loop */
  atomic_fetch_add_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed);
  return 0;
}

/* A cleanup wait's level, ended with weft_shield_end (which delivers a cancel that came
 * meanwhile: the caller reports it). 0, or WEFT_EPERM on a plain thread (it just waits). */
int weft__shield_begin_cleanup(void) {
  struct weft_task *self = weft__running_task(weft__worker_self());
  if (!self) return WEFT_EPERM;
  weft__shield_hold(self);
  return 0;
}

/* The same level for a wait whose end delivers nothing (the cancel stays pending for the
 * caller's next suspension point): a condition's relock. self is a task. */
void weft__shield_hold(struct weft_task *self) {
  if (WEFT__UNLIKELY(shield_depth(self) >= SHIELD_LEVELS))
    weft__die("weft: internal: a cleanup wait found the runtime's own shield level taken.");
  atomic_fetch_add_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed); /* as above */
}

void weft__shield_unhold(struct weft_task *self) {
  atomic_fetch_sub_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed); /* as above */
}

int weft_shield_end(void) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  /* relaxed: as above */
  uint32_t s = atomic_load_explicit(&self->state, memory_order_relaxed);
  if (!(s & WK_SHIELD))
    weft__die("weft: weft_shield_end was called without a matching weft_shield_begin.");
  atomic_fetch_sub_explicit(&self->state, WK_SHIELD_ONE, memory_order_relaxed);
  /* The scopes begun inside this shield are outside any later shield at its depth: their
   * recorded depth comes down to ours (review, session 19: a later shield at the same depth
   * took them for its own, and the cleanup waits it holds back timed out). */
  uint32_t depth = ((s - WK_SHIELD_ONE) & WK_SHIELD) / WK_SHIELD_ONE;
  for (weft_deadline_t *scope = weft__task_scope(self); scope; scope = scope->outer)
    if (scope->shield_depth > depth) scope->shield_depth = depth;
  /* Reporting the cancel delivers it: the task ends cancelled unless it fails otherwise. */
  return wake_checkpoint(&self->state) ? WEFT_ECANCELED : 0;
}

int weft_cancelling(void) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return 0;
  /* relaxed: a query; the next suspension point acts on it with acquire */
  return (atomic_load_explicit(&self->state, memory_order_relaxed) &
          WK_CANCEL_REQUESTED) != 0;
}

void *weft_fail(int err) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) weft__die("weft: weft_fail was called outside a task.");
  if (err >= 0) weft__die("weft: weft_fail was given %d; a task's error must be negative.", err);
  self->error = err;
  return NULL;
}

/* Awaits t with cancellation held back (cleanup that must see t end). A thread just awaits.
 * Returns WEFT_ECANCELED where a cancel came meanwhile: the shield's end delivered it, so the
 * caller must report it (review, session 26: dropped, it ended the task cancelled with no call
 * having said so). The cleanup level holds back every deadline scope begun outside it, so the
 * wait ends only with t. */
int weft__await_shielded(weft_task_t *t) {
  int shield = weft__shield_begin_cleanup();
  await_task(t, NULL, "weft_await");
  return shield == 0 ? weft_shield_end() : 0; /* WEFT_ECANCELED: a cancel came meanwhile */
}

int weft_await_for(weft_task_t *t, uint64_t timeout_ns, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  /* no park inside: a cancelled caller cancels t and awaits its unwinding first */
  int err = await_until_named(t, deadline_after(timeout_ns), result, "weft_await_for", false);
  if (err != WEFT_ETIMEDOUT && err != WEFT_ECANCELED) return err;
  if (task_is_done(t)) return err == WEFT_ETIMEDOUT ? task_outcome(t, result) : err;
  /* Timed out, or we were cancelled: cancel t and wait for it to unwind (asyncio.wait_for). */
  weft_cancel(t);
  if (weft__await_shielded(t) == WEFT_ECANCELED) err = WEFT_ECANCELED; /* delivered: report it */
  int outcome = task_outcome(t, result);
  if (err == WEFT_ETIMEDOUT && outcome != WEFT_ECANCELED) return outcome; /* it finished anyway */
  if (result) *result = NULL;
  return err;
}

/* ---- Gather ------------------------------------------------------------------------------- */

enum { GATHER_ON_STACK = 16 }; /* picked: waiter nodes per chunk, 384 bytes of the stack */

/* Whether every task in tasks[0..n) is done (any: one of them). */
static bool tasks_done(weft_task_t *const *tasks, size_t n, bool any) {
  for (size_t i = 0; i < n; i++)
    if (task_is_done(tasks[i]) == any) return any;
  return !any;
}

/* Waits until every task in tasks[0..n) is done (or, any: one of them; or the deadline, or a
 * cancel), with one waiter node each from `nodes`: 0, WEFT_ETIMEDOUT or WEFT_ECANCELED. */
static int wait_tasks(struct weft_task *self, weft_task_t *const *tasks, size_t n,
                      weft__waiter_t *nodes, bool any, uint64_t deadline_ns) {
  deadline_ns = scoped_deadline(self, deadline_ns);
  /* A deadline already passed (a scope's, or 0: a poll): no wait — unless what is waited for is
   * done already, as a thread's wait would find (review, session 19: a task's wait_any with
   * deadline 0 never saw a finished task). No clock read without one. */
  if (self && deadline_ns != UINT64_MAX && deadline_ns <= weft_now_ns() &&
      !tasks_done(tasks, n, any)) /* a cancel first, as await_word */
    return weft__checkpoint(self) ? WEFT_ECANCELED : WEFT_ETIMEDOUT; /* callers clean up */
  if (self && !wake_park_begin(&self->state, true)) return WEFT_ECANCELED; /* callers clean up */
  weft__join_t j;
  join_init(&j, self, 1, deadline_ns != UINT64_MAX); /* 1: our hold while we link */
  j.any = any;
  j.nodes = nodes;
  size_t waiting = 0;
  for (size_t i = 0; i < n; i++) {
    if (task_is_done(tasks[i])) {
      if (any) break;
      continue;
    }
    /* A gather that waits for its own caller never ends (review, session 30: it hung, where
     * weft_join aborts); checked here, where a task is about to be waited for, not on every
     * task gathered (+1 % of spawn 10^6's instructions). Not for a wait for any one. */
    if (WEFT__UNLIKELY(tasks[i] == self) && !any)
      weft__die("weft: weft_gather or weft_gather_status was given the task that called it, "
                "which can never finish.");
    weft__waiter_t *node = &nodes[waiting];
    node->join = &j;
    node->word = &tasks[i]->word;
    /* Count before linking: the child may finish and arrive the moment it is linked. */
    atomic_fetch_add_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: we hold +1 */
    if (join_add_waiter(&tasks[i]->word, node)) {
      j.nnodes = ++waiting; /* linked: a completion may arrive at it already */
    } else {
      atomic_fetch_sub_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: as above */
      if (any) break;
    }
  }
  bool all_linked = waiting == n;
  if (!any && join_count_release(&j.pending)) weft__join_event(&j, WK_BY_COMPLETION); /* our hold */
  if (any && !all_linked) weft__join_event(&j, WK_BY_COMPLETION); /* one was done already */
  if (!waiting) return self ? task_wait_skipped(self) : 0;
  if (self) return task_wait(self, &j, deadline_ns);
  int err = thread_wait(&j, deadline_ns);
  if (!err && any) weft__join_remove_nodes(&j); /* the others are still linked */
  return err;
}

/* Waits for all of tasks[0..n) in chunks of GATHER_ON_STACK nodes on this stack: no
 * allocation, so no out-of-memory path and nothing left on the heap if the waiting task is
 * discarded. Costs at most n/16 suspensions instead of one; chunks whose tasks are all done by
 * then cost none. Rejected: a malloc'd node per task (one wake-up for any n, but a gather could
 * then fail, or leak when discarded). */
static int wait_all(struct weft_task *self, weft_task_t *const *tasks, size_t n) {
  weft__waiter_t nodes[GATHER_ON_STACK];
  for (size_t i = 0; i < n; i += GATHER_ON_STACK) {
    int err = wait_tasks(self, tasks + i, n - i < GATHER_ON_STACK ? n - i : GATHER_ON_STACK, nodes,
                         false, UINT64_MAX);
    if (err) return err;
  }
  return 0;
}

static int gather_checked(weft_task_t *const *tasks, size_t n, const char *what,
                          struct weft_task **self) {
  if (n && !tasks) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!tasks[i]) return WEFT_EINVAL;
  *self = weft__awaiting_task(weft__worker_self(), what);
  return 0;
}

/* Runs what it can inline, newest first (the children we spawned last are the newest entries
 * of our deque), then waits for the rest. On a cancel, the unfinished ones are cancelled too
 * (asyncio.gather) and WEFT_ECANCELED returns at once; the handles stay the caller's. */
/* Cancels the unfinished ones of tasks[0..n) (the gatherer was cancelled, or its scope
 * passed: asyncio.gather cancels its children) and passes err on. */
static int gather_abandon(weft_task_t *const *tasks, size_t n, int err) {
  for (size_t i = 0; i < n; i++)
    if (!task_is_done(tasks[i])) weft_cancel(tasks[i]);
  return err;
}

/* A gather whose caller's cancel is delivered before it waits: its children are cancelled
 * first, then the answer (weft__cancelled: past destroy's shutdown, the caller parks). */
static int gather_cancelled(struct weft_task *self, weft_task_t *const *tasks, size_t n) {
  gather_abandon(tasks, n, 0);
  return weft__cancelled(self);
}

/* A cancelled task that gathers (shielded: a group's cleanup after its owner was cancelled)
 * waits for its children to unwind: the dump says so (relaxed: as weft_cancelling). */
static weft__wait_t gather_reason(struct weft_task *self) {
  return self && (atomic_load_explicit(&self->state, memory_order_relaxed) & WK_CANCEL_REQUESTED)
             ? WEFT__WAIT_CANCELLED
             : WEFT__WAIT_GATHER;
}

static int gather_wait(struct weft_task *self, weft_task_t *const *tasks, size_t n,
                       bool spawned_in_reverse, bool run_inline) {
  if (!n) return 0; /* nothing to wait for: no suspension point (review, session 32) */
  if (self && wake_checkpoint(&self->state)) return gather_cancelled(self, tasks, n);
  /* The inline pass runs the children one after another here; what it keeps (lib/worker.c's
   * "Private spawns") goes onto the deque when a worker is idle or asks — before the pass and
   * before each child — where idle workers take the older ones meanwhile (review: without it,
   * a gather of CPU-bound calls ran serially). Not unconditionally: skynet's gathers of ten
   * would pay a second store and a fenced take per child (+11 % instructions). */
  /* Not under a deadline scope: an inline run cannot be cut short at its deadline (review,
   * session 26: a gather in a 5 ms scope returned after its child's 50 ms). */
  if (run_inline && scope_applies(self)) run_inline = false;
  for (size_t k = 0; self && run_inline && k < n; k++) { /* newest first: reverse spawn order */
    weft_task_t *t = tasks[spawned_in_reverse ? k : n - 1 - k];
    if (task_is_done(t)) continue;
    /* A cancel that came during the last child's run stops the pass: the children not yet
     * started end unrun (review, session 19: the pass ran them all). */
    if (k && wake_checkpoint(&self->state)) return gather_cancelled(self, tasks, n);
    weft__worker_t *w = weft__worker_self(); /* the last inline run may have moved us */
    if (WEFT__UNLIKELY(weft__priv_wanted(w))) weft__priv_share(w);
    try_inline_on(w, t);
  }
  weft__wait_reason(self, gather_reason(self), n);
  int err = wait_all(self, tasks, n);
  if (err) return gather_abandon(tasks, n, err);
  if (weft__san_hooks() & WEFT__SAN_TSAN) /* the completion edges (weft__task_complete) */
    for (size_t i = 0; i < n; i++) __tsan_acquire(&tasks[i]->word);
  return 0;
}

__attribute__((noinline)) /* check_inline_frames's `here` */
int weft_gather(weft_task_t *const *tasks, size_t n, void **results) {
  struct weft_task *self;
  int err = gather_checked(tasks, n, "weft_gather", &self);
  if (!err) err = gather_wait(self, tasks, n, false, true);
  if (err) return err;
  int first = 0; /* asyncio.gather's default: the first error, and every result regardless */
  for (size_t i = 0; i < n; i++) {
    if (results) results[i] = weft__task_result(tasks[i]);
    if (!first) first = tasks[i]->error;
  }
  return first;
}

static int gather_status(weft_task_t *const *tasks, size_t n, void **results, int *errors,
                         bool run_inline) {
  struct weft_task *self;
  int err = gather_checked(tasks, n, "weft_gather_status", &self);
  if (!err) err = gather_wait(self, tasks, n, false, run_inline);
  if (err) return err;
  for (size_t i = 0; i < n; i++) {
    if (results) results[i] = weft__task_result(tasks[i]);
    if (errors) errors[i] = tasks[i]->error;
  }
  return 0;
}

__attribute__((noinline)) /* check_inline_frames's `here` */
int weft_gather_status(weft_task_t *const *tasks, size_t n, void **results, int *errors) {
  return gather_status(tasks, n, results, errors, true);
}

/* For task groups: never inline, so that a cancel of the waiter reaches it at once (a child
 * run inline would hold the cancel until it returned). */
int weft__gather_apart(weft_task_t *const *tasks, size_t n) {
  return gather_status(tasks, n, NULL, NULL, false);
}

enum { ANY_ON_STACK = 64 }; /* picked: a wait for any of more tasks allocates its nodes */

/* A wait for any one of tasks that are all the caller never ends, as weft_await_until of
 * itself, which aborts (review, session 31: it hung). With another task among them it is a
 * wait for that one. */
static void __attribute__((noinline, cold)) refuse_waiting_only_for_self(
    struct weft_task *self, weft_task_t *const *tasks, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (tasks[i] != self) return;
  weft__die("weft: weft_wait_any: a task waited only for itself, which can never finish.");
}

int weft_wait_any(weft_task_t *const *tasks, size_t n, uint64_t deadline_ns, size_t *index) {
  struct weft_task *self;
  int err = n ? gather_checked(tasks, n, "weft_wait_any", &self) : WEFT_EINVAL;
  if (err) return err;
  if (WEFT__UNLIKELY(self && tasks[0] == self)) refuse_waiting_only_for_self(self, tasks, n);
  weft__waiter_t local[ANY_ON_STACK];
  weft__waiter_t *nodes = n <= ANY_ON_STACK ? local : malloc(n * sizeof *nodes);
  if (!nodes) return WEFT_ENOMEM;
  weft__discard_hook_t freed_if_discarded;
  bool hooked = self && nodes != local; /* a thread is never discarded */
  if (hooked) weft__discard_hook_push(self, &freed_if_discarded, free, nodes);
  err = wait_tasks(self, tasks, n, nodes, true, deadline_ns);
  if (hooked) weft__discard_hook_pop(self, &freed_if_discarded);
  if (nodes != local) free(nodes);
  if (err) return (int)weft__answer(err); /* all undone */
  for (size_t i = 0; i < n; i++)
    if (task_is_done(tasks[i])) {
      weft__tsan_acquire(&tasks[i]->word); /* the completion edge (weft__task_complete) */
      if (index) *index = i;
      return 0;
    }
  weft__die("weft: internal error: weft_wait_any woke with no task done.");
}

/* What weft_gather_calls holds while its children run: their handles, the non-NULL entries of
 * tasks[0..n), an array that is on the heap beyond GATHER_ON_STACK. */
typedef struct {
  weft_task_t **tasks;
  size_t n;
  bool heap;
} calls_held_t;

/* The caller was discarded by destroy (weft__discard_hook_t): nobody else will release them. */
static void calls_discarded(void *ctx) {
  calls_held_t *held = ctx;
  for (size_t i = 0; i < held->n; i++) weft__task_release_discarded(held->tasks[i]); /* NULL: none */
  if (held->heap) free(held->tasks);
}

__attribute__((noinline)) /* check_inline_frames's `here` */
int weft_gather_calls(const weft_call_t *calls, size_t n, void **results) {
  if (n && !calls) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!calls[i].fn) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__running_task(w);
  if (!self) return WEFT_EPERM;
  /* NULL until its spawn stores it (and only a spawn that succeeds does): a spawn may suspend
   * us once it has stored the handle (spawn_throttle runs the child first; chaos mode yields),
   * and a discard then must release that one too (review, session 23). Zeroed at once rather
   * than tracked by a count the record reads: that count, kept in memory across each spawn
   * call, cost skynet ~4 instructions a spawn (a memset call, ~2). */
  weft_task_t *local[GATHER_ON_STACK] = {0};
  weft_task_t **tasks = n <= GATHER_ON_STACK ? local : calloc(n, sizeof *tasks);
  if (!tasks) return WEFT_ENOMEM;
  calls_held_t held = {.tasks = tasks, .n = n, .heap = tasks != local};
  weft__discard_hook_t released_if_discarded;
  weft__discard_hook_push(self, &released_if_discarded, calls_discarded, &held);
  int err = 0;
  size_t first = n;
  /* Spawned in reverse so that the first call is the newest entry of our deque: the inline
   * pass (newest first) then runs them in argument order, A, B, C, as asyncio starts them. */
  while (first > 0 && !err) {
    err = weft__spawn_at(&tasks[first - 1], calls[first - 1].fn, calls[first - 1].arg,
                         __builtin_return_address(0));
    if (!err) first--;
  }
  if (err) { /* the ones spawned still run to their end before we report it: none unowned */
    for (size_t i = first; i < n; i++)
      if (weft__await_shielded(tasks[i]) == WEFT_ECANCELED) err = WEFT_ECANCELED;
  } else {
    err = gather_wait(self, tasks, n, true, true);
    if (err) /* cancelled: our children were cancelled too; they end before we return */
      for (size_t i = 0; i < n; i++)
        if (weft__await_shielded(tasks[i]) == WEFT_ECANCELED) err = WEFT_ECANCELED;
  }
  weft__discard_hook_pop(self, &released_if_discarded);
  int first_error = 0;
  for (size_t i = first; i < n; i++) {
    if (!err && results) results[i] = weft__task_result(tasks[i]);
    if (!err && !first_error) first_error = tasks[i]->error;
    weft_task_release(tasks[i]);
  }
  if (tasks != local) free(tasks);
  return err ? err : first_error;
}
