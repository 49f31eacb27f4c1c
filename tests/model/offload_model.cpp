/*
 * Model check of a blocking-pool job (lib/offload_impl.h, weft_offload) with relacy: the very
 * header lib/offload.c compiles, instantiated with relacy's atomics, once correctly and once per
 * planted bug. Exit status 0 only if the correct variant passes AND every planted bug is found.
 *
 * The actors, as in lib/offload.c:
 *   the awaiter     a task in weft_offload: it fills the job (fn, arg on its own stack), queues
 *                   it, and awaits the job's future; its wait either ends with the resolve, or
 *                   (Cancelled) ends early and the awaiter tries to abandon the job. Once it
 *                   returns, its stack is reused: it writes `arg` again;
 *   the pool thread takes the job from the queue and, if it may start it, runs the call, which
 *                   writes into `arg` and sets the result; then it resolves the future (release)
 *                   and drops its reference.
 * The queue's mutex and the future are stood in for by a release/acquire flag each. The last
 * reference out frees the job: every access to the job checks that it is alive, and the free
 * writes that mark, so an access the free is not ordered after is a data race relacy reports.
 * Properties: an abandoned call never runs and its awaiter returns WEFT_ECANCELED; otherwise
 * the call ran exactly once and the awaiter returns its result with 0; no access to `arg`
 * races with the awaiter's reuse of its stack; the job is freed exactly once, after its last
 * use.
 * Planted bugs: the awaiter that gives up claims nothing and returns at once (the rule before
 * session 20: the running call wrote into a reused stack), the pool thread runs without its
 * claim (an abandoned call runs), the references dropped with release only (the last one out
 * frees without acquiring the other side's accesses).
 *
 * Usage: offload_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

#define OJ_WORD rl::atomic<int>
#define OJ_CAS(obj, expected, desired, mos, mof) \
  ((*(obj))(RL_INFO).compare_exchange_strong((expected), (desired), (mos), (mof)))
#define OJ_FETCH_SUB(obj, v, mo) ((*(obj))(RL_INFO).fetch_sub((v), (mo)))
#define OJ_RLX rl::mo_relaxed
#define OJ_ACQ_REL rl::mo_acq_rel
#define OJ_FN(name) name

namespace oj_correct {
#include "offload_impl.h"
}

/* Bug 1: the awaiter that gives up returns at once (before session 20). */
namespace oj_no_claim {
#define OJ_NO_CLAIM 1
#include "offload_impl.h"
}

/* Bug 2: the pool thread runs the call without its claim. */
namespace oj_run_unclaimed {
#define OJ_RUN_UNCLAIMED 1
#include "offload_impl.h"
}

/* Bug 3: references dropped with release only. */
namespace oj_unref_release {
#define OJ_UNREF_ORDER rl::mo_release
#include "offload_impl.h"
}

#define OJ_OPS(ns)                                                             \
  struct ops_##ns {                                                            \
    static bool start(rl::atomic<int> *s) { return ns::start(s); }             \
    static bool abandon(rl::atomic<int> *s) { return ns::abandon(s); }         \
    static bool unref(rl::atomic<int> *r) { return ns::unref(r); }             \
  };
OJ_OPS(oj_correct)
OJ_OPS(oj_no_claim)
OJ_OPS(oj_run_unclaimed)
OJ_OPS(oj_unref_release)

enum { ECANCELED_ = -125, ARG_IN = 1, ARG_OUT = 2, ARG_REUSED = 3, RESULT = 42 };

/* The job: its two words, the stand-ins for the queue and the future, and its data. */
struct job {
  rl::atomic<int> state, refs;
  rl::atomic<int> queued;   /* the queue's mutex: fn and arg reach the pool thread */
  rl::atomic<int> resolved; /* the future: the result reaches the awaiter */
  rl::var<int> result;
  rl::var<int> alive; /* 0 once freed */
  rl::var<int> frees;
};

template <class Ops, bool Cancelled>
struct job_test : rl::test_suite<job_test<Ops, Cancelled>, 2> {
  job j;
  rl::var<int> arg; /* on the awaiter's stack */
  rl::var<int> calls;
  rl::var<int> awaiter_err;

  void before() {
    j.state($).store(oj_correct::OJ_QUEUED, rl::mo_relaxed);
    j.refs($).store(2, rl::mo_relaxed);
    j.queued($).store(0, rl::mo_relaxed);
    j.resolved($).store(0, rl::mo_relaxed);
    j.result($) = 0;
    j.alive($) = 1;
    j.frees($) = 0;
    arg($) = 0;
    calls($) = 0;
    awaiter_err($) = 1;
  }

  void touch() { RL_ASSERT(j.alive($) == 1); } /* an access to the job: not after its free */

  void release() {
    touch();
    if (!Ops::unref(&j.refs)) return;
    j.alive($) = 0;
    j.frees($) = j.frees($) + 1;
  }

  void awaiter() {
    arg($) = ARG_IN;
    j.queued($).store(1, rl::mo_release); /* pool_submit: under the queue's mutex */
    int err = 0;
    if (Cancelled) {
      touch();
      if (!Ops::abandon(&j.state)) { /* started: wait for its end (await_started_call) */
        while (!j.resolved($).load(rl::mo_acquire)) rl::yield(1, $);
      } else {
        err = ECANCELED_;
      }
    } else {
      while (!j.resolved($).load(rl::mo_acquire)) rl::yield(1, $);
    }
    if (!err) {
      touch();
      RL_ASSERT(j.result($) == RESULT);
      RL_ASSERT(arg($) == ARG_OUT); /* the call wrote into arg before its result */
    }
    awaiter_err($) = err;
    release();
    arg($) = ARG_REUSED; /* weft_offload returned: its stack is someone else's */
  }

  void pool() {
    while (!j.queued($).load(rl::mo_acquire)) rl::yield(1, $);
    touch();
    if (Ops::start(&j.state)) { /* the call */
      RL_ASSERT(arg($) == ARG_IN);
      arg($) = ARG_OUT;
      calls($) = calls($) + 1;
      j.result($) = RESULT;
    }
    j.resolved($).store(1, rl::mo_release); /* weft_future_resolve */
    release();
  }

  void thread(unsigned id) {
    if (id == 0) awaiter();
    else pool();
  }

  void after() {
    RL_ASSERT(j.frees($) == 1);
    RL_ASSERT(calls($) == (awaiter_err($) == ECANCELED_ ? 0 : 1));
    RL_ASSERT(awaiter_err($) == 0 || awaiter_err($) == ECANCELED_);
    if (!Cancelled) RL_ASSERT(awaiter_err($) == 0);
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<job_test<ops_oj_correct, false>>("offload job correct, awaited to its end", false);
  check<job_test<ops_oj_correct, true>>("offload job correct, its awaiter cancelled", false);
  check<job_test<ops_oj_no_claim, true>>("offload job whose cancelled awaiter returns at once", true);
  check<job_test<ops_oj_run_unclaimed, true>>("offload job run without its claim", true);
  check<job_test<ops_oj_unref_release, false>>("offload job references dropped with release", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
