/*
 * Synchronisation between tasks (and plain threads): asyncio's Event, Lock, Semaphore,
 * BoundedSemaphore and Condition, and Go's WaitGroup, on the waiter queue of lib/waitq.h. A
 * blocked task suspends (its worker runs other tasks); a blocked plain thread blocks.
 *
 * The mutex. One word: LOCKED and WAITERS. Uncontended, lock is one CAS (0 -> LOCKED) and
 * unlock one CAS (LOCKED -> 0). A locker that finds it held spins briefly (the holder is
 * likely running on another worker: a critical section is short), naps its thread once for
 * 50 us (so the holder's worker runs on with the word in its cache: mutex_spin), then queues.
 * The unlock that sees WAITERS takes the slow path: it dequeues the oldest waiter and, like
 * Go's sync.Mutex in normal mode, releases the lock and wakes that waiter to compete for it (a
 * running task may barge in first: no lock convoy, where every unlock would wait for a
 * sleeping task to be scheduled). A woken waiter that loses requeues at the front. Starvation:
 * a waiter that has waited more than WEFT_MUTEX_STARVE_NS (1 ms, Go's figure) since it first
 * queued marks itself starving; an unlock that finds a starving waiter at the head hands the
 * lock over directly (LOCKED is never cleared, so no one can barge). Rejected: strict FIFO
 * hand-off on every contended unlock (fair, but each unlock then waits for a context switch:
 * throughput collapses to one critical section per wake-up), and an owner field (tasks move
 * between threads, and Go and asyncio allow unlock from another task).
 *
 * Semaphore, event, condition and wait group are a counter or flag beside a waiter queue, all
 * under the queue's spinlock; releases hand the permit straight to the oldest waiter (FIFO, so
 * a stream of try_acquires cannot starve a waiter).
 */
#include "internal.h"
#include "join.h"
#include "waitq.h"
#include "wake.h"

#include <stdlib.h>

/* ---- The waiter's side (waitq.h) -------------------------------------------------------------- */

uint32_t weft__wq_state(struct weft_task *self) {
  /* relaxed: the task's own bits */
  return self ? atomic_load_explicit(&self->state, memory_order_relaxed) : 0;
}

void weft__wq_undeliver(struct weft_task *self, uint32_t state_before) {
  if (!self || (state_before & WK_CANCEL_DELIVERED)) return;
  /* relaxed: only the owner writes DELIVERED; REQUESTED stays, so the next suspension point
   * still delivers the cancel */
  atomic_fetch_and_explicit(&self->state, ~WK_CANCEL_DELIVERED, memory_order_relaxed);
}

int weft__wq_block(struct weft_task *self, weft__wq_wait_t *w, uint64_t deadline_ns,
                   void (*abandon)(struct weft_task *t, void *ctx), void *ctx) {
  return weft__await_word_abandonable(self, &w->word, deadline_ns, abandon, ctx);
}

enum { WQ_NAP_NS = 50000 }; /* measured (#11, chan): a contended waiter's nap, waitq.h's top */
enum { SETTLE_SPINS = 64 }; /* picked: the deliverer is a few instructions from the end */

void weft__wq_settle(weft__wq_wait_t *w) {
  /* acquire: the peer's writes (value, status) and its last touch of the word (BUSY's end) */
  /* The peer dequeued us and is completing: it never suspends there, and it schedules a task
   * waiter only after BUSY ends (wq_wake): a short spin, then yield (it may be preempted). */
  for (unsigned i = 0; (atomic_load_explicit(&w->word, memory_order_acquire) &
                        (WEFT__DONE | WEFT__BUSY)) != WEFT__DONE;
       i++)
    if (i < SETTLE_SPINS)
      wq_pause();
    else
      sched_yield();
  weft__tsan_acquire(&w->word); /* the hand-off edge (wq_wake) */
}


/* wq_lock's contended path (waitq.h's "The lock"): WQ_SPIN_TRIES tries a pause apart, then a
 * nap of WQ_NAP_NS on the lock word between tries. Nothing wakes a nap (wq_unlock stays one
 * plain store): the futex only takes this thread off its CPU until the nap ends, or returns at
 * once if the lock was released before it slept. */
void weft__wq_lock_slow(weft__spin_t *l) {
  for (unsigned i = 0;; i++) {
    if (i < WQ_SPIN_TRIES)
      wq_pause();
    else
      weft__futex_wait(&l->held, 1, weft_now_ns() + WQ_NAP_NS);
    /* as wq_lock: relaxed read first, acquire exchange (pairs with wq_unlock's release) */
    if (!atomic_load_explicit(&l->held, memory_order_relaxed) &&
        !atomic_exchange_explicit(&l->held, 1, memory_order_acquire))
      return;
  }
}

