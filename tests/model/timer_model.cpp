/*
 * Model check of the timer wheel's arm inbox (lib/timer_inbox_impl.h, #13) with relacy: the
 * very header lib/timer.c compiles, instantiated with relacy's atomics, once correctly and once
 * per planted bug. Exit status 0 only if the correct variant passes AND every planted bug is
 * found.
 *
 * The race: two armers push an entry each (deadlines 5 and 7) and lower the published earliest
 * deadline `next`; the lock holder (a poller) fires the wheel's one entry (due at 10, which
 * `next` says at the start), then drains the inbox into its wheel and publishes the wheel's
 * earliest deadline — raising `next` to "none" if it drained nothing — looking at the inbox
 * again after each publish, as publish_next in lib/timer.c does.
 * Properties: at the end `next` is at or before every armed entry's deadline, whether the entry
 * was drained or is still in the inbox (a parker sleeping until `next` wakes in time for it);
 * every entry is drained or still queued, exactly once; the holder sees each drained entry's
 * deadline (no data race: the take acquires the push).
 * Planted bugs: publish without the look after it; lower as a load and a store; the push with
 * release, not seq_cst (the holder's look may then miss a push that came before its store in
 * the armer's program, while the armer's lower read the value from before that store).
 *
 * Usage: timer_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

struct ent {
  rl::var<ent *> next;
  rl::var<uint64_t> deadline;
};

#define TI_ENTRY ent
#define TI_NEXT(e) ((e)->next(RL_INFO))
#define TI_HEAD rl::atomic<ent *>
#define TI_WORD rl::atomic<uint64_t>
#define TI_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define TI_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define TI_XCHG(obj, v, mo) ((obj)(RL_INFO).exchange((v), (mo)))
#define TI_CAS(obj, expected, v, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (v), (mos), (mof)))
#define TI_RLX rl::mo_relaxed
#define TI_ACQ rl::mo_acquire
#define TI_SC rl::mo_seq_cst
#define TI_FN(name) name

namespace ti_correct {
#include "timer_inbox_impl.h"
}
#undef TI_NO_RECHECK
#undef TI_LOWER_BY_STORE
#undef TI_PUSH_ORDER

/* Bug 1: publish does not look at the inbox again. */
namespace ti_no_recheck {
#define TI_NO_RECHECK 1
#include "timer_inbox_impl.h"
}
#undef TI_NO_RECHECK
#undef TI_LOWER_BY_STORE
#undef TI_PUSH_ORDER

/* Bug 2: lower is a load and a store: the other armer's lower between them is lost. */
namespace ti_lower_by_store {
#define TI_LOWER_BY_STORE 1
#include "timer_inbox_impl.h"
}
#undef TI_NO_RECHECK
#undef TI_LOWER_BY_STORE
#undef TI_PUSH_ORDER

/* Bug 3: the push is a release, outside the seq_cst order the argument needs. */
namespace ti_push_release {
#define TI_PUSH_ORDER rl::mo_release
#include "timer_inbox_impl.h"
}

#define TI_OPS(ns)                                                                          \
  struct ops_##ns {                                                                         \
    static void push(TI_HEAD *h, ent *e) { ns::push(h, e); }                                \
    static bool lower(TI_WORD *n, uint64_t t) { return ns::lower(n, t); }                   \
    static ent *take_all(TI_HEAD *h) { return ns::take_all(h); }                            \
    static bool publish(TI_WORD *n, uint64_t t, TI_HEAD *h) { return ns::publish(n, t, h); } \
  };
TI_OPS(ti_correct)
TI_OPS(ti_no_recheck)
TI_OPS(ti_lower_by_store)
TI_OPS(ti_push_release)

const uint64_t NONE = UINT64_MAX;

template <class Ops>
struct inbox_test : rl::test_suite<inbox_test<Ops>, 3> {
  TI_HEAD head;
  TI_WORD next;
  ent entries[2];
  int drained[2]; /* the holder's alone */

  void before() {
    head($).store(nullptr, rl::mo_relaxed);
    next($).store(10, rl::mo_relaxed); /* the wheel's one entry, due at 10 */
    for (int i = 0; i < 2; i++) {
      entries[i].next($) = nullptr;
      entries[i].deadline($) = 0;
      drained[i] = 0;
    }
  }

  void thread(unsigned id) {
    if (id < 2) { /* an armer: deadline 5 or 7 */
      ent *e = &entries[id];
      e->deadline($) = 5 + 2 * id;
      Ops::push(&head, e);
      Ops::lower(&next, 5 + 2 * id);
    } else { /* the lock holder: fires the entry due at 10, drains, publishes */
      uint64_t wheel_min = NONE;
      do {
        for (ent *e = Ops::take_all(&head), *n; e; e = n) {
          n = e->next($);
          uint64_t d = e->deadline($); /* a data race if the take did not acquire the push */
          RL_ASSERT(d == 5 || d == 7);
          if (d < wheel_min) wheel_min = d;
          drained[e == &entries[1]]++;
        }
      } while (Ops::publish(&next, wheel_min, &head));
    }
  }

  void after() {
    uint64_t published = next($).load(rl::mo_relaxed);
    int queued[2] = {0, 0};
    for (ent *e = head($).load(rl::mo_relaxed); e; e = e->next($)) queued[e == &entries[1]]++;
    for (int i = 0; i < 2; i++) {
      RL_ASSERT(drained[i] + queued[i] == 1);       /* drained or queued, exactly once */
      RL_ASSERT(published <= (uint64_t)(5 + 2 * i)); /* a parker wakes in time for it */
    }
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<inbox_test<ops_ti_correct>>("timer inbox correct", false);
  check<inbox_test<ops_ti_no_recheck>>("timer inbox publish without a look after", true);
  check<inbox_test<ops_ti_lower_by_store>>("timer inbox lower by store", true);
  check<inbox_test<ops_ti_push_release>>("timer inbox push with release", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
