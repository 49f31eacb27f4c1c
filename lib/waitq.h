/*
 * Private to weft: the waiter queue that every synchronisation primitive and channel is built
 * on (lib/sync.c, lib/channel.c). Nothing here is API.
 *
 * Design. A call that must block (a recv with nothing to take, a lock that is held) puts a
 * waiter node on its own stack into the primitive's FIFO queue, under the primitive's short
 * spinlock, and then waits on a one-shot completion word of its own (join_impl.h's word, the
 * same one futures use: weft__await_word_until blocks a task without blocking its worker, or
 * blocks a plain thread). The peer that hands over (a send, an unlock) dequeues the node under
 * the same lock — that dequeue is the claim —, writes the value and a status into it, and after
 * unlocking completes the node's word (join_complete + weft__wake_waiters, as a future's
 * resolve does). So a value moves exactly once and no wake-up needs the lock.
 *
 * Cancel-safety. A waiter whose wait ends without the completion (its deadline passed, or it
 * was cancelled) re-takes the lock: if its node is still queued it unlinks it and reports the
 * error — nothing was delivered; if the node was dequeued, the hand-off won the race: the peer
 * is between its dequeue and its completion (it never suspends there), so the waiter waits for
 * the word's DONE (spinning with sched_yield, as join.c's wait_flag does) and reports success.
 * A cancel that lost that race stays requested (sticky) and is delivered at the task's next
 * suspension point; wq_wait undoes the "delivered" mark the woken wait left, so that the task
 * does not end cancelled because of a call that succeeded.
 *
 * Select. A select puts one node per case into the cases' queues, all pointing to one shared
 * wait (one completion word, one claim word). A peer that dequeues a select's node must also
 * win the claim (CAS UNCLAIMED -> the case's index); a node whose select was already claimed
 * through another case is stale: the peer drops it and looks at the next. The selector, once
 * awake, takes every case's lock and unlinks the nodes still queued; after that no peer can
 * claim it, so an unclaimed claim word then means "nothing was delivered".
 *
 * Direct hand-off (#11). A task that waits without a deadline (its own or a scope's) takes a
 * shorter path, the one pingpong's every hop takes: no completion word, no join, no
 * park_begin. It queues its node, records itself in the wait, and suspends holding the lock;
 * its scheduler commits the park (wake_impl.h's park_commit_direct: RUNNING → PARKED, or woken
 * at once by a cancel already requested) and only then releases the lock (Go's gopark with the
 * channel's unlock as its unlockf). So a peer that dequeues the node always finds the task
 * PARKED: one CAS on its park state (wake_wake) hands it the value and status and wins the
 * right to schedule it, into the peer's own next slot (lib/worker.c), and the resumed task
 * reads the state with one load (park_end). Rejected: releasing the lock before the commit (a
 * peer on another worker then found the task still PARKING, left the scheduling to the
 * commit, and the two tasks of a pingpong stayed on two workers: a cross-core hop each time).
 * A cancel that wins the task's state instead: the task re-takes the lock; a node still queued
 * is unlinked (ECANCELED); a dequeued one means a peer is between its dequeue and its CAS,
 * which then loses and stores `done` (its last touch of the wait), which the task waits for.
 * A peer from outside the task's runtime (a plain thread; marked `settle` under the lock at its
 * dequeue) always ends with `done` after its scheduling (an inject push that touches the
 * runtime), and the task, and destroy (weft__wq_abandon, which also unlinks a discarded task's
 * queued node), wait for it; before `done` such a peer waits while destroy may be looking
 * under the lock (lib/abandon_impl.h: its caller may free the object once the call returns). Locked instructions per pingpong hop, measured by reading the
 * path: the send's lock, the wake CAS, the next slot's put, the receive's lock, the commit, the
 * slot's take — 6, where the completion-word path took 12 (lock, park_begin, add_waiter,
 * commit, take from the deque; complete, count_release, wake, finish_waking, push; lock,
 * park_end).
 *
 * The lock: a test-and-test-and-set spinlock. Held for a few dozen instructions (queue links,
 * a ring slot; a direct wait holds it across its switch, up to the commit), never across a
 * wake-up. One allocation runs under it: an unbounded channel's ring that is full doubles
 * there (lib/channel.c's ring_grow: a malloc, a copy of its values and a free, once per
 * doubling, so amortised over the sends that filled it). Uncontended: one exchange and one store. Contended (#11): 16
 * tries a pause apart, then naps of 50 µs on the lock word (a futex wait with a deadline that
 * nothing wakes, so the unlock stays a plain store; it returns at once if the lock was freed
 * before the sleep) between tries. Why: a busy channel used from two workers at once (4
 * producers and 4 consumers, `weft-bench chan`) ran at ~100 ns a value, every operation taking
 * the lock's and the ring's lines from the other core (0.8 M contended acquisitions per 10^7
 * values); the worker that loses a try now gets off its CPU for a while, the other runs many
 * operations in its own cache (most tasks end up on it: a woken task goes to its waker's next
 * slot), and the channel runs at one worker's speed, ~19 ns a value (measured with SCHED_FIFO,
 * the quiet-machine case: 1 025-1 050 ms → 185-210 ms per 10^7; bench/README.md). The
 * count and the nap barely matter (4-32 tries, 20-100 µs: 185-210 ms); a longer spin does (64
 * tries: 300-440 ms, 256: 860). A holder preempted by the OS costs a nap, not a spin.
 * Rejected (a counting build's figures, slower than Release when contended): sched_yield
 * after 64 pauses (the old rule: returns at once on an idle CPU, so the
 * loser kept pulling the lines; on a loaded one it gave the CPU away for a whole slice, ~5-10
 * ms); exponential backoff between tries, then sched_yield (520-560 ms); a futex mutex whose
 * unlock wakes sleepers (an exchange per unlock, and both workers kept contending: 1 250-1 350
 * ms); moving a task that meets contention to the inject queue (830-870 ms); pthread_mutex
 * (a futex round trip when contended, 40 bytes), and a lock-free MPMC ring (Vyukov's) for the
 * buffered path — it does not give FIFO for blocked waiters nor the close/drain semantics
 * without a lock beside it anyway.
 */