/* Waits for the peer's `done` (its last touch of the wait): it dequeued us and is a few
 * instructions from it, never suspending there. */
static void wq_wait_done(weft__wq_wait_t *w) {
  /* acquire: pairs with the peer's release store, its last touch of our frame */
  for (unsigned i = 0; !atomic_load_explicit(&w->done, memory_order_acquire); i++)
    if (i < SETTLE_SPINS)
      wq_pause();
    else
      sched_yield();
}

/* Destroy's handshake with an outside peer (lib/abandon_impl.h, model-checked by
 * tests/model/abandon_model.cpp): weft__wq_abandon_begin, weft__wq_abandon_end (destroy's),
 * weft__wq_peer_waits_abandon (the peer's, declared in waitq.h). */
#define AB_FLAG _Atomic uint32_t
#define AB_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define AB_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define AB_EXCHANGE(obj, v, mo) atomic_exchange_explicit(&(obj), (v), (mo))
#define AB_YIELD() sched_yield()
#define AB_RLX memory_order_relaxed
#define AB_ACQ memory_order_acquire
#define AB_REL memory_order_release
#define AB_ACQ_REL memory_order_acq_rel
#define AB_FN(name) weft__wq_##name
#define AB_LINKAGE /* the peer's, for lib/waitq.h: out of line, only a peer from outside calls it */
#define AB_PEER_WAITS() weft__probe_hit(WEFT__PROBE_PEER_HELD) /* tests (test_destroy) */
bool weft__wq_abandon_begin(AB_FLAG *f);
void weft__wq_abandon_end(AB_FLAG *f);
#include "abandon_impl.h"

/* Whether a peer has handed a discarded direct waiter its value: its wake won (the task reads
 * WOKEN by completion) or lost to a cancel's and said `done`. Read without the queue's lock:
 * the peer's call may have returned since, and its caller freed the object (an event set,
 * then destroyed: review, session 24, which ASan reproduced). acquire: the peer's writes (its
 * `settle`) come with either. After weft__wq_abandon_begin (lib/abandon_impl.h): a peer from
 * outside that has not marked the wait by then waits, inside its call, until
 * weft__wq_abandon_end; one that had is taken for a delivery before this look. */
static bool wq_direct_delivered(weft__wq_wait_t *w) {
  if (wake_woken_by_completion(atomic_load_explicit(&w->task->state, memory_order_acquire)))
    return true;
  return atomic_load_explicit(&w->done, memory_order_acquire) != 0;
}

static void wq_give_back(weft__wq_wait_t *w);

void weft__wq_abandon(weft__wq_wait_t *w) {
  bool wait, delivered = weft__wq_abandon_begin(&w->abandoning);
  if (delivered) weft__probe_hit(WEFT__PROBE_PEER_MARKED);
  delivered = delivered || wq_direct_delivered(w);
  if (delivered) {
    wait = w->settle;
  } else {
    weft__pause(WEFT__PAUSE_ABANDON_LOOKED); /* tests: a peer wakes the task here */
    wq_lock(w->lock);
    bool queued = w->node->queued;
    wait = !queued && w->settle;
    delivered = !queued;
    if (queued) wq_unlink(w->q, w->node);
    wq_unlock(w->lock);
  }
  weft__wq_abandon_end(&w->abandoning); /* before the wait: a peer may wait for it */
  if (wait) wq_wait_done(w); /* an outside peer: its inject push touches the runtime */
  if (delivered) wq_give_back(w);
}

/* A direct wait's record: a timer entry on the task's stack, as join.c's waits use one, with
 * ctx the wait. Never armed as a timer: its fire is called only by destroy's
 * weft__wait_abandon, and abandons the wait. A function of the record, not a call from join.c
 * into this file, so that join.c stays below the primitives in lib/'s link graph. */
static void wq_record_abandon(weft__timer_entry_t *e) { weft__wq_abandon(e->ctx); }

/* The direct wait (waitq.h's top): a task, no deadline. Called with the lock held and n queued;
 * the lock is released by the scheduler once the task is switched out and PARKED. */
