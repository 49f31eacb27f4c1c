/*
 * Model check of weft's Chase–Lev deque (lib/deque_impl.h), its completion word and join
 * counter (lib/join_impl.h), its park/wake hand-off (lib/park_impl.h) and its inject queue
 * (lib/inject_impl.h) with relacy. The
 * headers are the very ones the library compiles:
 * here they are instantiated with relacy's atomics, once correctly and once per planted bug
 * (each in its own namespace, with the header's override macros set). Exit status 0 only if
 * the correct variants pass AND every planted bug is found.
 *
 * Deque model: capacity 2 (wraps around; no growth: a full push returns -1 — the library then
 * spills the entry to the inject queue, the model's owner consumes it itself), one owner that
 * pushes and takes, two thieves that steal. Each element carries a payload in an rl::var<int>, written by the owner
 * before the push and read by whoever consumes it: a missing release/acquire is a data race.
 * A per-element counter checks that every element is consumed exactly once.
 *
 * Join model: a thread gathers two tasks while they complete (waiter nodes pushed onto each
 * completion word, one join counter, the last arriver wakes the waiter, the waiter reads both
 * results, ends its frame and releases both handles), and a handle released while its task
 * completes (exactly one side frees). Results, node fields and the "freed" descriptor are
 * rl::var, so any missing release/acquire is a data race; planted bugs: the count relaxed,
 * completion relaxed, the waiter push relaxed, the handle release relaxed.
 *
 * Inline join model (#13, session 8): weft_join takes its child's entry back from its deque
 * and, if it got it, runs the child and frees it with no completion (holder_untouched) while a
 * thief may steal the entry; planted bug: running it on a peek without the take. And the same
 * run while another thread awaits the task (a node linked before the child finishes must be
 * delivered); planted bug: the holder's check ignores the waiter list.
 *
 * Task park model (lib/wake_impl.h): a task parks while its completion, a cancel or its timer
 * race to wake it (wake_test); planted bugs: the commit as a store, an event that ignores a
 * task still switching out, a relaxed event, a waiter that leaves before the timer callback.
 *
 * Park model (lib/park_impl.h with the deque): a producer pushes onto its empty deque and
 * checks whether to wake anyone while the other worker, spinning, finds nothing, announces
 * itself idle, looks again and sleeps if it sees nothing. Property: never asleep and unwoken
 * with the task queued. Planted bugs: the producer's check loads acquire, the parker's
 * announcement acq_rel, the empty push release — each is the store-buffering lost wake-up.
 *
 * Yield queue model (#13): the owner pushes and takes its oldest in batches (steal_batch, one
 * CAS for up to half) while two thieves steal one at a time; exactly once, payload published.
 * Planted bugs: the batch claimed by a store (an element taken twice), the push relaxed.
 *
 * Inject queue model (lib/inject_impl.h, #13): Vyukov's intrusive MPSC list with a stub and
 * try-locked consumers. inject_test: two threads push one entry each (one tagged) and drain
 * once while a third drains twice; afterwards the queue is quiescent (destroy's wait), every
 * entry was consumed exactly once with its payload, and nothing is visible. inject_park_test:
 * a producer pushes and checks for sleepers before it links (weft__inject_push) while the
 * other worker drains, announces itself idle and looks (any_work_visible). Planted bugs: the
 * link relaxed (payload unsynchronised), pop re-pushing the stub over a half-done push (an
 * entry lost), a parker that looks only at `in` (lost wake-up after a stub re-push), the
 * producer's exchange acq_rel (store-buffering lost wake-up).
 *
 * Not covered here: growth (WD_GROW and steal's load of the array: reclaim_model.cpp covers
 * growth and the retired arrays' reclaim) and peek_newest; and push's acquire load of top (it orders a thief's read of a slot before the
 * owner's reuse of it, a load-buffering pattern that relacy does not model: weakening it to
 * relaxed still passes here).
 *
 * Run time on the 2-vCPU dev VM (one core used): about 45 s on a shared machine (2026-12-01),
 * nearly all of it the bounded searches of the correct deque and the correct inject queue. Usage: deque_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The relacy instance of deque_impl.h ---------------------------------------------- */

enum { CAP = 2, ELEMS = 4 };

struct model_array {
  uintptr_t mask;
  rl::atomic<uintptr_t> slot[CAP];
};

struct model_deque {
  rl::atomic<int64_t> top;
  rl::atomic<int64_t> bottom;
  rl::atomic<model_array *> array;
};

/* No growth in the model: "full" makes push return -1. */
inline model_array *model_grow(model_deque *, model_array *, int64_t, int64_t) { return nullptr; }

/* C11 forbids acq_rel on a plain load or store. The variant "take pair acq/rel" passes
 * mo_acq_rel through WD_TAKE_ORDER and means: release on the store, acquire on the load. */
inline rl::memory_order wd_store_order(rl::memory_order mo) {
  return mo == rl::mo_acq_rel ? rl::mo_release : mo;
}
inline rl::memory_order wd_load_order(rl::memory_order mo) {
  return mo == rl::mo_acq_rel ? rl::mo_acquire : mo;
}

#define WD_DEQUE model_deque
#define WD_ARRAY model_array
#define WD_RLX rl::mo_relaxed
#define WD_ACQ rl::mo_acquire
#define WD_REL rl::mo_release
#define WD_SC rl::mo_seq_cst
#define WD_LOAD(obj, mo) ((obj)(RL_INFO).load(wd_load_order(mo)))
#define WD_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), wd_store_order(mo)))
#define WD_CAS(obj, expected, desired, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mo), rl::mo_relaxed))
#define WD_SLOT(a, i) ((a)->slot[(i) & (a)->mask])
#define WD_GROW(d, a, t, b) model_grow((d), (a), (t), (b))
#define WD_FN(name) name

/* After each instance: the header defines the defaults it did not get; clear them all. */