#ifndef WEFT_WAITQ_H
#define WEFT_WAITQ_H

#include "internal.h"
#include "join.h"
#include "wake.h"

#include <sched.h>

/* ---- The spinlock --------------------------------------------------------------------------- */

typedef struct weft__spin {
  _Atomic uint32_t held;
} weft__spin_t;

enum { WQ_SPIN_TRIES = 16 }; /* measured (#11, chan): see "The lock" at the top */

static inline void wq_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* lib/sync.c: the contended part of wq_lock (a short spin, then naps), out of line. */
void weft__wq_lock_slow(weft__spin_t *l);

static inline void wq_lock(weft__spin_t *l) {
  /* relaxed read first (test-and-test-and-set: no cache-line ping-pong while held);
   * acquire exchange: pairs with wq_unlock's release, the queue's state comes with it */
  if (WEFT__LIKELY(!atomic_load_explicit(&l->held, memory_order_relaxed) &&
                   !atomic_exchange_explicit(&l->held, 1, memory_order_acquire)))
    return;
  weft__wq_lock_slow(l);
}

static inline void wq_unlock(weft__spin_t *l) {
  atomic_store_explicit(&l->held, 0, memory_order_release); /* release: our queue edits */
}

/* ---- Waits and nodes -------------------------------------------------------------------------- */

enum { WQ_UNCLAIMED = -1 };
enum { WQ_NOT_MUTEX, WQ_MUTEX_WAITER, WQ_MUTEX_STARVING }; /* weft__wq_node_t.mutex */

/* lib/sync.c: an outside peer's side of destroy's handshake (lib/abandon_impl.h, model-checked
 * by tests/model/abandon_model.cpp): after its wake, before `done`. Out of line: only a peer
 * from outside the runtime calls it. */
void weft__wq_peer_waits_abandon(_Atomic uint32_t *abandoning);

struct weft__wq_node;
struct weft__wq;

/* One per blocking call (a select's cases share it), on the caller's stack. */
typedef struct weft__wq_wait {
  _Atomic uintptr_t word; /* join_impl.h's completion word: DONE once a peer handed over */
  _Atomic int claim;      /* a select's: WQ_UNCLAIMED or the index of the case that won */
  int status;             /* the peer's answer, written before it completes `word` */
  bool select;            /* peers must win `claim` to take one of its nodes */
  /* The direct wait (see "Direct hand-off" at the top): the waiting task, or NULL when the
   * wait goes through `word`. */
  struct weft_task *task;
  bool settle;            /* set by a dequeuing peer from outside the task's runtime */
  _Atomic uint32_t done;  /* a peer's last touch, where the waiter must wait for it */
  _Atomic uint32_t abandoning; /* destroy's handshake with an outside peer (abandon_impl.h) */
  weft__spin_t *lock;     /* where its node waits: for destroy (weft__wq_abandon) */
  struct weft__wq *q;
  struct weft__wq_node *node;
} weft__wq_wait_t;