static int wq_wait_direct(struct weft_task *self, weft__spin_t *lock, weft__wq_t *q,
                          weft__wq_node_t *n) {
  weft__wq_wait_t *w = n->wait;
  uint32_t before = weft__wq_state(self);
  /* No park_begin (the commit does its work: wake_impl.h's park_commit_direct); a cancel
   * pending already is delivered here, as park_begin would, without a switch. */
  if (WEFT__UNLIKELY(wake_cancel_pending(before)) && wake_checkpoint(&self->state)) {
    wq_unlink(q, n);
    wq_unlock(lock);
    return weft__cancelled(self);
  }
  w->task = self;
  atomic_init(&w->done, 0);
  atomic_init(&w->abandoning, AB_NONE);
  w->settle = false;
  w->lock = lock;
  w->q = q;
  w->node = n;
  weft__timer_entry_t record = {.fire = wq_record_abandon, .ctx = w}; /* for destroy */
  self->wait = &record;
  weft__worker_t *wk = weft__worker_self();
  wk->after_lock = &lock->held;
  weft__suspend(wk, WEFT__AFTER_PARK_UNLOCK, self);
  uint32_t side = wake_park_end(&self->state);
  self->wait = NULL;
  if (side == WK_BY_COMPLETION) {
    if (w->settle) wq_wait_done(w); /* an outside peer: it touches us after its CAS */
    return w->status;
  }
  wq_lock(lock); /* a cancel woke us: did a peer dequeue us first? */
  bool queued = n->queued;
  if (queued) wq_unlink(q, n);
  wq_unlock(lock);
  if (queued) return weft__cancelled(self); /* nothing was handed over; the node is out */
  wq_wait_done(w);
  weft__wq_undeliver(self, before); /* the hand-off won: report it, keep the cancel pending */
  return w->status;
}

/* Destroy's way out of a word wait (the abandon of weft__wq_block) for a discarded task: its
 * node leaves the queue, or, if a peer dequeued it, the peer's completion of the word is waited
 * out (the peer may be an outside thread still in it: its last touch is the word's BUSY).
 * Without it the node stayed queued on an unmapped stack (review, session 24: a timed receive
 * or semaphore acquire, then a send or release after destroy, faulted in wq_pop). The lock is
 * taken under a hold on the word (join_impl.h's hold_unless_done: a peer's completion waits for
 * it), so that a peer that dequeued the node cannot return and let the object be freed while
 * we look (session 25's model: session 24 looked at DONE, then locked). A word already DONE
 * means delivered: the object may be gone, and is not touched. */
static void wq_word_wait_abandoned(struct weft_task *t, void *ctx) {
  (void)t;
  weft__wq_wait_t *w = ctx;
  if (!join_hold_unless_done(&w->word)) {
    weft__wq_settle(w);
    wq_give_back(w);
    return;
  }
  weft__pause(WEFT__PAUSE_ABANDON_LOOKED); /* tests: a peer delivers here */
  wq_lock(w->lock);
  bool queued = w->node->queued;
  if (queued) wq_unlink(w->q, w->node);
  wq_unlock(w->lock);
  join_unhold(&w->word);
  if (queued) return;
  weft__wq_settle(w);
  wq_give_back(w);
}

/* weft__wq_wait once the caller has dropped the lock (n queued before it did); before: the
 * task's park state taken while it held it. */
static int wq_wait_unlocked(struct weft_task *self, weft__spin_t *lock, weft__wq_t *q,
                            weft__wq_node_t *n, uint64_t deadline_ns, uint32_t before) {
  weft__wq_wait_t *w = n->wait; /* not a direct wait (w->task NULL): these three for destroy */
  w->lock = lock;
  w->q = q;
  w->node = n;
  int err = weft__wq_block(self, w, deadline_ns, wq_word_wait_abandoned, w);
  if (err) {
    wq_lock(lock);
    bool queued = n->queued;
    if (queued) wq_unlink(q, n);
    wq_unlock(lock);
    if (queued) /* nothing was handed over, and the node is out (weft__cancelled may park) */
      return (int)weft__answer(err);
    weft__wq_undeliver(self, before); /* the hand-off won: report it, keep the cancel pending */
  }
  weft__wq_settle(n->wait);
  return n->wait->status;
}

int weft__wq_wait(struct weft_task *self, weft__spin_t *lock, weft__wq_t *q, weft__wq_node_t *n,
                  uint64_t deadline_ns) {
  /* No deadline of its own nor of a scope: the direct wait; else the completion word's. */
  if (self && deadline_ns == UINT64_MAX && !weft__task_scope(self))
    return wq_wait_direct(self, lock, q, n);
  uint32_t before = weft__wq_state(self);
  wq_unlock(lock);
  return wq_wait_unlocked(self, lock, q, n, deadline_ns, before);
}

