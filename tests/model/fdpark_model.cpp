/*
 * Model check of the fd park (lib/fdpark_impl.h, issue 12) — the poller's first model — with
 * relacy: the very header the library compiles, instantiated with relacy's atomics together with
 * the task's park state (lib/wake_impl.h), once correctly and once per planted bug. Exit status 0
 * only if the correct variants pass AND every planted bug is found.
 *
 * The actors, as in the library (lib/io.c's task_dir_wait, lib/poll.c's weft__poll_dir_notify,
 * weft_task_cancel):
 *   the waiter  reads the edge count (`seen`), makes its call (looks at `data`, the socket's
 *               receive queue); finding nothing, it begins its park (wake_impl.h's park_begin),
 *               parks in the word (fdpark park) and, if it parked, switches out: its scheduler
 *               commits the park (park_commit) and schedules it if an event came first. Retry
 *               answers abort the park and call again;
 *   the poller  data arrives (the kernel's queue, before the edge), then the edge: the claim
 *               (bump and look), the wake through the park state, the end; schedules the task
 *               on a win over PARKED (the end first: a deliverer of the task's runtime);
 *   a canceller (the second variant) cancels the task: a win over PARKED schedules it.
 * Whoever schedules the task runs its resumption right there (the task runs only once
 * scheduled): park_end, then settle (woken by the edge) or withdraw (by the cancel), then the
 * checks, and a second wait's publication, which must find the word free.
 * Properties: no lost wake-up (a task that parked is scheduled; one woken by the edge, or that
 * retried, finds the data); exactly one schedule; the resumed task finds the word EMPTY (no
 * deliverer still holds its claim). Planted bugs: the recheck before the publication (a lost
 * wake-up from a wrong order), the publication with release instead of seq_cst (the same by
 * store buffering), the claim taken for the win (the cancel schedules the task too: a double
 * schedule), no settle (the task's next wait finds the word still CLAIMED).
 *
 * Usage: fdpark_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The relacy instances of wake_impl.h and fdpark_impl.h ------------------------------------ */

#include "wake_relacy.h"

namespace wk {
#include "wake_impl.h"
}

#define FP_WORD rl::atomic<uintptr_t>
#define FP_COUNT rl::atomic<uint32_t>
#define FP_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define FP_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define FP_FETCH_ADD(obj, v, mo) ((obj)(RL_INFO).fetch_add((v), (mo)))
#define FP_CAS(obj, expected, desired, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mos), (mof)))
#define FP_RLX rl::mo_relaxed
#define FP_ACQ rl::mo_acquire
#define FP_REL rl::mo_release
#define FP_SC rl::mo_seq_cst
#define FP_SPIN() rl::yield(1, RL_INFO)
#define FP_LOST wk::WK_LOST
#define FP_WON_PARKING wk::WK_WON_PARKING
#define FP_WON_PARKED wk::WK_WON_PARKED
/* The task's "descriptor address" is its park state's. */
#define FP_WAKE(task) wk::wake(reinterpret_cast<WK_STATE *>(task), WK_BY_COMPLETION)
#define FP_FN(name) name

namespace fp_correct {
#include "fdpark_impl.h"
}
#undef FP_RECHECK_FIRST
#undef FP_PUBLISH_ORDER
#undef FP_WAKE_BY_CLAIM
#undef FP_NO_SETTLE


/* Bug 1: the waiter rereads the edge count before it publishes itself: an edge between the two
 * finds the word empty, and the task sleeps with its data waiting (a lost wake-up). */
namespace fp_recheck_first {
#define FP_RECHECK_FIRST 1
#include "fdpark_impl.h"
}
#undef FP_RECHECK_FIRST
#undef FP_PUBLISH_ORDER
#undef FP_WAKE_BY_CLAIM
#undef FP_NO_SETTLE


/* Bug 2: the publication is a release: it and the poller's bump can miss each other (store
 * buffering), the same lost wake-up. */
namespace fp_publish_release {
#define FP_PUBLISH_ORDER rl::mo_release
#include "fdpark_impl.h"
}
#undef FP_RECHECK_FIRST
#undef FP_PUBLISH_ORDER
#undef FP_WAKE_BY_CLAIM
#undef FP_NO_SETTLE


/* Bug 3: the deliverer takes its claim for the win over the park state: a cancel that won the
 * state schedules the task as well (a double schedule). */
namespace fp_wake_by_claim {
#define FP_WAKE_BY_CLAIM 1
#include "fdpark_impl.h"
}
#undef FP_RECHECK_FIRST
#undef FP_PUBLISH_ORDER
#undef FP_WAKE_BY_CLAIM
#undef FP_NO_SETTLE


/* Bug 4: no settle: a task woken by the cancel while the deliverer holds its claim goes on, and
 * its next wait finds the word CLAIMED (a spurious WEFT_EBUSY; in the library, the deliverer's
 * end could also erase the next wait's publication). */
namespace fp_no_settle {
#define FP_NO_SETTLE 1
#include "fdpark_impl.h"
}
#undef FP_RECHECK_FIRST
#undef FP_PUBLISH_ORDER
#undef FP_WAKE_BY_CLAIM
#undef FP_NO_SETTLE