/* One per queue entry, on the caller's stack. */
typedef struct weft__wq_node {
  struct weft__wq_node *next, *prev;
  weft__wq_wait_t *wait;
  void *value; /* a send's value offered; a recv's value received */
  int index;   /* a select's case */
  bool queued; /* in its queue (under the queue's lock) */
  /* WQ_NOT_MUTEX; a mutex's waiter: WQ_MUTEX_STARVING once it has waited over
   * WEFT_MUTEX_STARVE_NS (hand it the lock), else WQ_MUTEX_WAITER. Destroy reads it to give a
   * discarded mutex waiter's hand-off back (lib/sync.c, wq_give_back). */
  uint8_t mutex;
} weft__wq_node_t;

typedef struct weft__wq {
  weft__wq_node_t *head, *tail;
} weft__wq_t;

static inline void wq_wait_init(weft__wq_wait_t *w, bool select) {
  atomic_init(&w->word, 0);
  atomic_init(&w->claim, WQ_UNCLAIMED);
  w->status = 0;
  w->select = select;
  w->task = NULL;
}

static inline void wq_node_init(weft__wq_node_t *n, weft__wq_wait_t *w, void *value, int index) {
  n->next = n->prev = NULL;
  n->wait = w;
  n->value = value;
  n->index = index;
  n->queued = false;
  n->mutex = WQ_NOT_MUTEX;
}

/* Under the queue's lock, as are the three below. */
static inline void wq_push(weft__wq_t *q, weft__wq_node_t *n, bool front) {
  n->queued = true;
  if (front) {
    n->prev = NULL;
    n->next = q->head;
    if (q->head) q->head->prev = n; else q->tail = n;
    q->head = n;
    return;
  }
  n->next = NULL;
  n->prev = q->tail;
  if (q->tail) q->tail->next = n; else q->head = n;
  q->tail = n;
}

static inline void wq_unlink(weft__wq_t *q, weft__wq_node_t *n) {
  if (n->prev) n->prev->next = n->next; else q->head = n->next;
  if (n->next) n->next->prev = n->prev; else q->tail = n->prev;
  n->next = n->prev = NULL;
  n->queued = false;
}

/* The oldest node whose wait we may claim, dequeued (and claimed, for a select); NULL if none.
 * Stale select nodes met on the way are dropped. */
static inline weft__wq_node_t *wq_pop(weft__wq_t *q) {
  weft__wq_node_t *n;
  while ((n = q->head)) {
    wq_unlink(q, n);
    if (n->wait->task) { /* a direct wait (never a select's) */
      weft__worker_t *self = weft__worker_self();
      /* Under the lock, so that destroy's weft__wq_abandon, which takes it, sees it. */
      n->wait->settle = !(self && self->rt == weft__task_rt(n->wait->task));
      return n;
    }
    if (!n->wait->select) return n;
    int expected = WQ_UNCLAIMED;
    /* relaxed: the claim is made under this queue's lock, and the selector reads it only after
     * taking every case's lock (or after the completion word's acquire) */
    if (atomic_compare_exchange_strong_explicit(&n->wait->claim, &expected, n->index,
                                                memory_order_relaxed, memory_order_relaxed))
      return n;
  }
  return NULL;
}

static inline bool wq_empty(const weft__wq_t *q) { return q->head == NULL; }

/* The hand-off's end, after unlocking: completes the node's wait and wakes its owner. The
 * node and its wait may be gone once this returns (or even before it returns: only the word's
 * BUSY, which wq_settle waits out, keeps the frame alive). */
/* The direct hand-off's end (see the top): one CAS on the task's park state, which hands it
 * the value and status, and, for a worker of its runtime, the task into our next slot. */
static inline void wq_wake_direct(weft__wq_wait_t *w, struct weft_task *t, int status) {
  w->status = status;
  bool foreign = w->settle; /* ours: written under the lock at our dequeue */
  struct weft_runtime *rt = weft__task_rt(t);
  /* acq_rel inside: release hands the value and status to the task; acquire sees its saved
   * stack (it is PARKED: its node was findable only after its commit) */
  int won = wake_wake(&t->state, WK_BY_COMPLETION);
  if (!foreign) {
    /* Won: the task runs only once scheduled, and reads nothing more of ours — the wait's
     * frame is no longer ours to touch. Lost (a cancel woke it): it waits for `done`. */
    if (won == WK_WON_PARKED)
      weft__schedule_next(weft__worker_self(), (uintptr_t)t | WEFT__ENTRY_RESUME);
    else if (won == WK_LOST)
      atomic_store_explicit(&w->done, 1, memory_order_release); /* release: our last touch */
    return;
  }
  /* From outside the runtime: the task waits for `done` either way, and so does destroy (it
   * frees the runtime, which the inject push below touches). */
  if (won == WK_WON_PARKED) weft__schedule(rt, (uintptr_t)t | WEFT__ENTRY_RESUME);
  weft__wq_peer_waits_abandon(&w->abandoning); /* destroy may be looking under the lock */
  weft__pause(WEFT__PAUSE_PEER_TAIL); /* tests: destroy comes now */
  atomic_store_explicit(&w->done, 1, memory_order_release); /* release: our last touch */
}