/* The calling task (NULL on a plain thread); aborts on a worker outside any task. */
static struct weft_task *waiter_self(const char *what) {
  return weft__awaiting_task(weft__worker_self(), what);
}

/* ---- Mutex -------------------------------------------------------------------------------------- */

/* The state word's protocol (lib/mutex_impl.h, shared with the relacy model). Generated names:
 * mx_lock_fast, mx_try_lock, mx_take_or_mark, mx_unlock_fast, mx_wake_clear_bits, mx_clear;
 * MX_LOCKED, MX_WAITERS. */
#define MX_WORD _Atomic uint32_t
#define MX_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define MX_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define MX_FETCH_AND(obj, v, mo) atomic_fetch_and_explicit(&(obj), (v), (mo))
#define MX_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (desired), (mos), (mof))
#define MX_RLX memory_order_relaxed
#define MX_ACQ memory_order_acquire
#define MX_REL memory_order_release
#define MX_FN(name) mx_##name
#include "mutex_impl.h"

enum { MUTEX_HANDED = 0, MUTEX_RETRY = 1 }; /* a woken waiter's status */
/* mutex_spin's: tries between naps, naps before queueing, a nap's length (measured) */
enum { MUTEX_TRIES = 4, MUTEX_NAPS = 1, MUTEX_NAP_NS = 50000 };

struct weft_mutex {
  _Atomic uint32_t state; /* MX_LOCKED | MX_WAITERS (mutex_impl.h) */
  weft__spin_t lock;      /* guards q */
  weft__wq_t q;
};

int weft_mutex_create(weft_mutex_t **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_mutex_t *m = calloc(1, sizeof *m);
  if (!m) return WEFT_ENOMEM;
  *out = m;
  return 0;
}

void weft_mutex_destroy(weft_mutex_t *m) {
  if (!m) return;
  /* relaxed: the destroyer owns m; a destroy racing a lock is the caller's bug */
  if (atomic_load_explicit(&m->state, memory_order_relaxed))
    weft__die("weft: weft_mutex_destroy was called on a mutex that is locked or awaited.");
  free(m);
}

/* The contended lock's wait before queueing (measured, #11, bench/README.md's s8 subsection):
 * MUTEX_TRIES tries with exponential backoff (1, 2, 4, 8 pauses between them), then a nap of
 * MUTEX_NAP_NS on the state word, then the tries again; after MUTEX_NAPS naps the caller
 * queues. As the channel lock's nap (waitq.h's "The lock"): the loser gets off its CPU and the
 * holder's worker runs many critical sections with the word's line in its own cache, so a lock
 * contended from two workers runs at one worker's speed (8 tasks on 2 workers, 8*10^6
 * sections: 220-320 ms before, spinning 16 tries up to 64 pauses apart; ~120 ms now, what one
 * worker alone takes). Nothing wakes a nap (the unlock stays one CAS): the futex returns at
 * once if the word changed before it slept, and a deadline cuts it short; timer slack makes it
 * ~100-150 us at normal priority on this VM (review). Its cost: a holder that cannot run
 * meanwhile — suspended across a wait, or queued on the napping worker — loses that time. So a
 * lock call naps at most once (not again after a lost wake-up: may_nap), and never on a
 * runtime of one worker, where the holder can only be suspended or queued behind the nap (a
 * holder that yields while locked: 174-188 us a contended lock with the nap, 26-53 without).
 * Rejected: queueing sooner (4 tries, no
 * nap: every unlock then wakes a waiter that loses to the running holder and requeues, 330-580
 * ms), a longer spin before the nap (8 tries, up to 128 pauses: ~185 ms), more naps (2, 4:
 * no faster), 20 us naps (the same as 50). */
static bool mutex_spin(weft_mutex_t *m, uint64_t deadline_ns, bool may_nap) {
  for (int nap = 0;; nap++) {
    for (int i = 0, pauses = 1; i < MUTEX_TRIES; i++, pauses *= 2) {
      if (mx_try_lock(&m->state)) return true;
      for (int k = 0; k < pauses; k++) wq_pause();
    }
    if (!may_nap || nap == MUTEX_NAPS) return false;
    uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed); /* a hint: futex checks */
    if (!(s & MX_LOCKED)) continue;
    uint64_t until = weft_now_ns() + MUTEX_NAP_NS;
    weft__futex_wait(&m->state, s, until < deadline_ns ? until : deadline_ns);
  }
}

int weft_mutex_trylock(weft_mutex_t *m) {
  if (!m) return WEFT_EINVAL;
  return weft__tsan_acquired(m, mx_try_lock(&m->state) ? 0 : WEFT_EAGAIN);
}

