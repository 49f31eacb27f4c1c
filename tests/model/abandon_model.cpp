/*
 * Model check of destroy's way out of a discarded task's wait on a waiter queue (session 25)
 * with relacy: the headers lib/sync.c and lib/waitq.h compile — lib/abandon_impl.h (the direct
 * wait's handshake), lib/wake_impl.h (the task's park state) and lib/join_impl.h (the wait's
 * completion word and destroy's hold on it) — instantiated with relacy's atomics, once
 * correctly and once per planted bug. Exit status 0 only if the correct variants pass AND
 * every planted bug is found.
 *
 * The actors, as in lib/sync.c (weft__wq_abandon, wq_word_wait_abandoned) and lib/waitq.h
 * (wq_pop, wq_wake_direct, wq_wake):
 *   destroy   step 3 of weft_runtime_destroy, the workers stopped: the task is discarded in its
 *             wait, its node queued on the object (a semaphore, an event, a channel). Its node
 *             must leave the queue, under the object's lock, unless a peer dequeued it; then
 *             the stack holding the node and the wait is unmapped;
 *   the peer  a plain thread (the only kind still running at step 3): it takes the object's
 *             lock, dequeues the node if it is still there, unlocks, hands over (the direct
 *             wait: a wake of the task's park state, then `done`; the word wait: a completion
 *             of the wait's word), returns — and its caller frees the object, which is legal
 *             once the call that woke the object's last waiter has returned.
 * The object's memory and the discarded stack are each a plain variable that every access
 * checks and the free (the unmap) writes: an access not ordered before the free is a data race
 * relacy reports, one ordered after it fails the check.
 * Properties: the node is never left queued; destroy never touches the object after the peer's
 * caller freed it; the peer never touches the wait after destroy returned (the stack is gone).
 * The direct wait is checked with the task PARKED (a shielded wait) and woken by a cancel but
 * not yet run (its peer's wake loses: review, session 25, which broke the first, fenced,
 * version of the handshake). Planted bugs: the direct wait without the handshake (session 24's
 * rule: look, then lock), with the peer's mark ignored (the fenced version's look at the task),
 * with destroy's exchange relaxed and with its OVER relaxed; the word wait with a look at DONE instead of the hold
 * (session 24's rule) and with a completion that does not wait out BUSY.
 *
 * Usage: abandon_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The park state (wake_impl.h) and the handshake (abandon_impl.h) ------------------- */

#include "wake_relacy.h"
namespace wk {
#include "wake_impl.h"
}

#define AB_FLAG rl::atomic<uint32_t>
#define AB_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define AB_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define AB_EXCHANGE(obj, v, mo) ((obj)(RL_INFO).exchange((v), (mo)))
#define AB_YIELD() rl::yield(1, RL_INFO)
#define AB_RLX rl::mo_relaxed
#define AB_ACQ rl::mo_acquire
#define AB_REL rl::mo_release
#define AB_ACQ_REL rl::mo_acq_rel
#define AB_FN(name) name

namespace ab_correct {
#include "abandon_impl.h"
}
/* the defaults the first include defined, before each planted variant's */
#undef AB_NO_HANDSHAKE
#undef AB_IGNORE_PEER
#undef AB_BEGIN_ORDER
#undef AB_END_ORDER

/* Bug 1: session 24's rule: destroy looks, then locks; the peer never waits. */
namespace ab_no_handshake {
#define AB_NO_HANDSHAKE 1
#include "abandon_impl.h"
}
#undef AB_NO_HANDSHAKE
#undef AB_IGNORE_PEER
#undef AB_BEGIN_ORDER
#undef AB_END_ORDER

/* Bug 2: destroy ignores the peer's mark and looks at the task (session 25's first version,
 * which a wake that lost to a cancel defeats). */
namespace ab_ignore_peer {
#define AB_IGNORE_PEER 1
#include "abandon_impl.h"
}
#undef AB_NO_HANDSHAKE
#undef AB_IGNORE_PEER
#undef AB_BEGIN_ORDER
#undef AB_END_ORDER

/* Bug 3: destroy's exchange without acquire (the peer's `settle` unseen). */
namespace ab_begin_relaxed {
#define AB_BEGIN_ORDER AB_RLX
#include "abandon_impl.h"
}
#undef AB_NO_HANDSHAKE
#undef AB_IGNORE_PEER
#undef AB_BEGIN_ORDER
#undef AB_END_ORDER

