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
 * Give-up model (session 22, for session 19's fix): thread 0 locks twice and never gives up;
 * threads 1 and 2 lock once with a deadline that may pass at any point (rl::rand): while
 * queued (the waiter unlinks its node under the lock, or, if an unlock already took it, settles
 * and then gives up), or after a wake-up to compete (it may give up instead of competing). A
 * waiter that gives up after a wake passes it on (lib/sync.c's mutex_give_up). The bits each
 * wake clears are mutex_impl.h's wake_clear_bits, as in the library. Properties: mutual
 * exclusion, no lost wake-up (thread 0 has no deadline: a wake dropped by a giving-up waiter
 * leaves it waiting for ever), and at the end the word is 0 with the queue empty (what
 * weft_mutex_destroy requires of a mutex no one holds or awaits). Planted bugs: session 19's
 * (a giving-up waiter that leaves the queue empty clears nothing: WAITERS stays), and a
 * giving-up waiter that does not pass its wake-up on.
 *
 * The hand-off and select models below are abstractions written here, not lib/waitq.h
 * instantiated (the mutex's are the library's header): the library's own completion and claim
 * paths (wq_wake_direct through wake_impl.h, wq_wake through join_impl.h) are checked by
 * abandon_model, next_model and deque_model, which do compile those headers. Review, session
 * 33: keep these two in step with waitq.h by hand.
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
#undef MX_GIVE_UP_CLEARS

/* Bug 1: the fast unlock stores 0 whatever WAITERS says: a queued waiter is never woken. */
namespace mx_unlock_by_store {
#define MX_UNLOCK_BY_STORE 1
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE
#undef MX_GIVE_UP_CLEARS

/* Bug 2: a locker queues without marking WAITERS: the holder's fast unlock misses it. */
namespace mx_no_mark {
#define MX_MARKS_WAITERS 0
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE
#undef MX_GIVE_UP_CLEARS

/* Bug 3: unlock relaxed: the critical section does not reach the next holder. */
namespace mx_unlock_relaxed {
#define MX_UNLOCK_ORDER MX_RLX
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE
#undef MX_GIVE_UP_CLEARS

/* Bug 4: lock relaxed: the next holder does not see the previous critical section. */
namespace mx_lock_relaxed {
#define MX_LOCK_ORDER MX_RLX
#include "mutex_impl.h"
}
#undef MX_LOCK_ORDER
#undef MX_UNLOCK_ORDER
#undef MX_MARKS_WAITERS
#undef MX_UNLOCK_BY_STORE
#undef MX_GIVE_UP_CLEARS

/* Bug 5 (session 19's): a giving-up waiter that leaves the queue empty clears nothing, so a
 * waiter that timed out while queued leaves WAITERS set on an unlocked, unawaited mutex. */
namespace mx_give_up_keeps_waiters {
#define MX_GIVE_UP_CLEARS 0
#include "mutex_impl.h"
}

#define MX_OPS(ns)                                                                         \
  struct ops_##ns {                                                                        \
    static bool lock_fast(MX_WORD *m) { return ns::lock_fast(m); }                         \
    static bool try_lock(MX_WORD *m) { return ns::try_lock(m); }                           \
    static bool take_or_mark(MX_WORD *m) { return ns::take_or_mark(m); }                   \
    static int unlock_fast(MX_WORD *m) { return ns::unlock_fast(m); }                      \
    static void clear(MX_WORD *m, uint32_t bits) { ns::clear(m, bits); }                   \
    static uint32_t wake_clear_bits(bool locked, bool popped, bool hand, bool empty) {      \
      return ns::wake_clear_bits(locked, popped, hand, empty);                             \
    }                                                                                      \
  };
MX_OPS(mx_correct)
MX_OPS(mx_unlock_by_store)
MX_OPS(mx_no_mark)
MX_OPS(mx_unlock_relaxed)
MX_OPS(mx_lock_relaxed)
MX_OPS(mx_give_up_keeps_waiters)

enum { THREADS = 3, ROUNDS = 2, HANDED = 0, RETRY = 1 };

/* Deadlines false: the mutex model (every lock waits to the end); true: the give-up model. */
template <class Ops, bool Deadlines = false, bool GiveUpSilently = false>
struct mutex_test : rl::test_suite<mutex_test<Ops, Deadlines, GiveUpSilently>, THREADS> {
  MX_WORD state;
  rl::mutex qlock;
  rl::var<int> queue[THREADS];
  rl::var<int> qlen;
  rl::atomic<int> done[THREADS];
  rl::var<int> status[THREADS];
  rl::var<int> counter;
  rl::atomic<int> held; /* critical sections entered (relaxed: read after the threads end) */

  void before() {
    state($).store(0, rl::mo_relaxed);
    qlen($) = 0;
    counter($) = 0;
    held($).store(0, rl::mo_relaxed);
  }

  /* Under qlock: takes id's node out of the queue if it is still there. */
  bool unlink(unsigned id) {
    int n = qlen($);
    for (int i = 0; i < n; i++)
      if (queue[i]($) == (int)id) {
        for (int k = i + 1; k < n; k++) queue[k - 1]($) = (int)queue[k]($);
        qlen($) = n - 1;
        return true;
      }
    return false;
  }

  /* mutex_wake_next: the slow unlock (locked) or a giving-up waiter's hand-on (!locked). */
  void wake_next(bool locked) {
    qlock.lock($);
    int n = qlen($);
    int w = -1;
    if (n > 0) {
      w = queue[0]($);
      for (int i = 1; i < n; i++) queue[i - 1]($) = (int)queue[i]($);
      qlen($) = n - 1;
    }
    bool hand = w == 2 && locked; /* thread 2 plays the starving waiter */
    Ops::clear(&state, Ops::wake_clear_bits(locked, w >= 0, hand, qlen($) == 0));
    qlock.unlock($);
    if (w >= 0) {
      status[w]($) = hand ? HANDED : RETRY;
      done[w]($).store(1, rl::mo_release);
    }
  }

  /* false: gave up (only a thread with a deadline does) */
  bool lock(unsigned id, bool deadline) {
    if (Ops::lock_fast(&state)) return true;
    bool front = false;
    for (;;) {
      if (Ops::try_lock(&state)) return true;
      qlock.lock($);
      if (Ops::take_or_mark(&state)) {
        qlock.unlock($);
        return true;
      }
      done[id]($).store(0, rl::mo_relaxed);
      int n = qlen($);
      if (front) {
        for (int i = n; i > 0; i--) queue[i]($) = (int)queue[i - 1]($);
        queue[0]($) = (int)id;
      } else {
        queue[n]($) = (int)id;
      }
      qlen($) = n + 1;
      qlock.unlock($);
      bool passed = false; /* the deadline passed while queued, after a wake was on its way */
      while (done[id]($).load(rl::mo_acquire) == 0) {
        if (deadline && rl::rand(2)) { /* the deadline passes: weft__wq_wait's timeout */
          qlock.lock($);
          bool still = unlink(id);
          qlock.unlock($);
          if (still) return false; /* nothing woke us; WAITERS stays for the next unlock */
          while (done[id]($).load(rl::mo_acquire) == 0) rl::yield(1, $); /* settle */
          passed = true;
          break;
        }
        rl::yield(1, $);
      }
      if (status[id]($) == HANDED) return true;
      if (deadline && (passed || rl::rand(2))) { /* mutex_retry_check says give up */
        if (!GiveUpSilently) wake_next(false);   /* mutex_give_up */
        return false;
      }
      front = true;
    }
  }

  void unlock() {
    int r = Ops::unlock_fast(&state);
    RL_ASSERT(r >= 0);
    if (r == 0) wake_next(true);
  }

  void thread(unsigned id) {
    bool deadline = Deadlines && id != 0;
    for (int r = 0; r < (deadline ? 1 : ROUNDS); r++) {
      if (!lock(id, deadline)) continue;
      counter($) = counter($) + 1;
      held($).fetch_add(1, rl::mo_relaxed);
      unlock();
    }
  }

  void after() {
    RL_ASSERT(counter($) == held($).load(rl::mo_relaxed));
    if (!Deadlines) RL_ASSERT(counter($) == THREADS * ROUNDS);
    RL_ASSERT(qlen($) == 0);
    RL_ASSERT(state($).load(rl::mo_relaxed) == 0); /* what weft_mutex_destroy requires */
  }
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
  check<mutex_test<ops_mx_correct, true>>("mutex give-up correct", false);
  check<mutex_test<ops_mx_give_up_keeps_waiters, true>>("mutex give-up keeps WAITERS", true);
  check<mutex_test<ops_mx_correct, true, true>>("mutex give-up drops its wake-up", true);
  check<handoff_test<false, false>>("hand-off vs timeout correct", false);
  check<handoff_test<true, false>>("hand-off completion relaxed", true);
  check<handoff_test<false, true>>("hand-off waiter skips the settle", true);
  check<select_test<false>>("select claim correct", false);
  check<select_test<true>>("select without the claim CAS", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