/* The unlock's slow path, and the hand-on of a woken waiter that gave up: wakes the oldest
 * waiter — with the lock (a starving one), or to compete for it. locked: we hold the lock. */
static void mutex_wake_next(weft_mutex_t *m, bool locked) {
  wq_lock(&m->lock);
  weft__wq_node_t *n = wq_pop(&m->q);
  bool hand = n && n->mutex == WQ_MUTEX_STARVING && locked;
  /* a giving-up waiter with no one behind it clears WAITERS too (mutex_impl.h; review,
   * session 19: destroy aborted on a mutex whose last waiters had given up) */
  mx_clear(&m->state, mx_wake_clear_bits(locked, n != NULL, hand, wq_empty(&m->q)));
  wq_unlock(&m->lock);
  if (hand) weft__probe_hit(WEFT__PROBE_MUTEX_HANDED);
  if (n) wq_wake(n->wait, hand ? MUTEX_HANDED : MUTEX_RETRY);
}

/* A woken waiter that will not compete after all (cancelled, or its deadline passed): passes
 * the wake-up on, or it is lost. Returns the error. */
static int mutex_give_up(weft_mutex_t *m, int err) {
  mutex_wake_next(m, false);
  return err;
}

/* Destroy's give-back of what a peer handed a discarded waiter, once delivered (session 25).
 * Only a mutex's: its lock (HANDED), unlocked, or its wake-up to compete (RETRY), passed on as
 * a waiter that gives up passes it (before, both were lost: the mutex stayed locked for ever,
 * or the waiters behind slept until some other unlock). A mutex, unlike an event, a semaphore
 * or a channel, is alive here: a lock handed over is held, so no one may destroy it, and a
 * woken waiter touches its mutex again in its own call (it competes, or passes the wake-up on),
 * so a mutex must outlive every call on it. What other objects handed over (a permit, a value)
 * stays lost: the object may be gone, as api.md says. */
static void wq_give_back(weft__wq_wait_t *w) {
  if (w->node->mutex == WQ_NOT_MUTEX) return;
  weft_mutex_t *m = (weft_mutex_t *)((char *)w->lock - offsetof(weft_mutex_t, lock));
  if (w->status == MUTEX_HANDED)
    weft_mutex_unlock(m); /* it is locked, by the discarded waiter */
  else if (w->status == MUTEX_RETRY)
    mutex_give_up(m, 0);
}

/* After a wake-up to compete (MUTEX_RETRY): 0 to compete again, or the error to give up with. */
static int mutex_retry_check(struct weft_task *self, uint64_t deadline_ns) {
  if (self && weft__checkpoint(self)) return WEFT_ECANCELED; /* the retry is given up first */
  if (self && weft__scope_check(self)) return WEFT_ETIMEDOUT;
  if (deadline_ns != UINT64_MAX && weft_now_ns() >= deadline_ns) return WEFT_ETIMEDOUT;
  return 0;
}

/* Queues and waits until the lock is ours, the deadline passes or a cancel arrives. Out of
 * line: inlined, its register saves and frame sat on weft_mutex_lock's uncontended path (23
 * instructions a lock, 8 without them: callgrind). */
static __attribute__((noinline)) int mutex_lock_slow(weft_mutex_t *m, uint64_t deadline_ns) {
  weft__worker_t *worker = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(worker, "weft_mutex_lock");
  weft__wait_reason(self, WEFT__WAIT_LOCK, (uintptr_t)m);
  uint64_t since = 0;
  bool front = false, starving = false;
  /* mutex_spin's nap: a plain thread's is its own business; a worker's, only if another
   * worker may be running the holder */
  bool may_nap = !worker || worker->rt->nworkers > 1;
  for (;;) {
    if (mutex_spin(m, deadline_ns, may_nap)) return 0;
    may_nap = false; /* once per call */
    weft__wq_wait_t w;
    weft__wq_node_t n;
    wq_wait_init(&w, false);
    wq_node_init(&n, &w, NULL, 0);
    n.mutex = starving ? WQ_MUTEX_STARVING : WQ_MUTEX_WAITER;
    wq_lock(&m->lock);
    if (mx_take_or_mark(&m->state)) {
      wq_unlock(&m->lock);
      return 0;
    }
    wq_push(&m->q, &n, front);
    weft__probe_hit(WEFT__PROBE_MUTEX_QUEUED);
    if (!since) since = weft_now_ns(); /* only once queued: no clock read on the fast paths */
    int err = weft__wq_wait(self, &m->lock, &m->q, &n, deadline_ns);
    if (err == MUTEX_HANDED) return 0;
    if (err != MUTEX_RETRY) return err; /* timed out or cancelled while queued */
    weft__pause(WEFT__PAUSE_MUTEX_RETRY); /* tests: another locker barges in here */
    if ((err = mutex_retry_check(self, deadline_ns))) return mutex_give_up(m, err);
    front = true; /* a woken waiter that loses goes back to the head (Go's LIFO requeue) */
    starving = weft_now_ns() - since > WEFT_MUTEX_STARVE_NS;
  }
}