/* Bug 4: destroy's OVER without release (its touches of the object not before the free). */
namespace ab_end_relaxed {
#define AB_END_ORDER AB_RLX
#include "abandon_impl.h"
}

#define AB_OPS(ns)                                                                   \
  struct ops_##ns {                                                                  \
    static bool begin(rl::atomic<uint32_t> *f) { return ns::abandon_begin(f); }      \
    static void end(rl::atomic<uint32_t> *f) { ns::abandon_end(f); }                 \
    static void peer_waits(rl::atomic<uint32_t> *f) { ns::peer_waits_abandon(f); }   \
  };
AB_OPS(ab_correct)
AB_OPS(ab_no_handshake)
AB_OPS(ab_ignore_peer)
AB_OPS(ab_begin_relaxed)
AB_OPS(ab_end_relaxed)

/* ---- The completion word (join_impl.h) ---------------------------------------------------- */

#include "join_relacy.h"

namespace jn_correct {
#include "join_impl.h"
}

/* Bug 3: session 24's rule: a look at DONE, then the lock, no hold. */
namespace jn_hold_by_look {
#undef JN_HOLD_BY_LOOK /* the default the first include defined */
#define JN_HOLD_BY_LOOK 1
#include "join_impl.h"
#undef JN_HOLD_BY_LOOK
}

/* Bug 4: a completion that does not wait out a remover's BUSY (so not destroy's hold). */
namespace jn_complete_ignores_busy {
#undef JN_COMPLETE_WAITS_BUSY /* the default the first include defined */
#define JN_COMPLETE_WAITS_BUSY 0
#include "join_impl.h"
#undef JN_COMPLETE_WAITS_BUSY
}

#define JN_OPS(ns)                                                                   \
  struct ops_##ns {                                                                  \
    static bool hold(rl::atomic<uintptr_t> *w) { return ns::hold_unless_done(w); }  \
    static void unhold(rl::atomic<uintptr_t> *w) { ns::unhold(w); }                  \
    static void complete(rl::atomic<uintptr_t> *w) { (void)ns::complete(w); }        \
  };
JN_OPS(jn_correct)
JN_OPS(jn_hold_by_look)
JN_OPS(jn_complete_ignores_busy)

/* ---- What both waits share: the object, its queue, the discarded stack -------------------- */

struct scene {
  rl::atomic<int> lock;      /* the object's spinlock (waitq.h's wq_lock) */
  rl::var<int> queued;       /* the node's `queued`, under the lock */
  rl::var<int> settle;       /* the wait's `settle`, written by the dequeuing peer under it */
  rl::var<int> status;       /* the wait's status, the peer's answer */
  rl::var<int> object_alive; /* 0 once the peer's caller freed the object */
  rl::var<int> stack_alive;  /* 0 once destroy unmapped the discarded stack */

  void init() {
    lock($).store(0, rl::mo_relaxed);
    queued($) = 1;
    settle($) = 0;
    status($) = -1;
    object_alive($) = 1;
    stack_alive($) = 1;
  }
  void touch_object() { RL_ASSERT(object_alive($) == 1); }
  void touch_stack() { RL_ASSERT(stack_alive($) == 1); }
  void lock_object() {
    touch_object();
    while (lock($).exchange(1, rl::mo_acquire)) rl::yield(1, $);
  }
  void unlock_object() { lock($).store(0, rl::mo_release); }
  /* The peer's dequeue (wq_pop): true if it took the node. */
  bool peer_dequeues() {
    lock_object();
    bool got = queued($) == 1;
    if (got) {
      touch_stack();
      queued($) = 0;
      settle($) = 1; /* a plain thread: outside the task's runtime */
    }
    unlock_object();
    return got;
  }
  /* Destroy's locked look (both abandons): true if the node was still queued (unlinked now). */
  bool destroy_unlinks() {
    lock_object();
    bool q = queued($) == 1;
    if (q) queued($) = 0;
    unlock_object();
    return q;
  }
};

/* ---- The direct wait (weft__wq_abandon against wq_wake_direct) ---------------------------- */

/* CancelWoken: the task was woken by a cancel (the shutdown's, or weft_cancel) and discarded
 * before it ran, its node still queued: the peer's wake then loses and writes nothing to the
 * park state (review, session 25). Else it is PARKED (a shielded wait). */
