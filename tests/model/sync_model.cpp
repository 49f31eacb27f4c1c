/*
 * Model check of weft's synchronisation primitives with relacy (issue 11): the mutex's state
 * word (lib/mutex_impl.h — the very header lib/sync.c compiles, instantiated here with
 * relacy's atomics, once correctly and once per planted bug) together with its waiter queue,
 * and the waiter-record hand-off of lib/waitq.h (a value handed to a queued waiter racing the
 * waiter's timeout; a select's shared claim word racing two peers and the selector's timeout).
 * Exit status 0 only if the correct variants pass AND every planted bug is found.
 *
 * Mutex model: three threads lock, increment an rl::var counter, unlock, twice each; the queue
 * is an array under an rl::mutex (the library's spinlock), each waiter waits on its own record
 * (an atomic "done" flag and a status var) as the library's waiter waits on its completion
 * word; thread 2 counts as starving (it is handed the lock, LOCKED kept), the others are woken
 * to compete. Properties: mutual exclusion and ordering (the counter is an rl::var: two holders
 * at once, or a missing acquire/release, is a data race), no lost wake-up (a waiter nobody
 * wakes is a deadlock/livelock relacy reports), the final count. Planted bugs: the fast unlock
 * a plain store (ignores WAITERS), the locker that queues without marking WAITERS, the unlock
 * relaxed, the lock relaxed.
 *
 * Hand-off model (waitq.h): a peer dequeues a waiter's node under the lock, writes the value
 * and completes the record after unlocking; the waiter times out at any point, re-takes the
 * lock, and either unlinks its node (nothing delivered) or finds it dequeued and settles (waits
 * for the completion) before reading the value. Property: the value is delivered exactly when
 * the waiter reports success, and read only after it was written. Planted bugs: the completion
 * relaxed, the waiter that reads without settling.
 *
 * Select model: a selector's two nodes share one claim word; two peers, each under its own
 * channel's lock, dequeue the node and must win the claim to deliver; the selector may time out
 * and takes both locks to unlink what is left. Property: at most one delivery, and the
 * selector reports exactly the case delivered (or none). Planted bug: a peer that does not CAS
 * the claim.
 *
 * Usage: sync_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The relacy instances of mutex_impl.h ---------------------------------------------------- */

#define MX_WORD rl::atomic<uint32_t>
#define MX_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define MX_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define MX_FETCH_AND(obj, v, mo) ((obj)(RL_INFO).fetch_and((v), (mo)))
#define MX_CAS(obj, expected, desired, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mos), (mof)))
#define MX_RLX rl::mo_relaxed
#define MX_ACQ rl::mo_acquire
#define MX_REL rl::mo_release
#define MX_FN(name) name

namespace mx_correct {
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE

/* Bug 1: the fast unlock stores 0 whatever WAITERS says: a queued waiter is never woken. */
namespace mx_unlock_by_store {
#define MX_UNLOCK_BY_STORE 1
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE

/* Bug 2: a locker queues without marking WAITERS: the holder's fast unlock misses it. */
namespace mx_no_mark {
#define MX_MARKS_WAITERS 0
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE

/* Bug 3: unlock relaxed: the critical section does not reach the next holder. */
namespace mx_unlock_relaxed {
#define MX_UNLOCK_ORDER MX_RLX
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE

/* Bug 4: lock relaxed: the next holder does not see the previous critical section. */
namespace mx_lock_relaxed {
#define MX_LOCK_ORDER MX_RLX
#include "mutex_impl.h"
}

#define MX_OPS(ns)                                                                         \
  struct ops_##ns {                                                                        \
    static bool lock_fast(MX_WORD *m) { return ns::lock_fast(m); }                         \
    static bool try_lock(MX_WORD *m) { return ns::try_lock(m); }                           \
    static bool take_or_mark(MX_WORD *m) { return ns::take_or_mark(m); }                   \
    static int unlock_fast(MX_WORD *m) { return ns::unlock_fast(m); }                      \
    static void clear(MX_WORD *m, uint32_t bits) { ns::clear(m, bits); }                   \
  };
MX_OPS(mx_correct)
MX_OPS(mx_unlock_by_store)
MX_OPS(mx_no_mark)
MX_OPS(mx_unlock_relaxed)
MX_OPS(mx_lock_relaxed)

enum { THREADS = 3, ROUNDS = 2, HANDED = 0, RETRY = 1 };

template <class Ops>
struct mutex_test : rl::test_suite<mutex_test<Ops>, THREADS> {
  MX_WORD state;
  rl::mutex qlock;         /* the library's spinlock */
  rl::var<int> queue[THREADS]; /* FIFO of waiting thread ids, under qlock */
  rl::var<int> qlen;
  rl::atomic<int> done[THREADS]; /* a waiter's record: its completion ... */
  rl::var<int> status[THREADS];  /* ... and the status written before it */
  rl::var<int> counter;