int weft_mutex_lock(weft_mutex_t *m, uint64_t deadline_ns) {
  if (!m) return WEFT_EINVAL;
  if (WEFT__LIKELY(mx_lock_fast(&m->state))) return weft__tsan_acquired(m, 0);
  return weft__tsan_acquired(m, mutex_lock_slow(m, deadline_ns));
}

static inline __attribute__((always_inline)) int mutex_unlock(weft_mutex_t *m) {
  int r = mx_unlock_fast(&m->state);
  if (WEFT__LIKELY(r > 0)) return 0;
  if (r < 0) weft__die("weft: weft_mutex_unlock was called on a mutex that is not locked.");
  mutex_wake_next(m, true);
  return 0;
}

/* With a user's TSan: the release edge first (sanitize.h's weft__tsan_on says why apart). */
static __attribute__((noinline, cold)) int mutex_unlock_seen(weft_mutex_t *m) {
  weft__tsan_object_release(m);
  return mutex_unlock(m);
}

int weft_mutex_unlock(weft_mutex_t *m) {
  if (!m) return WEFT_EINVAL;
  if (weft__tsan_on()) return mutex_unlock_seen(m);
  return mutex_unlock(m);
}

/* ---- Semaphore ---------------------------------------------------------------------------------- */

struct weft_sem {
  weft__spin_t lock; /* guards all below */
  size_t value;
  size_t max; /* 0: unbounded */
  weft__wq_t q;
};

int weft_sem_create(weft_sem_t **out, size_t value, size_t max) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  if (max && value > max) return WEFT_EINVAL;
  weft_sem_t *s = calloc(1, sizeof *s);
  if (!s) return WEFT_ENOMEM;
  s->value = value;
  s->max = max;
  *out = s;
  return 0;
}

void weft_sem_destroy(weft_sem_t *s) {
  if (!s) return;
  if (!wq_empty(&s->q))
    weft__die("weft: weft_sem_destroy was called on a semaphore that tasks or threads await.");
  free(s);
}

static int sem_take(weft_sem_t *s, uint64_t deadline_ns, bool wait) {
  wq_lock(&s->lock);
  if (s->value > 0) { /* only when no one waits: a releaser hands straight to the queue */
    s->value--;
    wq_unlock(&s->lock);
    return 0;
  }
  if (!wait) {
    wq_unlock(&s->lock);
    return WEFT_EAGAIN;
  }
  struct weft_task *self = waiter_self("weft_sem_acquire");
  weft__wait_reason(self, WEFT__WAIT_LOCK, (uintptr_t)s);
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, NULL, 0);
  wq_push(&s->q, &n, false);
  return weft__wq_wait(self, &s->lock, &s->q, &n, deadline_ns);
}

int weft_sem_acquire(weft_sem_t *s, uint64_t deadline_ns) {
  return s ? weft__tsan_acquired(s, sem_take(s, deadline_ns, true)) : WEFT_EINVAL;
}

int weft_sem_try_acquire(weft_sem_t *s) {
  return s ? weft__tsan_acquired(s, sem_take(s, 0, false)) : WEFT_EINVAL;
}

int weft_sem_release(weft_sem_t *s) {
  if (!s) return WEFT_EINVAL;
  wq_lock(&s->lock);
  weft__wq_node_t *n = wq_pop(&s->q);
  if (!n) {
    /* asyncio.BoundedSemaphore's ValueError; unbounded, the count's own limit (review,
     * session 26: it wrapped to 0 and every permit was lost) */
    if ((s->max && s->value >= s->max) || s->value == SIZE_MAX) {
      wq_unlock(&s->lock);
      return WEFT_ERANGE;
    }
    s->value++;
  }
  weft__tsan_object_release(s); /* a permit given: not on ERANGE (as a channel's failed send) */
  wq_unlock(&s->lock);
  if (n) wq_wake(n->wait, 0); /* the permit goes straight to the oldest waiter */
  return 0;
}

