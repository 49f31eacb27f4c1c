/*
 * Model check of the next slot (lib/next_impl.h, issue 11) and of the direct wait's park commit
 * (lib/wake_impl.h's park_commit_direct and its load-only park_end) with relacy: the very
 * headers the library compiles, instantiated with relacy's atomics, once correctly and once per
 * planted bug. Exit status 0 only if the correct variants pass AND every planted bug is found.
 *
 * Slot model: the owner puts entry 1, puts entry 2 (displacing 1 to its deque if still there)
 * and takes what is left; a thief looks at the slot twice (the library's "same word after
 * NEXT_STEAL_NS") and CASes out what it saw. Each entry's payload is an rl::var written before
 * its put and read by whoever runs it. Properties: every entry runs exactly once, and its
 * runner sees its payload (no data race). Planted bugs: the owner's take a load and a store,
 * the put a load and a store (a displaced entry a thief took runs twice), the thief's steal a
 * load and a store.
 *
 * Watch model: the slot's wake check against the watcher's end (lib/worker.c): the putter puts
 * into an empty slot (seq_cst) and, if it sees no watcher, makes the wake check (here: counts a
 * wake); the watcher ends (seq_cst RMW) and then looks at the slot (seq_cst) as a parker does.
 * Property: an entry put is seen by the watcher or woken for — never neither (the owner's task
 * runs long, so nobody else would take it). Planted bug: the put with release, not seq_cst.
 *
 * Direct wait model: a task switches out without park_begin; its scheduler commits
 * (park_commit_direct) and only then "unlocks" (its node becomes findable); a peer then wakes it
 * with a result; a canceller races both. Properties: the task is scheduled exactly once; woken
 * by the completion it sees the result; a cancel's request is never lost. Planted bug: the
 * commit by a load and a store (loses a request that lands between them).
 *
 * Usage: next_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The relacy instances of next_impl.h ------------------------------------------------------ */

#define NX_SLOT rl::atomic<uintptr_t>
#define NX_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define NX_XCHG(obj, v, mo) ((obj)(RL_INFO).exchange((v), (mo)))
#define NX_CAS(obj, expected, v, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (v), (mos), (mof)))
#define NX_RLX rl::mo_relaxed
#define NX_ACQ rl::mo_acquire
#define NX_SC rl::mo_seq_cst
#define NX_GEN_SHIFT 48
#define NX_FN(name) name

namespace nx_correct {
#include "next_impl.h"
}
#undef NX_ENTRY_MASK
#undef NX_TAKE_BY_STORE
#undef NX_PUT_BY_STORE
#undef NX_STEAL_BY_STORE
#undef NX_PUT_ORDER

/* Bug 1: the owner takes with a load and a store: a thief's CAS in between runs it twice. */
namespace nx_take_by_store {
#define NX_TAKE_BY_STORE 1
#include "next_impl.h"
}
#undef NX_ENTRY_MASK
#undef NX_TAKE_BY_STORE
#undef NX_PUT_BY_STORE
#undef NX_STEAL_BY_STORE
#undef NX_PUT_ORDER

/* Bug 2: the put reads the occupant and then stores: one a thief took meanwhile runs twice. */
namespace nx_put_by_store {
#define NX_PUT_BY_STORE 1
#include "next_impl.h"
}
#undef NX_ENTRY_MASK
#undef NX_TAKE_BY_STORE
#undef NX_PUT_BY_STORE
#undef NX_STEAL_BY_STORE
#undef NX_PUT_ORDER

/* Bug 3: the thief checks and then clears with a store: the owner's take in between. */
namespace nx_steal_by_store {
#define NX_STEAL_BY_STORE 1
#include "next_impl.h"
}
#undef NX_ENTRY_MASK
#undef NX_TAKE_BY_STORE
#undef NX_PUT_BY_STORE
#undef NX_STEAL_BY_STORE
#undef NX_PUT_ORDER

/* Bug 4: the put is a release, not seq_cst: the watcher's end and the put miss each other. */
namespace nx_put_release {
#define NX_PUT_ORDER rl::mo_release
#include "next_impl.h"
}

#define NX_OPS(ns)                                                                          \
  struct ops_##ns {                                                                         \
    static uintptr_t put(NX_SLOT *s, uintptr_t e, uintptr_t g) { return ns::put(s, e, g); } \
    static uintptr_t take(NX_SLOT *s) { return ns::take(s); }                               \
    static uintptr_t peek(NX_SLOT *s, int sc) { return ns::peek(s, sc); }                   \
    static uintptr_t steal(NX_SLOT *s, uintptr_t seen) { return ns::steal(s, seen); }       \
  };
NX_OPS(nx_correct)
NX_OPS(nx_take_by_store)
NX_OPS(nx_put_by_store)
NX_OPS(nx_steal_by_store)
NX_OPS(nx_put_release)

/* Entries are task pointers with tags in the library; here 64 and 128 (bits the mask keeps). */
enum { E1 = 64, E2 = 128 };

template <class Ops>
struct slot_test : rl::test_suite<slot_test<Ops>, 2> {
  NX_SLOT slot;
  rl::var<int> payload[3]; /* [1], [2]: each entry's task data, written before its put */
  rl::atomic<int> ran[3];  /* how many times each entry was run */

  void before() {
    slot($).store(0, rl::mo_relaxed);
    for (int i = 0; i < 3; i++) {
      payload[i]($) = 0;
      ran[i]($).store(0, rl::mo_relaxed);
    }
  }

  static int index(uintptr_t e) { return e == E1 ? 1 : e == E2 ? 2 : 0; }