/* Correct: the header's own orders. */
namespace v_correct {
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 1a: the owner's take pair (store bottom, load top) relaxed. */
namespace v_take_relaxed {
#define WD_TAKE_ORDER WD_RLX
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 1b: the take pair release/acquire (still not seq_cst). */
namespace v_take_acq_rel {
#define WD_TAKE_ORDER rl::mo_acq_rel
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 2: the last element is taken with a plain store of top instead of a CAS. */
namespace v_no_last_cas {
#define WD_LAST_CAS 0
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 3: push publishes bottom without release (both the empty and non-empty paths). */
namespace v_push_relaxed {
#define WD_PUSH_BOTTOM_ORDER WD_RLX
#define WD_EMPTY_PUSH_ORDER WD_RLX
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 8 (park model): the push that makes the deque non-empty is only a release store, not
 * seq_cst: the store side of the park/wake hand-off's store→load pattern is gone. */
namespace v_empty_push_release {
#define WD_EMPTY_PUSH_ORDER WD_REL
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 15 (#13): the yield queue's batch claimed with a store of top, not a CAS: a thief's
 * steal and the batch take the same element. */
#undef WD_BATCH_CAS
namespace v_batch_store {
#define WD_BATCH_CAS 0
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS
#undef WD_BATCH_CAS

#define WD_MODEL_OPS(ns)                                                                   \
  struct ops_##ns {                                                                        \
    static int push(model_deque *d, uintptr_t x) { return ns::push(d, x); }                \
    static uintptr_t take(model_deque *d) { return ns::take(d); }                          \
    static uintptr_t take_if(model_deque *d, uintptr_t x) { return ns::take_if(d, x); }    \
    static uintptr_t steal(model_deque *d) { return ns::steal(d); }                        \
    static int steal_batch(model_deque *d, uintptr_t *out, int max) {                      \
      return ns::steal_batch(d, out, max);                                                 \
    }                                                                                      \
    static int seen_nonempty(model_deque *d) { return ns::seen_nonempty(d); }              \
    static uintptr_t peek_newest(model_deque *d) { return ns::peek_newest(d); }            \
  };
WD_MODEL_OPS(v_correct)
WD_MODEL_OPS(v_take_relaxed)
WD_MODEL_OPS(v_take_acq_rel)
WD_MODEL_OPS(v_no_last_cas)
WD_MODEL_OPS(v_push_relaxed)
WD_MODEL_OPS(v_batch_store)

/* ---- The deque test: thread 0 owns the deque, threads 1 and 2 steal -------------------- */

enum { STEAL_TRIES = 2 };

/* RaceOnly = false: the slots start unwritten, as lib/deque.c's malloc'd array, so reading one
 * before its push is reported, and every element must be consumed exactly once.
 * RaceOnly = true: the slots start as 0 and the exactly-once checks are off, so that a planted
 * bug can only be found by relacy's data-race detector on the payload. */
template <class Ops, bool RaceOnly = false>
struct deque_test : rl::test_suite<deque_test<Ops, RaceOnly>, 3> {
  model_array arr;
  model_deque dq;
  rl::var<int> payload[ELEMS];    /* plain data published through the deque */
  rl::atomic<int> consumed[ELEMS]; /* how many times each element was consumed */

  static uintptr_t handle(int i) { return (uintptr_t)i + 2; } /* 0 = empty, 1 = WD_ABORT */
  static int value(int i) { return 1000 + 7 * i; }

  void before() {
    arr.mask = CAP - 1;
    if (RaceOnly)
      for (int i = 0; i < CAP; i++) arr.slot[i]($).store(0, rl::mo_relaxed);
    dq.top($).store(0, rl::mo_relaxed);
    dq.bottom($).store(0, rl::mo_relaxed);
    dq.array($).store(&arr, rl::mo_relaxed);
    for (int i = 0; i < ELEMS; i++) consumed[i]($).store(0, rl::mo_relaxed);
  }

  void consume(uintptr_t x) {
    RL_ASSERT(x >= 2 && x < (uintptr_t)ELEMS + 2);
    int i = (int)(x - 2);
    RL_ASSERT(payload[i]($) == value(i)); /* a data race here if the hand-off lacks sync */
    int before_count = consumed[i]($).fetch_add(1, rl::mo_relaxed);
    if (!RaceOnly) RL_ASSERT(before_count == 0); /* consumed twice */
  }

  void produce(int i) {
    payload[i]($) = value(i);
    if (Ops::push(&dq, handle(i)) < 0) consume(handle(i)); /* full: the owner runs it */
  }

  void take_one() {
    uintptr_t x = Ops::take(&dq);
    if (x) consume(x);
  }

  void thread(unsigned id) {
    if (id == 0) {
      produce(0);
      produce(1);
      take_one();
      produce(2);
      produce(3); /* may find the deque full (capacity 2) */
      take_one();
      for (uintptr_t x; (x = Ops::take(&dq)) != 0;) consume(x); /* drain */
    } else {
      for (int k = 0; k < STEAL_TRIES; k++) {
        uintptr_t x = Ops::steal(&dq);
        if (x > WD_ABORT) consume(x);
      }
    }
  }

  void after() {
    /* The owner drained until take() said empty, so every element is consumed by now. */
    if (!RaceOnly)
      for (int i = 0; i < ELEMS; i++) RL_ASSERT(consumed[i]($).load(rl::mo_relaxed) == 1);
  }
};

/* The yield queue (#13, lib/worker.c's take_own_yielded): thread 0 owns it, pushes and takes
 * its oldest in batches (steal_batch, never take); threads 1 and 2 steal one at a time. Every
 * element consumed exactly once, its payload published. */
template <class Ops>
struct yieldq_test : rl::test_suite<yieldq_test<Ops>, 3> {
  deque_test<Ops> d; /* its deque, payloads and exactly-once checks */

  void before() { d.before(); }
  void batch() {
    uintptr_t out[CAP];
    int n = Ops::steal_batch(&d.dq, out, CAP);
    for (int k = 0; k < n; k++) d.consume(out[k]);
  }
  void thread(unsigned id) {
    if (id == 0) {
      d.produce(0);
      d.produce(1);
      batch();
      d.produce(2);
      d.produce(3); /* may find the queue full (capacity 2): then the owner runs it */
      batch();
      while (Ops::seen_nonempty(&d.dq)) batch(); /* drain (a lost race returns 0: retry) */
      return;
    }
    for (int k = 0; k < STEAL_TRIES; k++) {
      uintptr_t x = Ops::steal(&d.dq);
      if (x > WD_ABORT) d.consume(x);
    }
  }
  void after() { d.after(); }
};

/* ---- The relacy instances of join_impl.h ----------------------------------------------- */

#include "join_relacy.h"

namespace j_correct {
#include "join_impl.h"
}
#undef JN_ADD_ORDER
#undef JN_ADD_FAIL_ORDER
#undef JN_COMPLETE_ORDER
#undef JN_RELEASE_ORDER
#undef JN_COUNT_ORDER

/* Bug 4: the join count without acquire/release (the last arriver does not carry the others'
 * results to the waiter). */
namespace j_count_relaxed {
#define JN_COUNT_ORDER JN_RLX
#include "join_impl.h"
}
#undef JN_ADD_ORDER
#undef JN_ADD_FAIL_ORDER
#undef JN_COMPLETE_ORDER
#undef JN_RELEASE_ORDER
#undef JN_COUNT_ORDER

/* Bug 5: completion's CAS relaxed (publishes no result, acquires no waiter node). */
namespace j_complete_relaxed {
#define JN_COMPLETE_ORDER JN_RLX
#include "join_impl.h"
}
#undef JN_ADD_ORDER
#undef JN_ADD_FAIL_ORDER
#undef JN_COMPLETE_ORDER
#undef JN_RELEASE_ORDER
#undef JN_COUNT_ORDER

/* Bug 6: a waiter pushed without release (the completer reads its node's fields unordered). */
namespace j_add_relaxed {
#define JN_ADD_ORDER JN_RLX
#define JN_ADD_FAIL_ORDER JN_RLX
#include "join_impl.h"
}
#undef JN_ADD_ORDER
#undef JN_ADD_FAIL_ORDER
#undef JN_COMPLETE_ORDER
#undef JN_RELEASE_ORDER
#undef JN_COUNT_ORDER

/* Bug 7: the handle's release relaxed (it may free a descriptor the completer just wrote). */
namespace j_release_relaxed {
#define JN_RELEASE_ORDER JN_RLX
#include "join_impl.h"
}
#undef JN_ADD_ORDER
#undef JN_ADD_FAIL_ORDER
#undef JN_COMPLETE_ORDER
#undef JN_RELEASE_ORDER
#undef JN_COUNT_ORDER

/* The stale-wake controls: a thread returns on SIGNALLED (the waker's FUTEX_WAKE may land in
 * its dead frame); a remover returns on DONE without waiting out BUSY (the deliverer reads its
 * node after its frame ended); a completer takes the list while a remover edits it in place. */
namespace j_returns_at_signalled {
#undef JN_THREAD_RETURNS_AT
#define JN_THREAD_RETURNS_AT JN_SIGNALLED
#include "join_impl.h"
}
#undef JN_THREAD_RETURNS_AT
namespace j_remove_ignores_busy {
#undef JN_REMOVE_WAITS_BUSY
#define JN_REMOVE_WAITS_BUSY 0
#include "join_impl.h"
}
#undef JN_REMOVE_WAITS_BUSY
namespace j_complete_ignores_busy {
#undef JN_COMPLETE_WAITS_BUSY
#define JN_COMPLETE_WAITS_BUSY 0
#include "join_impl.h"
}
#undef JN_COMPLETE_WAITS_BUSY

/* Bug 8: the inline join's check looks only at the flags (a waiter linked during the run is
 * freed with the descriptor, never woken). */
namespace j_untouched_ignores_waiters {
#undef JN_UNTOUCHED_BITS
#define JN_UNTOUCHED_BITS JN_FLAGS
#include "join_impl.h"
}
#undef JN_UNTOUCHED_BITS

#define JN_MODEL_OPS(ns)                                                                     \
  struct ops_##ns {                                                                          \
    static bool add_waiter(rl::atomic<uintptr_t> *w, model_node *n) { return ns::add_waiter(w, n); } \
    static uintptr_t complete(rl::atomic<uintptr_t> *w) { return ns::complete(w); }          \
    static bool finish_waking(rl::atomic<uintptr_t> *w) { return ns::finish_waking(w); }     \
    static int release_handle(rl::atomic<uintptr_t> *w) { return ns::release_handle(w); }   \
    static bool count_release(rl::atomic<long> *p) { return ns::count_release(p); }          \
    static bool remove_waiter(rl::atomic<uintptr_t> *w, model_node *n) { return ns::remove_waiter(w, n); } \
    static void signal_thread(model_signal *g) { ns::signal_thread(g); }                     \
    static bool may_return(model_signal *g) { return ns::may_return(ns::signal_state(g)); } \
    static bool holder_untouched(rl::atomic<uintptr_t> *w) { return ns::holder_untouched(w); } \
  };
JN_MODEL_OPS(j_correct)
JN_MODEL_OPS(j_count_relaxed)
JN_MODEL_OPS(j_complete_relaxed)
JN_MODEL_OPS(j_add_relaxed)
JN_MODEL_OPS(j_release_relaxed)
JN_MODEL_OPS(j_returns_at_signalled)
JN_MODEL_OPS(j_remove_ignores_busy)
JN_MODEL_OPS(j_complete_ignores_busy)
JN_MODEL_OPS(j_untouched_ignores_waiters)

/* A task descriptor: its completion word, its result, and a freed count. "Freeing" writes the
 * result field (the library's free list reuses it), so a free that is not ordered after the
 * completer's write is a data race. */
struct model_task {
  rl::atomic<uintptr_t> word;
  rl::var<int> result;
  rl::atomic<int> freed;
  void init() {
    word($).store(0, rl::mo_relaxed);
    freed($).store(0, rl::mo_relaxed);
  }
  void free_it() {
    result($) = -1;
    freed($).fetch_add(1, rl::mo_relaxed);
  }
};

/* A thread gathers two tasks while they complete (lib/task.c's weft_gather, thread path): it
 * holds +1, counts and links a node per child, drops its +1, waits for the last arriver's
 * futex word, reads both results, poisons its nodes (its stack frame ends) and releases both
 * handles. Each child writes its result, completes its word and arrives at every waiter it
 * took, reading a node's fields before the arrival (after it the node may be gone). */
template <class Ops>
struct gather_test : rl::test_suite<gather_test<Ops>, 3> {
  model_task task[2];
  model_join join;
  model_node node[2];