int weft_sem_value(weft_sem_t *s, size_t *value) {
  if (!s || !value) return WEFT_EINVAL;
  wq_lock(&s->lock);
  *value = s->value;
  wq_unlock(&s->lock);
  return 0;
}

/* ---- Event -------------------------------------------------------------------------------------- */

struct weft_event {
  _Atomic int set; /* read without the lock by is_set and wait's fast path */
  weft__spin_t lock;
  weft__wq_t q;
};

int weft_event_create(weft_event_t **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_event_t *e = calloc(1, sizeof *e);
  if (!e) return WEFT_ENOMEM;
  *out = e;
  return 0;
}

void weft_event_destroy(weft_event_t *e) {
  if (!e) return;
  if (!wq_empty(&e->q))
    weft__die("weft: weft_event_destroy was called on an event that tasks or threads await.");
  free(e);
}

/* Wakes every node of q with status (taken under the lock, woken after it). */
static void wake_all(weft__spin_t *lock, weft__wq_t *q, int status) {
  weft__wq_node_t *list = NULL, *n;
  while ((n = wq_pop(q))) { /* dequeued: its links are ours now */
    n->next = list;
    list = n;
  }
  wq_unlock(lock);
  wq_wake_list(list, status);
}

int weft_event_set(weft_event_t *e) {
  if (!e) return WEFT_EINVAL;
  weft__tsan_object_release(e);
  wq_lock(&e->lock);
  /* release: the setter's writes, to a wait's fast-path acquire */
  atomic_store_explicit(&e->set, 1, memory_order_release);
  wake_all(&e->lock, &e->q, 0);
  return 0;
}

int weft_event_clear(weft_event_t *e) {
  if (!e) return WEFT_EINVAL;
  atomic_store_explicit(&e->set, 0, memory_order_relaxed); /* relaxed: no data comes with it */
  return 0;
}

int weft_event_is_set(const weft_event_t *e) {
  if (!e) return WEFT_EINVAL;
  /* acquire: pairs with set's release */
  int set = atomic_load_explicit(&((weft_event_t *)e)->set, memory_order_acquire);
  if (set) weft__tsan_object_acquire((weft_event_t *)e);
  return set;
}

static int event_wait(weft_event_t *e, uint64_t deadline_ns) {
  if (atomic_load_explicit(&e->set, memory_order_acquire)) return 0; /* acquire: as is_set */
  struct weft_task *self = waiter_self("weft_event_wait");
  wq_lock(&e->lock);
  if (atomic_load_explicit(&e->set, memory_order_relaxed)) { /* relaxed: the lock orders it */
    wq_unlock(&e->lock);
    return 0;
  }
  weft__wait_reason(self, WEFT__WAIT_LOCK, (uintptr_t)e);
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, NULL, 0);
  wq_push(&e->q, &n, false);
  return weft__wq_wait(self, &e->lock, &e->q, &n, deadline_ns);
}

int weft_event_wait(weft_event_t *e, uint64_t deadline_ns) {
  return e ? weft__tsan_acquired(e, event_wait(e, deadline_ns)) : WEFT_EINVAL;
}

/* ---- Condition ---------------------------------------------------------------------------------- */

struct weft_cond {
  weft__spin_t lock;
  weft__wq_t q;
};

int weft_cond_create(weft_cond_t **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_cond_t *c = calloc(1, sizeof *c);
  if (!c) return WEFT_ENOMEM;
  *out = c;
  return 0;
}

void weft_cond_destroy(weft_cond_t *c) {
  if (!c) return;
  if (!wq_empty(&c->q))
    weft__die("weft: weft_cond_destroy was called on a condition that tasks or threads await.");
  free(c);
}

/* Relocks m with cancellation and deadline scopes held back (asyncio's Condition.wait always
 * returns with the lock held): the runtime's own shield level holds back both, and is always
 * there (join.c's "Shield levels"; review, session 26: at a full depth the level carried out
 * of its byte, the relock failed and the call aborted). Its end delivers nothing: a cancel
 * stays pending for the caller's next suspension point. */
static void mutex_relock(struct weft_task *self, weft_mutex_t *m) {
  if (self) weft__shield_hold(self);
  int err = weft_mutex_lock(m, UINT64_MAX);
  if (self) weft__shield_unhold(self);
  if (err) weft__die("weft: internal error: weft_cond_wait could not relock its mutex.");
}