  void before() {
    state($).store(0, rl::mo_relaxed);
    qlen($) = 0;
    counter($) = 0;
  }

  void lock(unsigned id) {
    if (Ops::lock_fast(&state)) return;
    bool front = false;
    for (;;) {
      if (Ops::try_lock(&state)) return; /* the spin phase, one try */
      qlock.lock($);
      if (Ops::take_or_mark(&state)) {
        qlock.unlock($);
        return;
      }
      done[id]($).store(0, rl::mo_relaxed);
      int n = qlen($);
      if (front) { /* a woken waiter that lost requeues at the head */
        for (int i = n; i > 0; i--) queue[i]($) = (int)queue[i - 1]($);
        queue[0]($) = (int)id;
      } else {
        queue[n]($) = (int)id;
      }
      qlen($) = n + 1;
      qlock.unlock($);
      while (done[id]($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      if (status[id]($) == HANDED) return;
      front = true;
    }
  }

  void unlock() {
    int r = Ops::unlock_fast(&state);
    RL_ASSERT(r >= 0);
    if (r > 0) return;
    qlock.lock($);
    int n = qlen($);
    int w = -1;
    if (n > 0) {
      w = queue[0]($);
      for (int i = 1; i < n; i++) queue[i - 1]($) = (int)queue[i]($);
      qlen($) = n - 1;
    }
    bool hand = w == 2; /* thread 2 plays the starving waiter */
    uint32_t bits = (qlen($) == 0 ? MX_WAITERS : 0) | (hand ? 0 : MX_LOCKED);
    Ops::clear(&state, bits);
    qlock.unlock($);
    if (w >= 0) {
      status[w]($) = hand ? HANDED : RETRY;
      done[w]($).store(1, rl::mo_release); /* the completion (join_complete's release) */
    }
  }

  void thread(unsigned id) {
    for (int r = 0; r < ROUNDS; r++) {
      lock(id);
      counter($) = counter($) + 1;
      unlock();
    }
  }

  void after() { RL_ASSERT(counter($) == THREADS * ROUNDS); }
};

/* ---- The waiter-record hand-off (waitq.h) ----------------------------------------------------- */

template <bool CompleteRelaxed, bool NoSettle>
struct handoff_test : rl::test_suite<handoff_test<CompleteRelaxed, NoSettle>, 2> {
  rl::mutex qlock;
  rl::var<int> queued;    /* the waiter's node is in the queue (under qlock) */
  rl::atomic<int> done;   /* the record's completion */
  rl::var<int> value;     /* the value slot, written by the peer before it completes */
  rl::var<int> delivered; /* the peer took the node (its send succeeded) */
  rl::var<int> got;       /* the waiter reported success */

  void before() {
    queued($) = 1; /* the waiter queued itself before the race begins */
    done($).store(0, rl::mo_relaxed);
    value($) = 0;
    delivered($) = 0;
    got($) = 0;
  }

  void thread(unsigned id) {
    if (id == 0) { /* the waiter: woken, or its deadline passes */
      if (done($).load(rl::mo_acquire) == 0) { /* timed out: re-take the lock */
        qlock.lock($);
        bool still = queued($) != 0;
        if (still) queued($) = 0;
        qlock.unlock($);
        if (still) return; /* nothing was delivered */
        if (!NoSettle)
          while (done($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      }
      RL_ASSERT(value($) == 42);
      got($) = 1;
    } else { /* the peer: a send that finds the receiver queued */
      qlock.lock($);
      bool take = queued($) != 0;
      if (take) queued($) = 0;
      qlock.unlock($);
      if (!take) return; /* the receiver gave up: the value stays ours */
      delivered($) = 1;
      value($) = 42;
      done($).store(1, CompleteRelaxed ? rl::mo_relaxed : rl::mo_release);
    }
  }

  void after() { RL_ASSERT(got($) == delivered($)); }
};

/* ---- A select's claim word (waitq.h's wq_pop) ------------------------------------------------- */

template <bool NoClaim>
struct select_test : rl::test_suite<select_test<NoClaim>, 3> {
  rl::mutex chan[2];      /* each case's channel lock */
  rl::var<int> queued[2]; /* the selector's node in that channel's queue */
  rl::atomic<int> claim;  /* -1, or the case that won */
  rl::atomic<int> done;   /* the shared completion */
  rl::var<int> value[2];
  rl::var<int> delivered[2];
  rl::var<int> reported; /* the selector's answer: -1 none, else the case */

  void before() {
    for (int c = 0; c < 2; c++) {
      queued[c]($) = 1;
      value[c]($) = 0;
      delivered[c]($) = 0;
    }
    claim($).store(-1, rl::mo_relaxed);
    done($).store(0, rl::mo_relaxed);
    reported($) = -2;
  }

  void thread(unsigned id) {
    if (id == 0) { /* the selector: times out (or wakes) at any point */
      (void)done($).load(rl::mo_acquire);
      chan[0].lock($); /* address order */
      chan[1].lock($);
      for (int c = 0; c < 2; c++) queued[c]($) = 0; /* unlink what is left */
      chan[1].unlock($);
      chan[0].unlock($);
      int won = claim($).load(rl::mo_relaxed); /* the locks ordered every claim before us */
      if (won < 0) {
        reported($) = -1;
        return;
      }
      while (done($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      RL_ASSERT(value[won]($) == 10 + won);
      reported($) = won;
    } else { /* peer id-1 sends on its channel */
      int c = (int)id - 1;
      chan[c].lock($);
      bool take = false;
      if (queued[c]($)) {
        queued[c]($) = 0;
        int expected = -1;
        take = NoClaim ? (claim($).store(c, rl::mo_relaxed), true)
                       : claim($).compare_exchange_strong(expected, c, rl::mo_relaxed);
      }
      chan[c].unlock($);
      if (!take) return; /* a stale node, or none: the value stays ours */
      delivered[c]($) = 1;
      value[c]($) = 10 + c;
      done($).store(1, rl::mo_release);
    }
  }

  void after() {
    int d = delivered[0]($) + delivered[1]($);
    RL_ASSERT(d <= 1);
    int r = reported($);
    RL_ASSERT(r == -1 ? d == 0 : (d == 1 && delivered[r]($) == 1));
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 100000)) return 2; /* enough here: ~10 s in all */
  auto t0 = std::chrono::steady_clock::now();
  check<mutex_test<ops_mx_correct>>("mutex correct", false);
  check<mutex_test<ops_mx_unlock_by_store>>("mutex fast unlock by store", true);
  check<mutex_test<ops_mx_no_mark>>("mutex queues without WAITERS", true);
  check<mutex_test<ops_mx_unlock_relaxed>>("mutex unlock relaxed", true);
  check<mutex_test<ops_mx_lock_relaxed>>("mutex lock relaxed", true);
  check<handoff_test<false, false>>("hand-off vs timeout correct", false);
  check<handoff_test<true, false>>("hand-off completion relaxed", true);
  check<handoff_test<false, true>>("hand-off waiter skips the settle", true);
  check<select_test<false>>("select claim correct", false);
  check<select_test<true>>("select without the claim CAS", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