#define FP_OPS(ns)                                                                             \
  struct ops_##ns {                                                                            \
    static int park(FP_WORD *p, FP_COUNT *e, uintptr_t t, uint32_t seen) {                     \
      return ns::park(p, e, t, seen);                                                          \
    }                                                                                          \
    static void settle(FP_WORD *p) { ns::settle(p); }                                          \
    static void withdraw(FP_WORD *p, uintptr_t t) { ns::withdraw(p, t); }                      \
    static uintptr_t claim(FP_WORD *p, FP_COUNT *e) { return ns::deliver_claim(p, e, 2); }     \
    static int wake(uintptr_t t) { return ns::deliver_wake(t); }                               \
    static void end(FP_WORD *p) { ns::deliver_end(p); }                                        \
  };
FP_OPS(fp_correct)
FP_OPS(fp_recheck_first)
FP_OPS(fp_publish_release)
FP_OPS(fp_wake_by_claim)
FP_OPS(fp_no_settle)

template <class Ops, bool Cancel>
struct park_test : rl::test_suite<park_test<Ops, Cancel>, Cancel ? 3 : 2> {
  FP_WORD park;
  FP_COUNT edges;
  WK_STATE state;        /* the waiting task's park state (wake_impl.h) */
  rl::atomic<int> data;  /* the socket's receive queue: 1 once the message arrived */
  rl::atomic<int> scheduled;
  rl::var<int> parked, got, resumed, unwoken;

  void before() {
    park($).store(FP_EMPTY, rl::mo_relaxed);
    edges($).store(0, rl::mo_relaxed);
    state($).store(0, rl::mo_relaxed); /* RUNNING */
    data($).store(0, rl::mo_relaxed);
    scheduled($).store(0, rl::mo_relaxed);
    parked($) = 0;
    got($) = 0;
    resumed($) = 0;
    unwoken($) = 0;
  }

  uintptr_t task() { return reinterpret_cast<uintptr_t>(&state); }

  /* The call: the kernel's queue (the socket lock orders arrival before the edge's bump). */
  bool call() { return data($).load(rl::mo_acquire) != 0; }

  /* The task, scheduled: runs on the scheduling thread. */
  void resume() {
    resumed($) = 1;
    /* Only a won wake schedules: a task resumed without one is left as it is (still PARKED),
     * so that what follows shows the consequence — a second schedule by the real winner. */
    if ((state($).load(rl::mo_acquire) & WK_PHASE) != WK_WOKEN) {
      unwoken($) = 1;
      return;
    }
    uint32_t side = wk::park_end(&state);
    if (side == WK_BY_COMPLETION) {
      Ops::settle(&park);
      RL_ASSERT(call()); /* woken by the edge: its data is there */
      got($) = 1;
    } else {
      RL_ASSERT(side == WK_BY_CANCEL);
      Ops::withdraw(&park, task());
    }
    /* The task's next wait: the word must be free for it. */
    uintptr_t empty = FP_EMPTY;
    RL_ASSERT(park($).compare_exchange_strong(empty, task(), rl::mo_seq_cst, rl::mo_relaxed));
    park($).store(FP_EMPTY, rl::mo_relaxed);
  }

  void schedule() {
    RL_ASSERT(scheduled($).fetch_add(1, rl::mo_acq_rel) == 0); /* exactly once */
    resume();
  }

  void waiter() {
    for (;;) {
      uint32_t seen = edges($).load(rl::mo_acquire);
      if (call()) {
        got($) = 1;
        return;
      }
      if (!wk::park_begin(&state, true)) return; /* cancelled before the wait */
      int r = Ops::park(&park, &edges, task(), seen);
      RL_ASSERT(r != fp_correct::FP_BUSY); /* the only waiter */
      if (r != fp_correct::FP_PARKED) {
        uint32_t side = wk::park_abort(&state);
        if (side == WK_BY_CANCEL) return;
        RL_ASSERT(call()); /* an edge came after the call: its data is there */
        continue;
      }
      parked($) = 1;
      /* switched out: the scheduler commits */
      if (wk::park_commit(&state)) schedule();
      return;
    }
  }

  void thread(unsigned id) {
    if (id == 0) {
      waiter();
    } else if (id == 1) { /* the poller: the arrival, then its edge */
      data($).store(1, rl::mo_release);
      uintptr_t t = Ops::claim(&park, &edges);
      if (!t) return;
      int won = Ops::wake(t);
      Ops::end(&park);
      if (won == wk::WK_WON_PARKED) schedule();
    } else { /* weft_task_cancel */
      if (wk::cancel(&state) == wk::WK_WON_PARKED) schedule();
    }
  }

  void after() {
    /* no lost wake-up: a parked task was scheduled; without a cancel it got its data */
    if (parked($)) RL_ASSERT(scheduled($).load(rl::mo_relaxed) == 1);
    if (!Cancel) RL_ASSERT(got($));
    RL_ASSERT(park($).load(rl::mo_relaxed) == FP_EMPTY);
    RL_ASSERT(!unwoken($));
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<park_test<ops_fp_correct, false>>("fd park vs edge correct", false);
  check<park_test<ops_fp_correct, true>>("fd park vs edge and cancel correct", false);
  check<park_test<ops_fp_recheck_first, false>>("fd park recheck before publish", true);
  check<park_test<ops_fp_publish_release, false>>("fd park publish with release", true);
  check<park_test<ops_fp_wake_by_claim, true>>("fd park wake by claim", true);
  check<park_test<ops_fp_no_settle, true>>("fd park without settle", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