int weft_cond_wait(weft_cond_t *c, weft_mutex_t *m, uint64_t deadline_ns) {
  if (!c || !m) return WEFT_EINVAL;
  struct weft_task *self = waiter_self("weft_cond_wait");
  /* relaxed: a check for misuse; the caller's own lock */
  if (!(atomic_load_explicit(&m->state, memory_order_relaxed) & MX_LOCKED))
    weft__die("weft: weft_cond_wait was called without its mutex locked.");
  weft__wait_reason(self, WEFT__WAIT_LOCK, (uintptr_t)c);
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, NULL, 0);
  wq_lock(&c->lock);
  wq_push(&c->q, &n, false);
  uint32_t before = weft__wq_state(self);
  wq_unlock(&c->lock);
  /* Unlocked once our node is queued: a notify after the unlock finds it (no lost wake-up),
   * and a notify before it completes our word, which the wait then finds DONE. Not under c's
   * lock: the unlock may wake a mutex waiter, and no wake-up runs under a queue's spinlock
   * (waitq.h). */
  weft_mutex_unlock(m);
  int err = wq_wait_unlocked(self, &c->lock, &c->q, &n, deadline_ns, before);
  mutex_relock(self, m);
  return weft__tsan_acquired(c, err);
}

static int cond_notify(weft_cond_t *c, size_t count) {
  if (!c) return WEFT_EINVAL;
  weft__tsan_object_release(c);
  weft__wq_node_t *list = NULL, *n;
  wq_lock(&c->lock);
  for (size_t i = 0; i < count && (n = wq_pop(&c->q)); i++) {
    n->next = list;
    list = n;
  }
  wq_unlock(&c->lock);
  wq_wake_list(list, 0);
  return 0;
}

int weft_cond_notify(weft_cond_t *c, size_t count) { return cond_notify(c, count); }

int weft_cond_notify_all(weft_cond_t *c) { return cond_notify(c, SIZE_MAX); }

/* ---- Wait group ----------------------------------------------------------------------------------- */

struct weft_waitgroup {
  weft__spin_t lock;
  long count;
  weft__wq_t q;
};

int weft_waitgroup_create(weft_waitgroup_t **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_waitgroup_t *g = calloc(1, sizeof *g);
  if (!g) return WEFT_ENOMEM;
  *out = g;
  return 0;
}

bool weft__waitgroup_awaited(weft_waitgroup_t *g) { return !wq_empty(&g->q); }

void weft_waitgroup_destroy(weft_waitgroup_t *g) {
  if (!g) return;
  if (!wq_empty(&g->q))
    weft__die("weft: weft_waitgroup_destroy was called on a wait group that tasks or threads "
              "await.");
  free(g);
}

/* `below_zero` is the misuse's sentence: weft_queue_task_done counts on a wait group the user
 * never sees, so it names itself (review, session 26). */
int weft__waitgroup_add_as(weft_waitgroup_t *g, long delta, const char *below_zero) {
  if (!g) return WEFT_EINVAL;
  wq_lock(&g->lock);
  long count;
  if (__builtin_add_overflow(g->count, delta, &count)) { /* LONG_MAX's edge: no wrap */
    wq_unlock(&g->lock);
    return WEFT_ERANGE;
  }
  if (count < 0) {
    wq_unlock(&g->lock);
    weft__die("%s", below_zero);
  }
  if (delta < 0) weft__tsan_object_release(g); /* a done: what the waiter may read */
  g->count = count;
  if (g->count == 0)
    wake_all(&g->lock, &g->q, 0);
  else
    wq_unlock(&g->lock);
  return 0;
}

int weft_waitgroup_add(weft_waitgroup_t *g, long delta) {
  return weft__waitgroup_add_as(
      g, delta, "weft: weft_waitgroup_add took the wait group's counter below zero.");
}

int weft_waitgroup_done(weft_waitgroup_t *g) { return weft_waitgroup_add(g, -1); }

static int waitgroup_wait(weft_waitgroup_t *g, uint64_t deadline_ns) {
  struct weft_task *self = waiter_self("weft_waitgroup_wait");
  wq_lock(&g->lock);
  if (g->count == 0) {
    wq_unlock(&g->lock);
    return 0;
  }
  weft__wait_reason(self, WEFT__WAIT_LOCK, (uintptr_t)g);
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, NULL, 0);
  wq_push(&g->q, &n, false);
  return weft__wq_wait(self, &g->lock, &g->q, &n, deadline_ns);
}

int weft_waitgroup_wait(weft_waitgroup_t *g, uint64_t deadline_ns) {
  return g ? weft__tsan_acquired(g, waitgroup_wait(g, deadline_ns)) : WEFT_EINVAL;
}
