/*
 * Model check of the descriptor pass's nudge (lib/nudge_impl.h, sessions 34–35) with relacy:
 * the very header lib/task.c compiles, with park_impl.h's two halves (lib/worker.c's), each
 * instantiated with relacy's atomics, once correctly and once per planted bug. Exit status 0
 * only if the correct variant passes AND every planted bug is found.
 *
 * The race: two plain threads each give a descriptor back and ask for a pass (lib/task.c's
 * spill_from_thread and ask_for_a_pass: under task_lock, the return counted and the flag
 * exchanged; outside it, the producer's wake check if this ask set the flag). The last spinning
 * worker parks (lib/worker.c's park): under task_lock it looks at the returns since its last
 * pass and arms the flag with the answer (weft__task_scavenge); then it announces itself idle
 * (park_impl.h) and, if its own look armed nothing, looks at the flag (weft__task_nudged_until).
 * The flag starts set (a pass armed before: the case where a late arm erases an ask) or clear.
 * Property, at the end: every return was counted by the worker's look, or the worker sleeps
 * with a pass due (its look or the flag), or an asker's wake check woke it. Otherwise the
 * descriptors stay in the caches and the store until some unrelated wake-up, perhaps never
 * (session 34's review: 18 MB kept by an idle runtime).
 *
 * Planted bugs: the arm stored after the lock is dropped (an ask between the look and the
 * store is erased: session 34's first version); the parker that does not look at the flag (an
 * ask that found the worker spinning woke no one, and the worker parks for good: session 34's
 * second review); the parker's look with acquire, or the asker's exchange relaxed, not
 * seq_cst (store buffering: the asker's wake check and the parker's look both read the old
 * values).
 * Run time: ~1 s (random 2·10^5 and bound 3 for each variant; the bugs are found at once).
 *
 * Usage: nudge_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

#define PK_COUNT rl::atomic<int>
#define PK_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define PK_FETCH_ADD(obj, v, mo) ((obj)(RL_INFO).fetch_add((v), (mo)))
#define PK_FETCH_SUB(obj, v, mo) ((obj)(RL_INFO).fetch_sub((v), (mo)))
#define PK_SC rl::mo_seq_cst
#define PK_FN(name) park_##name
#include "park_impl.h"

#define NG_FLAG rl::atomic<bool>
#define NG_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define NG_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define NG_XCHG(obj, v, mo) ((obj)(RL_INFO).exchange((v), (mo)))
#define NG_SC rl::mo_seq_cst
#define NG_FN(name) name

namespace ng_correct {
#include "nudge_impl.h"
}

/* Bug: the parker looks at the flag with acquire. */
namespace ng_look_acquire {
#define NG_LOOK_ORDER rl::mo_acquire
#include "nudge_impl.h"
}

/* Bug: the asker's exchange relaxed. */
namespace ng_ask_relaxed {
#define NG_ASK_ORDER rl::mo_relaxed
#include "nudge_impl.h"
}

#define NG_OPS(ns)                                                       \
  struct ops_##ns {                                                      \
    static bool ask(NG_FLAG *f) { return ns::ask(f); }                   \
    static void arm(NG_FLAG *f, bool armed) { ns::arm(f, armed); }       \
    static bool armed(NG_FLAG *f) { return ns::armed(f); }               \
  };
NG_OPS(ng_correct)
NG_OPS(ng_look_acquire)
NG_OPS(ng_ask_relaxed)

/* How the model's worker uses the header: as lib/task.c and lib/worker.c do, or with one of
 * the planted usage bugs. */
enum usage { AS_THE_LIBRARY, ARM_AFTER_UNLOCK, PARK_WITHOUT_LOOK };

/* WasSpinning: the worker parks as the last spinner (it leaves the spinners in its announce),
 * or as a worker that was not counted spinning (a park after a direct wake-up's look). */
template <class Ops, usage Use, bool FlagStartsSet, bool WasSpinning = true>
struct nudge_test : rl::test_suite<nudge_test<Ops, Use, FlagStartsSet, WasSpinning>, 3> {
  rl::mutex task_lock;
  rl::var<int> returns; /* under task_lock: descriptors given back (lib/task.c's task_returns) */
  rl::var<int> seen;    /* under task_lock: the returns the last pass looked at */
  NG_FLAG flag;
  PK_COUNT nspinning, nidle;
  rl::atomic<int> woke;
  bool pass_due; /* the worker's: it sleeps with a pass due */

  void before() {
    returns($) = 0;
    seen($) = 0;
    flag($).store(FlagStartsSet, rl::mo_relaxed);
    nspinning($).store(WasSpinning ? 1 : 0, rl::mo_relaxed); /* the worker, still looking */
    nidle($).store(0, rl::mo_relaxed);
    woke($).store(0, rl::mo_relaxed);
    pass_due = false;
  }

  void asker() { /* spill_from_thread / ask_for_a_pass */
    task_lock.lock($);
    returns($) = returns($) + 1;
    bool asked = Ops::ask(&flag);
    task_lock.unlock($);
    if (asked && park_wake_needed(&nspinning, &nidle)) woke($).store(1, rl::mo_relaxed);
  }

  void worker() { /* park: weft__task_scavenge, park_announce_idle, weft__task_nudged_until */
    task_lock.lock($);
    bool moved = returns($) != seen($);
    seen($) = returns($);
    if (Use != ARM_AFTER_UNLOCK) Ops::arm(&flag, moved);
    task_lock.unlock($);
    if (Use == ARM_AFTER_UNLOCK) Ops::arm(&flag, moved);
    park_announce_idle(&nidle, &nspinning, WasSpinning);
    pass_due = moved || (Use != PARK_WITHOUT_LOOK && Ops::armed(&flag));
  }

  void thread(unsigned id) {
    if (id < 2)
      asker();
    else
      worker();
  }

  void after() {
    bool counted = seen($) == returns($);
    RL_ASSERT(counted || pass_due || woke($).load(rl::mo_relaxed));
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<nudge_test<ops_ng_correct, AS_THE_LIBRARY, true>>("nudge correct, flag set", false);
  check<nudge_test<ops_ng_correct, AS_THE_LIBRARY, false>>("nudge correct, flag clear", false);
  check<nudge_test<ops_ng_correct, AS_THE_LIBRARY, false, false>>(
      "nudge correct, flag clear, the worker not spinning", false);
  check<nudge_test<ops_ng_look_acquire, AS_THE_LIBRARY, false, false>>(
      "nudge look with acquire, the worker not spinning", true);
  check<nudge_test<ops_ng_correct, ARM_AFTER_UNLOCK, true>>("nudge arm after the unlock", true);
  check<nudge_test<ops_ng_correct, PARK_WITHOUT_LOOK, false>>("nudge park without a look", true);
  check<nudge_test<ops_ng_look_acquire, AS_THE_LIBRARY, false>>("nudge look with acquire", true);
  check<nudge_test<ops_ng_ask_relaxed, AS_THE_LIBRARY, false>>("nudge ask relaxed", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