static inline void wq_wake(weft__wq_wait_t *w, int status) {
  if (w->task) {
    wq_wake_direct(w, w->task, status);
    return;
  }
  w->status = status;
  weft__tsan_release(&w->word); /* the hand-off edge: pairs with wq_settle's acquire */
  uintptr_t s = join_complete(&w->word);
  weft__waiter_t *node = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (!node) return; /* not waiting yet (or gave up): it finds DONE */
  weft__join_t *j = node->join;
  struct weft_task *t = j->task;
  if (!t || j->any || node->next) { /* a thread (or, never here, several waiters): join.c's way */
    weft__wake_waiters(node);
    join_finish_waking(&w->word);
    return;
  }
  /* A task: join.c's arrival and wake-up (join_event), but with the scheduling after BUSY
   * ends. The task cannot run before we schedule it (or its own commit does), and its
   * descriptor outlives the wait; so the futex wake of a parked worker that scheduling may do
   * is outside the window in which a resumed waiter spins in wq_settle (measured: that window
   * held the woken task, stolen by the worker the futex woke, for the whole wake-up). */
  int won = join_count_release(&j->pending) ? wake_wake(&t->state, WK_BY_COMPLETION) : WK_LOST;
  struct weft_runtime *rt = weft__task_rt(t);
  weft__worker_t *self = weft__worker_self();
  if (won == WK_WON_PARKED && !(self && self->rt == rt)) {
    /* From outside the task's runtime (a plain thread, another runtime's worker): schedule
     * inside BUSY, as join_event does — destroy's step 3 waits out BUSY and then frees the
     * runtime, which a push after BUSY could touch (lib/runtime.c's shutdown comment). */
    weft__schedule(rt, (uintptr_t)t | WEFT__ENTRY_RESUME);
    join_finish_waking(&w->word);
    return;
  }
  join_finish_waking(&w->word);
  if (won == WK_WON_PARKED) weft__schedule(rt, (uintptr_t)t | WEFT__ENTRY_RESUME);
}

/* Wakes a list of dequeued nodes (linked through `next` by whoever dequeued them), after
 * unlocking. */
static inline void wq_wake_list(weft__wq_node_t *list, int status) {
  weft__wq_node_t *n;
  while ((n = list)) {
    list = n->next; /* read first: the node may go once woken */
    wq_wake(n->wait, status);
  }
}

/* lib/sync.c: the waiter's side of every blocking call but select. Called with the lock held
 * and n queued; unlocks, waits, and settles the race with the hand-off (see the top). Returns
 * the peer's status (0, or e.g. WEFT_ECLOSED) if the hand-off happened, else the wait's error
 * (WEFT_ETIMEDOUT, WEFT_ECANCELED). self: the calling task, NULL on a plain thread. */
int weft__wq_wait(struct weft_task *self, weft__spin_t *lock, weft__wq_t *q, weft__wq_node_t *n,
                  uint64_t deadline_ns);
/* lib/sync.c, for destroy (through lib/join.c's weft__wait_abandon): a discarded task's direct
 * wait leaves its queue, or waits out the outside peer that dequeued it. */
void weft__wq_abandon(weft__wq_wait_t *w);
/* lib/sync.c: waits on a wait's word, without the settling (select does its own): 0 or the
 * wait's error (WEFT_ETIMEDOUT, WEFT_ECANCELED). abandon(t, ctx): how destroy takes a discarded
 * task's nodes out of their queues (weft__await_word_abandonable). */
int weft__wq_block(struct weft_task *self, weft__wq_wait_t *w, uint64_t deadline_ns,
                   void (*abandon)(struct weft_task *t, void *ctx), void *ctx);
/* lib/sync.c: waits until the hand-off's completion is over: DONE, and no deliverer holds the
 * word (BUSY). After it the wait's frame may go. */
void weft__wq_settle(weft__wq_wait_t *w);
/* lib/sync.c: the hand-off won over a cancel that woke the task: the cancel stays requested
 * for the next suspension point, but this call is not the one that delivered it. */
void weft__wq_undeliver(struct weft_task *self, uint32_t state_before);
/* lib/sync.c: whether a wait group has waiters queued (weft_queue_destroy's check, which names
 * the queue rather than its wait group). Unlocked: a destroy racing a wait is the caller's bug. */
bool weft__waitgroup_awaited(weft_waitgroup_t *g);
/* lib/sync.c: the task's park state before a wait (0 for a thread), for weft__wq_undeliver. */
uint32_t weft__wq_state(struct weft_task *self);

#endif /* WEFT_WAITQ_H */
