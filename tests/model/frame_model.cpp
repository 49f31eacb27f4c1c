/*
 * Model check of weft's split deque of fork-join frames (lib/frame_impl.h) with relacy: the
 * very header the library compiles (lib/frame.h), instantiated here with relacy's atomics,
 * once correctly and once per planted bug. Exit status 0 only if the correct variant passes
 * every test AND every planted bug is caught.
 *
 * Frames are handles 2..5 (0 = empty, 1 = FR_ABORT); each carries a payload in an rl::var<int>
 * written by the owner before its fork and read by whoever runs it, so a missing
 * release/acquire is a data race; a per-frame counter checks that each runs exactly once (the
 * owner runs what its pops return and what its detach reclaims; a thief what it steals).
 *
 * share_test: the owner forks three frames (sharing when push says so: the first frame, or a
 * thief's ask) and syncs them newest first, while two thieves steal.
 * detach_test: the owner forks two frames, detaches (reclaim_all, runs what it got back,
 * reset), forks a third into the reused slot 0 and syncs it, while a thief steals — the
 * scenario for a thief that read slot 0 before the reset and CASes after it.
 *
 * Planted bugs: share's CAS relaxed (payload race); a thief that reads its slot after its CAS
 * (reads the new frame of a reset slot: run twice); no generation step (an old ts comes back
 * and a stale thief's CAS succeeds: run twice); the reclaim by a plain store instead of a CAS
 * (the owner and a thief both take the newest: run twice).
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

enum { CAP = 4, FRAMES = 4 };

struct model_frames {
  unsigned head, osplit; /* owner-only: plain, as in the library */
  rl::atomic<void *> slot[CAP];
  rl::atomic<uint64_t> ts;
  rl::atomic<uint32_t> splitreq;
};

/* C11 forbids acq_rel on a plain load or store; none of the header's plain ones use it. */
#define FR_DEQUE model_frames
#define FR_CAP CAP
#define FR_RLX rl::mo_relaxed
#define FR_ACQ rl::mo_acquire
#define FR_REL rl::mo_release
#define FR_ACQ_REL rl::mo_acq_rel
#define FR_SC rl::mo_seq_cst
#define FR_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define FR_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define FR_CAS(obj, expected, desired, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mo), rl::mo_relaxed))
#define FR_FN(name) name
#define FR_PREPARE(x) ((void)(x)) /* the payload is written before the fork */

namespace f_correct {
#include "frame_impl.h"
}
#undef FR_SHARE_ORDER
#undef FR_STEAL_READS_FIRST
#undef FR_GEN_STEP
#undef FR_RECLAIM_BY_CAS

/* Bug 1: share publishes with a relaxed CAS. */
namespace f_share_relaxed {
#define FR_SHARE_ORDER FR_RLX
#include "frame_impl.h"
}
#undef FR_SHARE_ORDER
#undef FR_STEAL_READS_FIRST
#undef FR_GEN_STEP
#undef FR_RECLAIM_BY_CAS

/* Bug 2: a thief reads its slot after its CAS. */
namespace f_read_after_cas {
#define FR_STEAL_READS_FIRST 0
#include "frame_impl.h"
}
#undef FR_SHARE_ORDER
#undef FR_STEAL_READS_FIRST
#undef FR_GEN_STEP
#undef FR_RECLAIM_BY_CAS

/* Bug 3: the owner's changes of ts do not step the generation. */
namespace f_no_gen {
#define FR_GEN_STEP 0
#include "frame_impl.h"
}
#undef FR_SHARE_ORDER
#undef FR_STEAL_READS_FIRST
#undef FR_GEN_STEP
#undef FR_RECLAIM_BY_CAS

/* Bug 4: the owner takes back its newest shared frame with a plain store. */
namespace f_reclaim_by_store {
#define FR_RECLAIM_BY_CAS 0
#include "frame_impl.h"
}
#undef FR_SHARE_ORDER
#undef FR_STEAL_READS_FIRST
#undef FR_GEN_STEP
#undef FR_RECLAIM_BY_CAS

#define FR_MODEL_OPS(ns)                                                            \
  struct ops_##ns {                                                                 \
    static int push(model_frames *d, void *x) { return ns::push(d, x); }            \
    static int share(model_frames *d) { return ns::share(d); }                      \
    static void *pop(model_frames *d) { return ns::pop(d); }                        \
    static unsigned reclaim_all(model_frames *d) { return ns::reclaim_all(d); }     \
    static void reset(model_frames *d) { ns::reset(d); }                            \
    static void *steal(model_frames *d) { return ns::steal(d); }                    \
  };