  void run(uintptr_t e) {
    int i = index(e);
    RL_ASSERT(i != 0);
    RL_ASSERT(payload[i]($) == 10 * i); /* the waker's writes come with the entry */
    ran[i]($).fetch_add(1, rl::mo_relaxed);
  }

  void thread(unsigned id) {
    if (id == 0) { /* the owner */
      payload[1]($) = 10;
      RL_ASSERT(Ops::put(&slot, E1, 1) == 0);
      payload[2]($) = 20;
      uintptr_t old = Ops::put(&slot, E2, 2);
      if (old) run(old); /* displaced to the owner's deque: the owner runs it later */
      uintptr_t e = Ops::take(&slot);
      if (e) run(e);
    } else { /* a thief: two looks at the same word, then the CAS */
      uintptr_t seen = Ops::peek(&slot, 0);
      if (!seen || Ops::peek(&slot, 0) != seen) return;
      uintptr_t e = Ops::steal(&slot, seen);
      if (e) run(e);
    }
  }

  void after() {
    RL_ASSERT(ran[1]($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(ran[2]($).load(rl::mo_relaxed) == 1);
  }
};

template <class Ops>
struct watch_test : rl::test_suite<watch_test<Ops>, 2> {
  NX_SLOT slot;
  rl::atomic<int> nwatching;
  rl::var<int> woken, seen;

  void before() {
    slot($).store(0, rl::mo_relaxed);
    nwatching($).store(1, rl::mo_relaxed); /* a watcher is parked when the race begins */
    woken($) = 0;
    seen($) = 0;
  }

  void thread(unsigned id) {
    if (id == 0) { /* the owner's task wakes a task into the slot, then runs long */
      if (Ops::put(&slot, E1, 1) == 0 && nwatching($).load(rl::mo_seq_cst) == 0) woken($) = 1;
    } else { /* the watcher ends its watch, then parks for good unless it sees a slot in use */
      nwatching($).fetch_sub(1, rl::mo_seq_cst);
      if (Ops::peek(&slot, 1)) seen($) = 1;
    }
  }

  void after() { RL_ASSERT(woken($) || seen($)); }
};

/* ---- The relacy instances of wake_impl.h's direct commit ---------------------------------------- */

#include "wake_relacy.h"

namespace wk_correct {
#include "wake_impl.h"
}
#undef WK_DIRECT_BY_STORE
#define WK_DIRECT_BY_STORE 1
/* Bug 5: the direct commit is a load and a store: a cancel's request between them is lost. */
namespace wk_direct_by_store {
#include "wake_impl.h"
}

#define WK_OPS(ns)                                                                          \
  struct ops_##ns {                                                                         \
    static bool commit(WK_STATE *s) { return ns::park_commit_direct(s); }                   \
    static int wake(WK_STATE *s) { return ns::wake(s, WK_BY_COMPLETION); }                  \
    static int cancel(WK_STATE *s) { return ns::cancel(s); }                                \
    static uint32_t park_end(WK_STATE *s) { return ns::park_end(s); }                       \
    enum { WON_PARKED = ns::WK_WON_PARKED };                                                \
  };

WK_OPS(wk_correct)
WK_OPS(wk_direct_by_store)

template <class Ops>
struct direct_test : rl::test_suite<direct_test<Ops>, 3> {
  WK_STATE state;
  rl::atomic<int> linked, scheduled, cancelled;
  rl::var<int> result;
  uint32_t side;

  void before() {
    state($).store(0, rl::mo_relaxed); /* RUNNING */
    linked($).store(0, rl::mo_relaxed);
    scheduled($).store(0, rl::mo_relaxed);
    cancelled($).store(0, rl::mo_relaxed);
    result($) = 0;
    side = 0;
  }

  void schedule() { scheduled($).fetch_add(1, rl::mo_release); }

  void thread(unsigned id) {
    if (id == 0) { /* the task: queued its node, switched out; its scheduler commits, unlocks */
      if (Ops::commit(&state)) schedule();
      linked($).store(1, rl::mo_release); /* the queue's unlock: the node is findable */
      while (scheduled($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      side = Ops::park_end(&state);
      if (side == 1) RL_ASSERT(result($) == 7); /* woken by the hand-off: its value */
    } else if (id == 1) { /* the peer: dequeues the node under the lock, hands over */
      while (linked($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      result($) = 7;
      if (Ops::wake(&state) == Ops::WON_PARKED) schedule();
    } else { /* weft_cancel */
      if (Ops::cancel(&state) == Ops::WON_PARKED) schedule();
      cancelled($).store(1, rl::mo_relaxed);
    }
  }

  void after() {
    RL_ASSERT(scheduled($).load(rl::mo_relaxed) == 1); /* made runnable exactly once */
    RL_ASSERT(side == 1 || side == 3);
    /* the request stays (sticky): the task's next suspension point sees it */
    RL_ASSERT(state($).load(rl::mo_relaxed) & (1u << 4));
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 100000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<slot_test<ops_nx_correct>>("next slot correct", false);
  check<slot_test<ops_nx_take_by_store>>("next slot take by store", true);
  check<slot_test<ops_nx_put_by_store>>("next slot put by store", true);
  check<slot_test<ops_nx_steal_by_store>>("next slot steal by store", true);
  check<watch_test<ops_nx_correct>>("slot wake check vs watcher correct", false);
  check<watch_test<ops_nx_put_release>>("slot put with release", true);
  check<direct_test<ops_wk_correct>>("direct commit vs cancel correct", false);
  check<direct_test<ops_wk_direct_by_store>>("direct commit by store", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