template <class Ops, bool CancelWoken>
struct direct_test : rl::test_suite<direct_test<Ops, CancelWoken>, 2> {
  scene sc;
  rl::atomic<uint32_t> state;      /* the task's park state */
  rl::atomic<uint32_t> done;       /* the wait's */
  rl::atomic<uint32_t> abandoning; /* the wait's */

  void before() {
    sc.init();
    state($).store(CancelWoken ? WK_WOKEN | (WK_BY_CANCEL << WK_SIDE_SHIFT) | WK_CANCEL_REQUESTED
                               : WK_PARKED,
                   rl::mo_relaxed);
    done($).store(0, rl::mo_relaxed);
    abandoning($).store(ab_correct::AB_NONE, rl::mo_relaxed);
  }

  void peer() {
    if (sc.peer_dequeues()) {
      sc.touch_stack();
      sc.status($) = 0;
      (void)wk::wake(&state, WK_BY_COMPLETION); /* a won wake pushes into the runtime */
      RL_ASSERT(!CancelWoken || wk::woken_by_completion(state($).load(rl::mo_relaxed)) == false);
      sc.touch_stack();
      Ops::peer_waits(&abandoning);
      sc.touch_stack();
      done($).store(1, rl::mo_release); /* its last touch */
    }
    sc.touch_object();
    sc.object_alive($) = 0; /* the call returned: its caller frees the object */
  }

  void destroy() {
    bool wait;
    if (Ops::begin(&abandoning) || wk::woken_by_completion(state($).load(rl::mo_acquire)) ||
        done($).load(rl::mo_acquire)) {
      wait = sc.settle($) == 1;
    } else {
      bool q = sc.destroy_unlinks();
      wait = !q && sc.settle($) == 1;
    }
    Ops::end(&abandoning);
    if (wait)
      while (!done($).load(rl::mo_acquire)) rl::yield(1, $);
    sc.stack_alive($) = 0; /* step 6 unmaps the stack */
  }

  void thread(unsigned id) {
    if (id == 0) destroy();
    else peer();
  }

  void after() { RL_ASSERT(sc.queued($) == 0); }
};

/* ---- The word wait (wq_word_wait_abandoned against wq_wake's completion) ----------------- */

template <class Ops>
struct word_test : rl::test_suite<word_test<Ops>, 2> {
  scene sc;
  rl::atomic<uintptr_t> word; /* the wait's completion word; its task's node left in step 3 */

  void before() {
    sc.init();
    word($).store(0, rl::mo_relaxed);
  }

  void settle() { /* weft__wq_settle */
    while ((word($).load(rl::mo_acquire) & (JN_DONE | JN_BUSY)) != JN_DONE) rl::yield(1, $);
  }

  void peer() {
    if (sc.peer_dequeues()) {
      sc.touch_stack();
      sc.status($) = 0;
      Ops::complete(&word); /* no node: its last touch */
    }
    sc.touch_object();
    sc.object_alive($) = 0;
  }

  void destroy() {
    if (!Ops::hold(&word)) {
      settle();
    } else {
      bool q = sc.destroy_unlinks();
      Ops::unhold(&word);
      if (!q) settle();
    }
    sc.stack_alive($) = 0;
  }

  void thread(unsigned id) {
    if (id == 0) destroy();
    else peer();
  }

  void after() { RL_ASSERT(sc.queued($) == 0); }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<direct_test<ops_ab_correct, false>>("abandon of a direct wait, correct", false);
  check<direct_test<ops_ab_correct, true>>("abandon of a cancel-woken direct wait, correct", false);
  check<direct_test<ops_ab_no_handshake, false>>("abandon of a direct wait by look, then lock",
                                                 true);
  check<direct_test<ops_ab_ignore_peer, true>>(
      "abandon of a cancel-woken direct wait, the peer's mark ignored", true);
  check<direct_test<ops_ab_begin_relaxed, false>>("abandon of a direct wait, begin relaxed", true);
  check<direct_test<ops_ab_end_relaxed, false>>("abandon of a direct wait, end relaxed", true);
  check<word_test<ops_jn_correct>>("abandon of a word wait, correct", false);
  check<word_test<ops_jn_hold_by_look>>("abandon of a word wait by look, then lock", true);
  check<word_test<ops_jn_complete_ignores_busy>>("abandon of a word wait, completion ignores BUSY",
                                                 true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
