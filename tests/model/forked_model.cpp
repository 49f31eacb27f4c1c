/*
 * Model check of the claim that makes fork-inherited state anew once per process
 * (lib/forked_impl.h, lib/sys.c's weft__forked_claim and weft__forked_done) with relacy: the
 * very header lib/sys.c compiles, instantiated with relacy's atomics, once correctly and once
 * per planted bug. Exit status 0 only if the correct variant passes AND every planted bug is
 * found.
 *
 * The actors, in a child of fork() (the word is not `current`: the state is the parent's):
 *   weft's handler      on the forking thread: makes the state anew if no one has (the live
 *                       runtimes' lock made anew, the list emptied), then, under the lock,
 *                       forgets what names the parent's runtimes — it must find none listed;
 *   an application      thread started by the application's own child handler (registered
 *                       before weft's), creating a runtime: the same claim, then, under the
 *                       lock, it lists its runtime (review, session 30).
 * Properties: the state is made anew exactly once; nobody uses the lock or the list before
 * they are made anew (an rl::var each: a use not ordered after the maker's writes is a data
 * race relacy reports); the runtime the application listed is still listed at the end.
 * Planted bugs: a look and a plain store instead of the CAS (both make it anew, the second
 * over the first's runtime), done stored relaxed (the other uses the state unordered after its
 * making), a thread that finds another at work going on as if it were done.
 *
 * Usage: forked_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

#define FK_WORD rl::atomic<int>
#define FK_LOAD(obj, mo) ((*(obj))(RL_INFO).load(mo))
#define FK_STORE(obj, v, mo) ((*(obj))(RL_INFO).store((v), (mo)))
#define FK_CAS(obj, expected, desired, mos, mof) \
  ((*(obj))(RL_INFO).compare_exchange_strong((expected), (desired), (mos), (mof)))
#define FK_RLX rl::mo_relaxed
#define FK_ACQ rl::mo_acquire
#define FK_REL rl::mo_release
#define FK_YIELD() rl::yield(1, RL_INFO)
#define FK_FN(name) name

namespace fk_correct {
#include "forked_impl.h"
}

/* Bug 1: a look, then a plain store. */
namespace fk_no_cas {
#define FK_NO_CAS 1
#include "forked_impl.h"
}

/* Bug 2: done stored relaxed. */
namespace fk_done_relaxed {
#define FK_DONE_ORDER rl::mo_relaxed
#include "forked_impl.h"
}

/* Bug 3: a maker at work taken for one that is done. */
namespace fk_busy_is_current {
#define FK_BUSY_IS_CURRENT 1
#include "forked_impl.h"
}

#define FK_OPS(ns)                                                                         \
  struct ops_##ns {                                                                        \
    static bool claim(rl::atomic<int> *w, int current, int busy) {                         \
      return ns::claim(w, current, busy);                                                  \
    }                                                                                      \
    static void done(rl::atomic<int> *w, int current) { ns::done(w, current); }            \
  };
FK_OPS(fk_correct)
FK_OPS(fk_no_cas)
FK_OPS(fk_done_relaxed)
FK_OPS(fk_busy_is_current)

enum { STALE = 0, CURRENT = -1, BUSY = -2, PARENTS = 1, OURS = 2 };

template <class Ops>
struct forked_test : rl::test_suite<forked_test<Ops>, 2> {
  rl::atomic<int> word;
  rl::var<int> lock_fresh; /* the live runtimes' lock, made anew (pthread_mutex_init) */
  rl::var<int> list;       /* PARENTS: the parent's runtimes still listed; OURS: the child's */
  rl::var<int> makes;
  rl::mutex lock; /* the lock itself, once made anew */

  void before() {
    word($).store(STALE, rl::mo_relaxed);
    lock_fresh($) = 0;
    list($) = PARENTS;
    makes($) = 0;
  }

  void make_anew_if_forked() { /* lib/task.c's live_make_anew_if_forked */
    if (!Ops::claim(&word, CURRENT, BUSY)) return;
    makes($) = makes($) + 1;
    lock_fresh($) = 1;
    list($) = 0;
    Ops::done(&word, CURRENT);
  }

  void thread(unsigned id) {
    make_anew_if_forked();
    RL_ASSERT(lock_fresh($) == 1); /* nobody takes the inherited lock */
    lock.lock($);
    if (id == 0) RL_ASSERT(!(list($) & PARENTS)); /* weft's handler: nothing of the parent's */
    else list($) = list($) | OURS;                 /* the application's new runtime */
    lock.unlock($);
  }

  void after() {
    RL_ASSERT(makes($) == 1);
    RL_ASSERT(list($) == OURS);
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<forked_test<ops_fk_correct>>("fork state made anew once, correct", false);
  check<forked_test<ops_fk_no_cas>>("fork state claimed by a look and a store", true);
  check<forked_test<ops_fk_done_relaxed>>("fork state published relaxed", true);
  check<forked_test<ops_fk_busy_is_current>>("fork state used while being made", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