  void before() {
    task[0].init();
    task[1].init();
    join.pending($).store(1, rl::mo_relaxed);
    join.woken($).store(0, rl::mo_relaxed);
  }

  static void arrive(model_join *j) {
    if (Ops::count_release(&j->pending)) j->woken($).store(1, rl::mo_release);
  }

  void thread(unsigned id) {
    if (id == 0) {
      for (int c = 0; c < 2; c++) {
        node[c].join($) = &join;
        join.pending($).fetch_add(1, rl::mo_relaxed); /* relaxed: we hold +1 */
        if (!Ops::add_waiter(&task[c].word, &node[c]))
          join.pending($).fetch_sub(1, rl::mo_relaxed);
      }
      arrive(&join);
      while (join.woken($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      RL_ASSERT(task[0].result($) == 10 && task[1].result($) == 11);
      node[0].next($) = nullptr; /* the frame that held the nodes ends */
      node[1].next($) = nullptr;
      for (int c = 0; c < 2; c++) {
        int r = Ops::release_handle(&task[c].word);
        RL_ASSERT(r >= 0);
        if (r == 1) task[c].free_it(); /* 0: its completer is still delivering, and frees */
      }
    } else {
      model_task *t = &task[id - 1];
      t->result($) = 9 + (int)id;
      uintptr_t s = Ops::complete(&t->word);
      for (model_node *n = (model_node *)(s & ~JN_FLAGS); n;) {
        model_node *next = n->next($); /* read first: the node dies once its join is done */
        arrive(n->join($));
        n = next;
      }
      bool free_it = (s & ~JN_FLAGS) ? Ops::finish_waking(&t->word) : (s & JN_RELEASED) != 0;
      if (free_it) t->free_it();
    }
  }

  void after() {
    for (int c = 0; c < 2; c++) RL_ASSERT(task[c].freed($).load(rl::mo_relaxed) == 1);
  }
};

/* A handle released while its task completes (weft_task_release of a running task): exactly
 * one side frees the descriptor, after the other's last touch. */
template <class Ops>
struct detach_test : rl::test_suite<detach_test<Ops>, 2> {
  model_task task;

  void before() { task.init(); }

  void thread(unsigned id) {
    if (id == 0) {
      int r = Ops::release_handle(&task.word);
      RL_ASSERT(r >= 0);
      if (r == 1) task.free_it();
    } else {
      task.result($) = 5;
      uintptr_t s = Ops::complete(&task.word);
      if (s & JN_RELEASED) task.free_it();
    }
  }

  void after() { RL_ASSERT(task.freed($).load(rl::mo_relaxed) == 1); }
};

/* A future resolved while a task awaits it (lib/future.c, session 30): the awaiter links its
 * node, whose delivery slot is in its own frame, before the resolver starts; the resolver
 * writes the value, completes the word, delivers the value into every node, then wakes each and
 * finishes waking; the owner waits for DONE, reads the value and destroys the future at once
 * (after waiting out BUSY, as weft_future_destroy does), while the woken awaiter may not have
 * run yet. The awaiter then reads its delivery. Planted bug (ReadsFuture): it reads the
 * future's value after its wake, as before session 30 — a data race with the owner's free. */
struct model_future {
  rl::atomic<uintptr_t> word;
  rl::var<int> value; /* the free writes it (the allocator reuses it) */
};

template <class Ops, bool ReadsFuture>
struct future_test : rl::test_suite<future_test<Ops, ReadsFuture>, 3> {
  model_future f;
  model_join join;
  model_node node;
  rl::var<int> delivery; /* in the awaiter's frame */
  rl::atomic<int> linked;

  void before() {
    f.word($).store(0, rl::mo_relaxed);
    f.value($) = 0;
    join.pending($).store(1, rl::mo_relaxed);
    join.woken($).store(0, rl::mo_relaxed);
    linked($).store(0, rl::mo_relaxed);
    delivery($) = 0;
  }

  void thread(unsigned id) {
    if (id == 0) { /* the awaiter */
      node.join($) = &join;
      RL_ASSERT(Ops::add_waiter(&f.word, &node)); /* nobody resolves before `linked` */
      linked($).store(1, rl::mo_release);
      while (join.woken($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      int v = ReadsFuture ? (int)f.value($) : (int)delivery($);
      RL_ASSERT(v == 42);
      node.next($) = nullptr; /* its frame ends */
    } else if (id == 1) { /* the resolver */
      while (linked($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      f.value($) = 42;
      uintptr_t s = Ops::complete(&f.word);
      model_node *waiters = (model_node *)(s & ~JN_FLAGS);
      for (model_node *n = waiters; n; n = n->next($)) delivery($) = 42; /* deliver() */
      for (model_node *n = waiters; n;) {
        model_node *next = n->next($); /* read first: the node dies once its join is done */
        n->join($)->woken($).store(1, rl::mo_release);
        n = next;
      }
      if (waiters) Ops::finish_waking(&f.word);
    } else { /* the owner: awaits (it finds DONE), then destroys */
      while ((f.word($).load(rl::mo_acquire) & JN_DONE) == 0) rl::yield(1, $);
      RL_ASSERT(f.value($) == 42);
      uintptr_t w;
      while ((w = f.word($).load(rl::mo_acquire)) & JN_BUSY) rl::yield(1, $);
      RL_ASSERT((w & ~JN_FLAGS) == 0); /* nobody linked: the destroy does not abort */
      f.value($) = -1;                 /* free */
    }
  }
};

/* weft_join's own inline run (#13, session 8; lib/join.c's join_inline): thread 0 spawns an
 * older sibling and then the child (pushes their start entries) and joins the child while
 * thread 1, a thief, may steal both entries (the sibling first: the take pair's ordering bugs
 * need the child not to be the last element).
 * The joiner takes the entry back (take_if, as lib/join.c since session 9: take's reservation
 * after its own read of the slot) and, if it got it, runs the child and finishes it with
 * holder_untouched (no completion published: the descriptor goes straight to the free list);
 * otherwise it waits for the word's DONE (a thread's wait: acquire), reads the result and
 * releases the handle. The thief that got the entry runs the child and completes its word.
 * Checks: the child runs exactly once, its result is read after it was written (no race), the
 * descriptor is freed exactly once, after every touch. Planted bugs: (PeekOnly) the joiner runs
 * the child because the newest entry is the child (peek_newest), without taking it back; and
 * take_if with the deque's own planted bugs (the take pair relaxed or release/acquire, the last
 * element without a CAS): the child runs twice. */
template <class DOps, class JOps, bool PeekOnly>
struct join_inline_test : rl::test_suite<join_inline_test<DOps, JOps, PeekOnly>, 2> {
  deque_test<DOps> d; /* its deque (its payloads and counters unused) */
  model_deque &dq = d.dq;
  model_task task;
  rl::atomic<int> ran;
  rl::atomic<int> sibling_taken;
  static constexpr uintptr_t sibling = 3;

  void before() {
    d.before();
    task.init();
    ran($).store(0, rl::mo_relaxed);
    sibling_taken($).store(0, rl::mo_relaxed);
  }

  void run_child() {
    ran($).fetch_add(1, rl::mo_relaxed);
    task.result($) = 42;
  }

  void thread(unsigned id) {
    const uintptr_t entry = 2; /* 0 = empty, 1 = WD_ABORT */
    if (id == 0) {
      RL_ASSERT(DOps::push(&dq, sibling) >= 0);
      RL_ASSERT(DOps::push(&dq, entry) >= 0);
      bool mine = PeekOnly ? DOps::peek_newest(&dq) == entry : DOps::take_if(&dq, entry) == entry;
      if (mine) {
        run_child();
        if (JOps::holder_untouched(&task.word)) {
          RL_ASSERT(task.result($) == 42);
          task.free_it();
          take_sibling();
          return;
        }
        uintptr_t s = JOps::complete(&task.word); /* not reached here: nobody else awaits */
        if (s & JN_RELEASED) task.free_it();
      } else {
        while (!(task.word($).load(rl::mo_acquire) & JN_DONE)) rl::yield(1, $);
      }
      RL_ASSERT(task.result($) == 42);
      int r = JOps::release_handle(&task.word);
      RL_ASSERT(r >= 0);
      if (r == 1) task.free_it();
      take_sibling();
    } else {
      for (int k = 0; k < 2; k++) {
        uintptr_t x = DOps::steal(&dq);
        if (x == sibling) sibling_taken($).fetch_add(1, rl::mo_relaxed);
        if (x != entry) continue;
        run_child();
        uintptr_t s = JOps::complete(&task.word);
        if (s & JN_RELEASED) task.free_it();
        return;
      }
    }
  }

  /* The joiner's own later take of the sibling (the scheduler's, after the join) */
  void take_sibling() {
    uintptr_t x = DOps::take(&dq);
    RL_ASSERT(x == 0 || x == sibling);
    if (x == sibling) sibling_taken($).fetch_add(1, rl::mo_relaxed);
  }

  void after() {
    RL_ASSERT(ran($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(task.freed($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(sibling_taken($).load(rl::mo_relaxed) <= 1);
  }
};

/* The inline join's other side (review of session 8): while the holder runs its child inline,
 * another thread awaits the same task — it links its node, and only then does the child finish
 * (the run waits for `linked`: a node linked after holder_untouched's load is the documented
 * best-effort case, not modelled). holder_untouched must see the node and send the holder down
 * the completion path, which delivers to the awaiter; then the holder releases its handle.
 * Checks: the awaiter was woken, exactly once, and the descriptor freed exactly once. Planted
 * bug: holder_untouched looks only at the flags (the awaiter is freed with the descriptor). */
template <class JOps>
struct join_inline_awaited_test : rl::test_suite<join_inline_awaited_test<JOps>, 2> {
  model_task task;
  model_join join;
  model_node node;
  rl::atomic<int> linked;

  void before() {
    task.init();
    join.pending($).store(1, rl::mo_relaxed); /* the awaiter's one node */
    join.woken($).store(0, rl::mo_relaxed);
    linked($).store(0, rl::mo_relaxed);
  }

  void thread(unsigned id) {
    if (id == 0) { /* the holder, which took the entry back and runs the child */
      while (linked($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      task.result($) = 42;
      if (JOps::holder_untouched(&task.word)) {
        task.free_it();
        return;
      }
      uintptr_t s = JOps::complete(&task.word);
      for (model_node *n = (model_node *)(s & ~JN_FLAGS); n;) {
        model_node *next = n->next($);
        if (JOps::count_release(&n->join($)->pending)) n->join($)->woken($).fetch_add(1, rl::mo_release);
        n = next;
      }
      bool free_it = (s & ~JN_FLAGS) ? JOps::finish_waking(&task.word) : (s & JN_RELEASED) != 0;
      if (free_it) task.free_it();
      int r = JOps::release_handle(&task.word);
      RL_ASSERT(r >= 0);
      if (r == 1) task.free_it();
    } else { /* the awaiter: its node stays (in this struct) until delivered */
      node.join($) = &join;
      RL_ASSERT(JOps::add_waiter(&task.word, &node)); /* not DONE: the child waits for us */
      linked($).store(1, rl::mo_release);
    }
  }

  void after() {
    RL_ASSERT(join.woken($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(task.freed($).load(rl::mo_relaxed) == 1);
  }
};

/* Timed waits and the stale wake (lib/task.c's await_word_until and thread_wait_join, thread
 * paths): thread A awaits with a deadline that has already passed, so it times out at once
 * unless the completion came first — claiming the join, then taking its node out of the list
 * in place; thread B awaits the same task without a deadline; thread C completes the task and
 * delivers to both. Each waiter's frame (its node, its join's wake word) ends when it returns:
 * any touch by the deliverer after that is a data race. Checks: a waiter that got the
 * completion sees the result; A's outcome is exactly one of the result and the timeout. */
struct model_timed_join {
  rl::atomic<long> pending;
  rl::atomic<int> fired; /* 0, 1 completion, 2 timer */
  bool timed;
  model_signal sig;
};

template <class Ops>
struct timed_test : rl::test_suite<timed_test<Ops>, 3> {
  model_task task;
  model_timed_join join[2];
  model_node node[2];

  void before() {
    task.init();
    for (int k = 0; k < 2; k++) {
      join[k].pending($).store(2, rl::mo_relaxed); /* the completion (or timer), and the waiter */
      join[k].fired($).store(0, rl::mo_relaxed);
      join[k].timed = k == 0;
      join[k].sig.word($).store(JN_WAITING, rl::mo_relaxed);
      join[k].sig.frame($) = 0;
    }
  }

  static bool claim(model_timed_join *j, int side) {
    int expected = 0;
    return j->fired($).compare_exchange_strong(expected, side, rl::mo_acq_rel, rl::mo_acquire);
  }
  static void release(model_timed_join *j) {
    if (Ops::count_release(&j->pending)) Ops::signal_thread(&j->sig);
  }
  static void arrive(model_timed_join *j) {
    if (!j->timed || claim(j, 1)) release(j);
  }

  void end_frame(int k) { /* the waiter returned: its stack frame is gone */
    node[k].next($) = nullptr;
    node[k].join($) = nullptr;
    join[k].sig.frame($) = 1;
  }

  void thread(unsigned id) {
    if (id == 2) { /* the completer */
      task.result($) = 7;
      uintptr_t s = Ops::complete(&task.word);
      for (model_node *n = (model_node *)(s & ~JN_FLAGS); n;) {
        model_node *next = n->next($); /* read first: the node dies once its join is done */
        arrive((model_timed_join *)(model_join *)n->join($));
        n = next;
      }
      if (s & ~JN_FLAGS) Ops::finish_waking(&task.word);
      return;
    }
    model_timed_join *j = &join[id];
    node[id].join($) = (model_join *)(void *)j;
    if (!Ops::add_waiter(&task.word, &node[id])) {
      RL_ASSERT(task.result($) == 7); /* already done: the result is there */
      end_frame((int)id);
      return;
    }
    release(j); /* our own count */
    if (id == 0 && !Ops::may_return(&j->sig) && claim(j, 2)) {
      Ops::remove_waiter(&task.word, &node[id]); /* timed out */
      end_frame(0);
      return;
    }
    while (!Ops::may_return(&j->sig)) rl::yield(1, $);
    RL_ASSERT(task.result($) == 7);
    end_frame((int)id);
  }

  void after() {}
};

/* ---- The relacy instances of wake_impl.h (a task's park state) ------------------------- */

#include "wake_relacy.h"

namespace w_correct {
#include "wake_impl.h"
}
/* Bug: the scheduler's commit is a load and a store, not a CAS (an event between them is lost). */
namespace w_commit_by_store {
#undef WK_COMMIT_BY_STORE
#define WK_COMMIT_BY_STORE 1
#include "wake_impl.h"
}
#undef WK_COMMIT_BY_STORE
#define WK_COMMIT_BY_STORE 0
/* Bug: an event ignores a task still switching out (nobody schedules it). */
namespace w_wake_only_parked {
#undef WK_WAKE_ONLY_PARKED
#define WK_WAKE_ONLY_PARKED 1
#include "wake_impl.h"
}
#undef WK_WAKE_ONLY_PARKED
#define WK_WAKE_ONLY_PARKED 0
/* Bug: the event's CAS is relaxed (the woken task does not see the completer's result). */
namespace w_wake_relaxed {
#undef WK_WAKE_ORDER
#define WK_WAKE_ORDER WK_RLX
#include "wake_impl.h"
}
#undef WK_WAKE_ORDER
#define WK_WAKE_ORDER WK_ACQ_REL

#define WK_MODEL_OPS(ns)                                                                       \
  struct ops_##ns {                                                                            \
    static bool park_begin(rl::atomic<uint32_t> *s) { return ns::park_begin(s, true); }       \
    static bool park_commit(rl::atomic<uint32_t> *s) { return ns::park_commit(s); }           \
    static int wake(rl::atomic<uint32_t> *s, uint32_t side) { return ns::wake(s, side); }     \
    static int cancel(rl::atomic<uint32_t> *s) { return ns::cancel(s); }                      \
    static uint32_t park_end(rl::atomic<uint32_t> *s) { return ns::park_end(s); }             \
    enum { WON_PARKED = ns::WK_WON_PARKED };                                                  \
  };
WK_MODEL_OPS(w_correct)
WK_MODEL_OPS(w_commit_by_store)
WK_MODEL_OPS(w_wake_only_parked)
WK_MODEL_OPS(w_wake_relaxed)

/* lib/join.c's task_wait around wake_impl.h: thread 0 is a task that parks (registering a
 * waiter node only after park_begin, as join.c does: `linked`), switches out and has its
 * scheduler commit the park, then runs again when scheduled; thread 1 completes what it waits
 * for (writes a result, then the event) once the node is linked; with a canceller (thread 2),
 * a cancel races both. Properties: a parked task is scheduled exactly once; it wakes with the
 * completion (and then sees the result) or the cancel. With a timer instead of the canceller
 * (TimerRace), the wheel's entry and the callback's timer_done follow join.c: the woken task
 * either removes the entry (ARMED → IDLE) or waits for timer_done before its frame — which the
 * callback touches — ends; the planted SkipTimerDone leaves without waiting. */
enum { ENTRY_IDLE = 0, ENTRY_ARMED = 1, ENTRY_FIRING = 2 };

template <class Ops, int Racer, bool SkipTimerDone = false>
struct wake_test : rl::test_suite<wake_test<Ops, Racer, SkipTimerDone>, Racer ? 3 : 2> {
  enum { NONE = 0, CANCELLER = 1, TIMER = 2 };
  rl::atomic<uint32_t> state;
  rl::atomic<int> linked, scheduled, entry, timer_done;
  rl::var<int> result, frame; /* frame: the waiter's join, alive until it leaves the wait */
  bool parked;
  uint32_t side;

  void before() {
    state($).store(0, rl::mo_relaxed);
    linked($).store(0, rl::mo_relaxed);
    scheduled($).store(0, rl::mo_relaxed);
    entry($).store(Racer == TIMER ? ENTRY_ARMED : ENTRY_IDLE, rl::mo_relaxed);
    timer_done($).store(0, rl::mo_relaxed);
    result($) = 0;
    frame($) = 1;
    parked = false;
    side = 0;
  }

  void schedule() { scheduled($).fetch_add(1, rl::mo_release); }
  void schedule_if(int won) {
    if (won == Ops::WON_PARKED) schedule();
  }

  void thread(unsigned id) {
    if (id == 0) {
      if (!Ops::park_begin(&state)) { /* cancelled before it waited: nothing will be linked */
        linked($).store(2, rl::mo_release);
        return;
      }
      parked = true;
      linked($).store(1, rl::mo_release);
      if (Ops::park_commit(&state)) schedule(); /* the scheduler, after the switch */
      while (scheduled($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      side = Ops::park_end(&state);
      if (side == 1) RL_ASSERT(result($) == 7); /* woken by the completion: its result */
      if (Racer == TIMER && !SkipTimerDone) {
        int armed = ENTRY_ARMED;
        bool removed = side != 2 && entry($).compare_exchange_strong(armed, ENTRY_IDLE, rl::mo_acq_rel);
        if (!removed)
          while (timer_done($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      }
      frame($) = 0; /* the wait returns: its join is gone */
    } else if (id == 1) {
      while (linked($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      if (linked($).load(rl::mo_relaxed) == 2) return;
      result($) = 7;
      schedule_if(Ops::wake(&state, 1));
    } else if (Racer == CANCELLER) {
      schedule_if(Ops::cancel(&state));
    } else { /* the timer wheel firing the entry */
      while (linked($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      int armed = ENTRY_ARMED;
      if (!entry($).compare_exchange_strong(armed, ENTRY_FIRING, rl::mo_acq_rel)) return;
      int won = Ops::wake(&state, 2);
      (void)(int)frame($); /* the callback reads the join (its timer_done lives there) */
      timer_done($).store(1, rl::mo_release);
      schedule_if(won);
    }
  }

  void after() {
    if (parked) {
      RL_ASSERT(scheduled($).load(rl::mo_relaxed) == 1); /* woken exactly once */
      RL_ASSERT(side == 1 || side == (Racer == TIMER ? 2u : 3u));
    }
  }
};

/* ---- The relacy instances of park_impl.h, with the deque ------------------------------ */

#define PK_COUNT rl::atomic<int>
#define PK_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define PK_FETCH_ADD(obj, v, mo) ((obj)(RL_INFO).fetch_add((v), (mo)))
#define PK_FETCH_SUB(obj, v, mo) ((obj)(RL_INFO).fetch_sub((v), (mo)))
#define PK_SC rl::mo_seq_cst
#define PK_FN(name) name

namespace p_correct {
#include "park_impl.h"
}
#undef PK_CHECK_ORDER
#undef PK_ANNOUNCE_ORDER

/* Bug 9: the producer's check loads nspinning/nidle with acquire, not seq_cst. */
namespace p_check_acquire {
#define PK_CHECK_ORDER rl::mo_acquire
#include "park_impl.h"
}
#undef PK_CHECK_ORDER
#undef PK_ANNOUNCE_ORDER

/* Bug 10: the parker announces itself with acq_rel read-modify-writes, not seq_cst. */
namespace p_announce_acq_rel {
#define PK_ANNOUNCE_ORDER rl::mo_acq_rel
#include "park_impl.h"
}
#undef PK_CHECK_ORDER
#undef PK_ANNOUNCE_ORDER

#define PARK_MODEL_OPS(name, dns, pns) PARK_MODEL_OPS_AS(name, dns, pns, true)
/* announce: what a push made while a worker is seen idle does (push_as's); false is the
 * library before session 20 (a plain push: seq_cst and checked only onto an empty deque). */
#define PARK_MODEL_OPS_AS(name, dns, pns, announce)                                            \
  struct name {                                                                                \
    static int push(model_deque *d, uintptr_t x) { return dns::push(d, x); }                   \
    static int push_idle_seen(model_deque *d, uintptr_t x) { return dns::push_as(d, x, announce); } \
    static uintptr_t steal(model_deque *d) { return dns::steal(d); }                           \
    static int seen_nonempty(model_deque *d) { return dns::seen_nonempty(d); }                 \
    static bool wake_needed(rl::atomic<int> *s, rl::atomic<int> *i) {                          \
      return pns::wake_needed(s, i);                                                           \
    }                                                                                          \
    static void announce_idle(rl::atomic<int> *i, rl::atomic<int> *s) {                       \
      pns::announce_idle(i, s, true);                                                          \
    }                                                                                          \
  };
PARK_MODEL_OPS(park_correct, v_correct, p_correct)
PARK_MODEL_OPS(park_check_acquire, v_correct, p_check_acquire)
PARK_MODEL_OPS(park_announce_acq_rel, v_correct, p_announce_acq_rel)
PARK_MODEL_OPS(park_push_release, v_empty_push_release, p_correct)
PARK_MODEL_OPS_AS(park_idle_push_unannounced, v_correct, p_correct, false)

/* worker.c's hand-off: a producer pushes one task onto its empty deque and checks whether to
 * wake a worker (then goes on with something long: it never takes the task back); the other
 * worker is spinning, finds nothing, announces itself idle, looks at the deque once more and
 * sleeps if it sees nothing. The property: never asleep, unwoken, with the task still queued
 * (the lost wake-up). The waker's side of the idle list is reduced to its futex word. */
template <class Ops>
struct park_test : rl::test_suite<park_test<Ops>, 2> {
  model_array arr;
  model_deque dq;
  rl::atomic<int> nspinning, nidle, park_word, slept, consumed;
  rl::var<int> payload;

  void before() {
    arr.mask = CAP - 1;
    dq.top($).store(0, rl::mo_relaxed);
    dq.bottom($).store(0, rl::mo_relaxed);
    dq.array($).store(&arr, rl::mo_relaxed);
    nspinning($).store(1, rl::mo_relaxed); /* the other worker is spinning */
    nidle($).store(0, rl::mo_relaxed);
    park_word($).store(0, rl::mo_relaxed);
    slept($).store(0, rl::mo_relaxed);
    consumed($).store(0, rl::mo_relaxed);
  }

  void run_stolen(uintptr_t x) {
    RL_ASSERT(x == 2 && payload($) == 42);
    consumed($).fetch_add(1, rl::mo_relaxed);
  }

  void thread(unsigned id) {
    if (id == 0) { /* the producer */
      payload($) = 42;
      if (Ops::push(&dq, 2) == 1 && Ops::wake_needed(&nspinning, &nidle))
        park_word($).store(1, rl::mo_release); /* wake_one */
      return;
    }
    uintptr_t x = Ops::steal(&dq); /* the spinner's last round */
    if (x > WD_ABORT) return run_stolen(x);
    Ops::announce_idle(&nidle, &nspinning);
    if (Ops::seen_nonempty(&dq)) { /* any_work_visible: do not sleep, go and get it */
      x = Ops::steal(&dq);
      RL_ASSERT(x > WD_ABORT); /* only we steal, and the producer never takes */
      return run_stolen(x);
    }
    slept($).store(1, rl::mo_relaxed); /* futex_wait: only park_word can end it */
  }

  void after() {
    bool asleep_unwoken = slept($).load(rl::mo_relaxed) && !park_word($).load(rl::mo_relaxed);
    RL_ASSERT(!asleep_unwoken); /* the task is queued and every worker sleeps: lost wake-up */
  }
};

/* The same hand-off with three workers (review, session 20): the producer's deque already
 * holds X when it pushes Y, having seen workers idle (two spinners). One spinner steals X and,
 * not the last spinner, wakes no one (worker.c's stop_spinning) before it runs X; the other
 * finds nothing, announces itself idle, looks once more and sleeps if it sees nothing. With
 * Y pushed release only and unchecked (the library before session 20), the sleeper can miss
 * it — the store in the producer's buffer, or the producer's view of top stale — and Y waits
 * behind the producer's long task with a worker asleep. The property: never asleep, unwoken,
 * with Y still queued. */
template <class Ops>
struct park_emptying_test : rl::test_suite<park_emptying_test<Ops>, 3> {
  model_array arr;
  model_deque dq;
  rl::atomic<int> nspinning, nidle, park_word, slept, consumed;

  void before() {
    arr.mask = CAP - 1;
    arr.slot[0]($).store(2, rl::mo_relaxed); /* X, pushed (and checked) long before */
    dq.top($).store(0, rl::mo_relaxed);
    dq.bottom($).store(1, rl::mo_relaxed);
    dq.array($).store(&arr, rl::mo_relaxed);
    nspinning($).store(2, rl::mo_relaxed); /* workers 1 and 2 are spinning */
    nidle($).store(0, rl::mo_relaxed);
    park_word($).store(0, rl::mo_relaxed);
    slept($).store(0, rl::mo_relaxed);
    consumed($).store(0, rl::mo_relaxed);
  }

  /* A spinner's steal that found work: it stops spinning, and the last spinner wakes the
   * next (worker.c: stop_spinning, then wake_one when a worker is parked). */
  void found_work() {
    consumed($).fetch_add(1, rl::mo_relaxed);
    if (nspinning($).fetch_sub(1, rl::mo_seq_cst) == 1 && nidle($).load(rl::mo_seq_cst) != 0)
      park_word($).store(1, rl::mo_release);
  }

  void thread(unsigned id) {
    if (id == 0) { /* the producer: workers were seen idle */
      if (Ops::push_idle_seen(&dq, 3) == 1 && Ops::wake_needed(&nspinning, &nidle))
        park_word($).store(1, rl::mo_release); /* wake_one */
      return; /* then something long: it never takes Y back */
    }
    if (id == 1) { /* the spinner that steals (and then runs what it stole) */
      if (Ops::steal(&dq) > WD_ABORT) found_work();
      return;
    }
    uintptr_t x = Ops::steal(&dq); /* the other spinner's last round */
    if (x > WD_ABORT) return found_work();
    Ops::announce_idle(&nidle, &nspinning);
    if (Ops::seen_nonempty(&dq)) return; /* any_work_visible: it goes and gets it */
    slept($).store(1, rl::mo_relaxed); /* futex_wait: only park_word can end it */
  }

  void after() {
    bool queued = dq.bottom($).load(rl::mo_relaxed) > dq.top($).load(rl::mo_relaxed);
    bool asleep_unwoken = slept($).load(rl::mo_relaxed) && !park_word($).load(rl::mo_relaxed);
    RL_ASSERT(!(queued && asleep_unwoken)); /* Y queued, a worker asleep: lost wake-up */
  }
};

/* ---- The relacy instances of inject_impl.h (the inject queue, with the park hand-off) ---- */

struct model_inode {
  rl::atomic<uintptr_t> link;
};

struct model_inject {
  rl::atomic<uintptr_t> in, out, taking;
  model_inode stub;
};

#define IQ_NODE model_inode
#define IQ_QUEUE model_inject
#define IQ_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define IQ_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define IQ_XCHG(obj, v, mo) ((obj)(RL_INFO).exchange((v), (mo)))
#define IQ_CAS(obj, expected, v, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (uintptr_t)(v), (mo), rl::mo_relaxed))
#define IQ_LINK_LOAD(node, mo) ((node)->link(RL_INFO).load(mo))
#define IQ_LINK_STORE(node, v, mo) ((node)->link(RL_INFO).store((uintptr_t)(v), (mo)))
#define IQ_UNTAG(e) ((model_inode *)((e) & ~(uintptr_t)3)) /* tag: bit 1, as the library's */
#define IQ_RLX rl::mo_relaxed
#define IQ_ACQ rl::mo_acquire
#define IQ_REL rl::mo_release
#define IQ_ACQ_REL rl::mo_acq_rel
#define IQ_SC rl::mo_seq_cst
#define IQ_FN(name) name

namespace q_correct {
#include "inject_impl.h"
}
#undef IQ_PUSH_ORDER
#undef IQ_LINK_ORDER
#undef IQ_VISIBLE_OUT
#undef IQ_POP_CHECKS_GAP

/* Bug 11: the link stored relaxed: the consumer reads the entry's payload unsynchronised. */
namespace q_link_relaxed {
#define IQ_LINK_ORDER rl::mo_relaxed
#include "inject_impl.h"
}
#undef IQ_PUSH_ORDER
#undef IQ_LINK_ORDER
#undef IQ_VISIBLE_OUT
#undef IQ_POP_CHECKS_GAP

/* Bug 12: pop re-pushes the stub over a producer's half-done push: a second pop during the
 * same gap pushes the stub while it is still queued (a cycle, an entry lost). */
namespace q_no_gap_check {
#define IQ_POP_CHECKS_GAP 0
#include "inject_impl.h"
}
#undef IQ_PUSH_ORDER
#undef IQ_LINK_ORDER
#undef IQ_VISIBLE_OUT
#undef IQ_POP_CHECKS_GAP

/* Bug 13: a parker looks only at `in`: after a consumer re-pushed the stub over a half-done
 * push, `in` is the stub while that producer's entry is still queued: lost wake-up. */
namespace q_visible_in_only {
#define IQ_VISIBLE_OUT 0
#include "inject_impl.h"
}
#undef IQ_PUSH_ORDER
#undef IQ_LINK_ORDER
#undef IQ_VISIBLE_OUT
#undef IQ_POP_CHECKS_GAP

/* Bug 14: the producer's exchange acq_rel, not seq_cst: the store-buffering lost wake-up
 * (its check and the parker's look both read the old values). */
namespace q_push_acq_rel {
#define IQ_PUSH_ORDER rl::mo_acq_rel
#include "inject_impl.h"
}
#undef IQ_PUSH_ORDER
#undef IQ_LINK_ORDER
#undef IQ_VISIBLE_OUT
#undef IQ_POP_CHECKS_GAP

#define IQ_MODEL_OPS(ns)                                                                       \
  struct ops_##ns {                                                                            \
    static void init(model_inject *q) { ns::init(q); }                                         \
    static uintptr_t push_begin(model_inject *q, uintptr_t e) { return ns::push_begin(q, e); } \
    static void push_link(uintptr_t prev, uintptr_t e) { ns::push_link(prev, e); }             \
    static bool try_take(model_inject *q) { return ns::try_take(q); }                          \
    static void untake(model_inject *q) { ns::untake(q); }                                     \
    static uintptr_t pop(model_inject *q) { return ns::pop(q); }                               \
    static bool visible(model_inject *q) { return ns::visible(q); }                            \
    static bool quiescent(model_inject *q) { return ns::quiescent(q); }                        \
  };
IQ_MODEL_OPS(q_correct)
IQ_MODEL_OPS(q_link_relaxed)
IQ_MODEL_OPS(q_no_gap_check)
IQ_MODEL_OPS(q_visible_in_only)
IQ_MODEL_OPS(q_push_acq_rel)

/* Entries of the inject models: node i, tagged on odd i (the tag must survive the trip). */
enum { INODES = 3 };
struct inject_nodes {
  model_inode node[INODES];
  rl::var<int> payload[INODES]; /* written before the push, read by the consumer */
  rl::atomic<int> consumed[INODES];

  uintptr_t entry(int i) { return (uintptr_t)&node[i] | (i & 1 ? 2 : 0); }
  static int value(int i) { return 100 + 7 * i; }

  void reset() {
    for (int i = 0; i < INODES; i++) consumed[i]($).store(0, rl::mo_relaxed);
  }
  void consume(uintptr_t e) {
    int i = -1;
    for (int k = 0; k < INODES; k++)
      if (e == entry(k)) i = k;
    RL_ASSERT(i >= 0); /* a stub, a lost tag or garbage handed out */
    RL_ASSERT(payload[i]($) == value(i)); /* a data race if the hand-off lacks sync */
    int before_count = consumed[i]($).fetch_add(1, rl::mo_relaxed);
    RL_ASSERT(before_count == 0); /* consumed twice */
  }
  template <class Ops>
  void push(model_inject *q, int i) { /* a producer without the wake check */
    payload[i]($) = value(i);
    Ops::push_link(Ops::push_begin(q, entry(i)), entry(i));
  }
  template <class Ops>
  int drain(model_inject *q) { /* under the try-lock, as inject_pop_batch; -1: lock taken */
    if (!Ops::try_take(q)) return -1;
    int n = 0;
    for (uintptr_t e; (e = Ops::pop(q)) != 0; n++) consume(e);
    Ops::untake(q);
    return n;
  }
};

/* Two threads push one entry each (a third was queued before) and then drain once, while a
 * consumer drains twice, all under the try-lock. Afterwards (every push linked) the queue is
 * quiescent, a last drain finds the rest, every entry was consumed exactly once, and the
 * queue is empty. (Four threads — two producers, two consumers — took the bounded search
 * 100 s for nothing more found.) */
template <class Ops>
struct inject_test : rl::test_suite<inject_test<Ops>, 3> {
  model_inject q;
  inject_nodes nodes;

  void before() {
    nodes.reset();
    Ops::init(&q);
    nodes.push<Ops>(&q, 0);
  }
  void thread(unsigned id) {
    if (id < 2) nodes.push<Ops>(&q, 1 + (int)id);
    for (int k = id < 2 ? 1 : 0; k < 2; k++) nodes.drain<Ops>(&q);
  }
  void after() {
    RL_ASSERT(Ops::quiescent(&q));
    RL_ASSERT(nodes.drain<Ops>(&q) >= 0);
    for (int i = 0; i < INODES; i++) RL_ASSERT(nodes.consumed[i]($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(!Ops::visible(&q));
  }
};

/* worker.c's hand-off through the inject queue: one entry is queued; a producer pushes a
 * second and checks whether to wake a worker before it links (weft__inject_push); the other
 * worker is spinning: it drains, announces itself idle, looks (any_work_visible) and sleeps
 * if it sees nothing, else leaves the idle list and tries again (two rounds, then it counts
 * as still spinning). Property: never asleep, unwoken, with an entry not consumed. */
template <class Ops>
struct inject_park_test : rl::test_suite<inject_park_test<Ops>, 2> {
  model_inject q;
  inject_nodes nodes;
  rl::atomic<int> nspinning, nidle, park_word, slept;

  void before() {
    nodes.reset();
    Ops::init(&q);
    nodes.push<Ops>(&q, 0);
    nspinning($).store(1, rl::mo_relaxed); /* the other worker is spinning */
    nidle($).store(0, rl::mo_relaxed);
    park_word($).store(0, rl::mo_relaxed);
    slept($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned id) {
    if (id == 0) { /* the producer: weft__inject_push */
      nodes.payload[1]($) = inject_nodes::value(1);
      uintptr_t prev = Ops::push_begin(&q, nodes.entry(1));
      if (p_correct::wake_needed(&nspinning, &nidle)) park_word($).store(1, rl::mo_release);
      Ops::push_link(prev, nodes.entry(1));
      return;
    }
    for (int round = 0; round < 2; round++) {
      nodes.drain<Ops>(&q);
      p_correct::announce_idle(&nidle, &nspinning, true);
      if (!Ops::visible(&q)) {
        slept($).store(1, rl::mo_relaxed); /* futex_wait: only park_word can end it */
        return;
      }
      nspinning($).fetch_add(1, rl::mo_seq_cst); /* idle_unlist: spinning again, counted */
      nidle($).fetch_sub(1, rl::mo_seq_cst);     /* as such before it leaves the idle count */
    }
  }
  void after() {
    bool asleep_unwoken = slept($).load(rl::mo_relaxed) && !park_word($).load(rl::mo_relaxed);
    bool all_consumed = nodes.consumed[0]($).load(rl::mo_relaxed) == 1 &&
                        nodes.consumed[1]($).load(rl::mo_relaxed) == 1;
    RL_ASSERT(!asleep_unwoken || all_consumed); /* queued, and every worker sleeps */
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with frame_model.cpp */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();

  check<deque_test<ops_v_correct>>("deque correct", false);
  check<deque_test<ops_v_take_relaxed>>("deque no-seq-cst-take (relaxed)", true);
  check<deque_test<ops_v_take_acq_rel>>("deque no-seq-cst-take (release/acquire)", true);
  check<deque_test<ops_v_no_last_cas>>("deque no-last-cas", true);
  check<deque_test<ops_v_push_relaxed>>("deque no-release-push", true);
  check<deque_test<ops_v_push_relaxed, true>>("deque no-release-push (payload race only)", true);
  check<yieldq_test<ops_v_correct>>("yield queue batches correct", false);
  check<yieldq_test<ops_v_batch_store>>("yield queue batch-store", true);
  check<yieldq_test<ops_v_push_relaxed>>("yield queue no-release-push", true);

  check<gather_test<ops_j_correct>>("join gather correct", false);
  check<detach_test<ops_j_correct>>("join detach correct", false);
  check<future_test<ops_j_correct, false>>("future destroyed by its owner after its await", false);
  check<future_test<ops_j_correct, true>>("future read again by a woken awaiter", true);
  check<gather_test<ops_j_count_relaxed>>("join gather count-relaxed", true);
  check<gather_test<ops_j_complete_relaxed>>("join gather complete-relaxed", true);
  check<gather_test<ops_j_add_relaxed>>("join gather add-relaxed", true);
  check<detach_test<ops_j_release_relaxed>>("join detach release-relaxed", true);
  check<timed_test<ops_j_correct>>("join timed-wait and stale-wake correct", false);
  check<join_inline_test<ops_v_correct, ops_j_correct, false>>("join inline run (take, no completion) correct", false);
  check<join_inline_test<ops_v_correct, ops_j_correct, true>>("join inline run on a peek without the take", true);
  check<join_inline_awaited_test<ops_j_correct>>("join inline run awaited meanwhile correct", false);
  check<join_inline_awaited_test<ops_j_untouched_ignores_waiters>>("join inline run ignores a linked waiter", true);
  check<join_inline_test<ops_v_take_relaxed, ops_j_correct, false>>("join inline take_if no-seq-cst-take (relaxed)", true);
  check<join_inline_test<ops_v_take_acq_rel, ops_j_correct, false>>("join inline take_if no-seq-cst-take (release/acquire)", true);
  check<join_inline_test<ops_v_no_last_cas, ops_j_correct, false>>("join inline take_if no-last-cas", true);
  check<timed_test<ops_j_returns_at_signalled>>("join thread returns at SIGNALLED", true);
  check<timed_test<ops_j_remove_ignores_busy>>("join remover ignores BUSY", true);
  check<timed_test<ops_j_complete_ignores_busy>>("join completer ignores BUSY", true);

  check<wake_test<ops_w_correct, 0>>("task park, completion only, correct", false);
  check<wake_test<ops_w_correct, 1>>("task park, completion racing cancel, correct", false);
  check<wake_test<ops_w_correct, 2>>("task park, completion racing its timer, correct", false);
  check<wake_test<ops_w_commit_by_store, 1>>("task park commit by store", true);
  check<wake_test<ops_w_wake_only_parked, 0>>("task park event ignores PARKING", true);
  check<wake_test<ops_w_wake_relaxed, 0>>("task park event relaxed", true);
  check<wake_test<ops_w_correct, 2, true>>("task park leaves before timer_done", true);

  check<park_test<park_correct>>("park/wake correct", false);
  check<park_test<park_check_acquire>>("park/wake check-acquire", true);
  check<park_test<park_announce_acq_rel>>("park/wake announce-acq-rel", true);
  check<park_test<park_push_release>>("park/wake empty-push-release", true);
  check<park_emptying_test<park_correct>>("park/wake push onto a deque being emptied", false);
  check<park_emptying_test<park_idle_push_unannounced>>(
      "park/wake push onto a deque being emptied, unannounced (before session 20)", true);

  check<inject_test<ops_q_correct>>("inject queue correct", false);
  check<inject_park_test<ops_q_correct>>("inject park/wake correct", false);
  check<inject_test<ops_q_link_relaxed>>("inject queue link-relaxed", true);
  check<inject_test<ops_q_no_gap_check>>("inject queue no-gap-check", true);
  check<inject_park_test<ops_q_visible_in_only>>("inject park/wake visible-in-only", true);
  check<inject_park_test<ops_q_push_acq_rel>>("inject park/wake push-acq-rel", true);

  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