FR_MODEL_OPS(f_correct)
FR_MODEL_OPS(f_share_relaxed)
FR_MODEL_OPS(f_read_after_cas)
FR_MODEL_OPS(f_no_gen)
FR_MODEL_OPS(f_reclaim_by_store)

/* What every test shares: the deque, the payloads, the exactly-once counters. */
template <class Ops, class Derived, int Threads>
struct frames_base : rl::test_suite<Derived, Threads> {
  model_frames d;
  rl::var<int> payload[FRAMES];
  rl::atomic<int> ran[FRAMES];

  static void *handle(int i) { return (void *)(uintptr_t)(i + 2); }
  static int value(int i) { return 1000 + 7 * i; }

  void init() {
    d.head = d.osplit = 0;
    for (int i = 0; i < CAP; i++) d.slot[i]($).store(nullptr, rl::mo_relaxed);
    d.ts($).store(0, rl::mo_relaxed);
    d.splitreq($).store(0, rl::mo_relaxed);
    for (int i = 0; i < FRAMES; i++) ran[i]($).store(0, rl::mo_relaxed);
  }

  void run(void *x) {
    RL_ASSERT((uintptr_t)x >= 2 && (uintptr_t)x < (uintptr_t)FRAMES + 2);
    int i = (int)((uintptr_t)x - 2);
    RL_ASSERT(payload[i]($) == value(i)); /* a data race here if publication lacks sync */
    RL_ASSERT(ran[i]($).fetch_add(1, rl::mo_relaxed) == 0); /* run twice */
  }

  void fork(int i) {
    payload[i]($) = value(i);
    if (Ops::push(&d, handle(i)) > 0) Ops::share(&d);
  }

  void sync(int i) {
    void *x = Ops::pop(&d);
    if (x) {
      RL_ASSERT(x == handle(i)); /* LIFO */
      run(x);
    } /* else a thief has it and runs it */
  }

  void thief(int tries) {
    for (int k = 0; k < tries; k++) {
      void *x = Ops::steal(&d);
      if ((uintptr_t)x > 1) run(x);
    }
  }

  void check_all(int n) {
    for (int i = 0; i < n; i++) RL_ASSERT(ran[i]($).load(rl::mo_relaxed) == 1);
  }
};

template <class Ops>
struct share_test : frames_base<Ops, share_test<Ops>, 3> {
  using base = frames_base<Ops, share_test<Ops>, 3>;
  void before() { base::init(); }
  void thread(unsigned id) {
    if (id == 0) {
      base::fork(0);
      base::fork(1);
      base::fork(2);
      base::sync(2);
      base::sync(1);
      base::sync(0);
    } else {
      base::thief(2);
    }
  }
  /* The owner synced all three: each ran exactly once, by it or by a thief. But a thief that
   * won runs after its CAS, maybe after the owner's last pop: counted at the end. */
  void after() { base::check_all(3); }
};

template <class Ops>
struct detach_test : frames_base<Ops, detach_test<Ops>, 2> {
  using base = frames_base<Ops, detach_test<Ops>, 2>;
  void before() { base::init(); }
  void thread(unsigned id) {
    if (id == 0) {
      base::fork(0); /* the first frame: shared */
      base::fork(1);
      /* The owner suspends: it takes back what no thief has and runs it, then resets. */
      unsigned stolen = Ops::reclaim_all(&this->d);
      for (unsigned i = stolen; i < this->d.head; i++)
        base::run(this->d.slot[i]($).load(rl::mo_relaxed));
      Ops::reset(&this->d);
      base::fork(2); /* into slot 0 again, shared again */
      base::sync(2);
    } else {
      base::thief(1); /* one try: the random search meets the ABA window more often */
    }
  }
  void after() { base::check_all(3); }
};

#include "model_driver.h"

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<share_test<ops_f_correct>>("frames share/steal/pop correct", false);
  check<detach_test<ops_f_correct>>("frames detach/reset/reuse correct", false);
  check<share_test<ops_f_share_relaxed>>("frames share relaxed", true);
  check<detach_test<ops_f_read_after_cas>>("frames thief reads after its CAS", true);
  /* The ABA window needs ~12 owner steps between a thief's read and its CAS: the random
   * search did not meet it in 3·10^6 iterations; the bounded one finds it at once. */
  check<detach_test<ops_f_no_gen>>("frames without a generation (ABA)", true, true);
  check<share_test<ops_f_reclaim_by_store>>("frames reclaim by store", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
