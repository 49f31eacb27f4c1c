/*
 * Model check of the timer wheel's arm inbox (lib/timer_inbox_impl.h, #13) with relacy: the
 * very header lib/timer.c compiles, instantiated with relacy's atomics, once correctly and once
 * per planted bug. Exit status 0 only if the correct variant passes AND every planted bug is
 * found.
 *
 * The race: two armers push an entry each (deadlines 5 and 7; each on its own lane of the two,
 * the earlier on the second, so that the holder's look must cover both) and lower the
 * published earliest deadline `next`; the lock holder (a poller) fires the wheel's one entry
 * (due at 10, which `next` says at the start), then drains the inbox into its wheel and
 * publishes the wheel's earliest deadline — raising `next` to "none" if it drained nothing —
 * looking at the inbox again after each publish, as publish_next in lib/timer.c does.
 * Properties: at the end `next` is at or before every armed entry's deadline, whether the entry
 * was drained or is still in the inbox (a parker sleeping until `next` wakes in time for it);
 * every entry is drained or still queued, exactly once; the holder sees each drained entry's
 * deadline (no data race: the take acquires the push).
 * Planted bugs: publish without the look after it, or with a look at the first lane only; lower
 * as a load and a store; the push with
 * release, not seq_cst (the holder's look may then miss a push that came before its store in
 * the armer's program, while the armer's lower read the value from before that store).
 *
 * Wake model: one armer (deadline 5), the holder (fires the entry due at 3, then publishes) and
 * a worker that parks: it announces itself idle, then reads `next` and would sleep until it.
 * The armer makes the wake check if its lower lowered; the holder if publish_next says so.
 * Property: the parker read a `next` at or before 5, or a wake check saw it idle. Planted bug:
 * the holder's wake check left out (the parker reads the holder's first store, "none", between
 * its store and the drain of the armer's entry, while the armer found nothing to lower).
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
#define TI_LANES 2
#define TI_LANE(heads, i) ((heads)[i])


/* The lock holder's side of the model: its wheel is the least deadline it drained. */
struct holder_state {
  TI_HEAD *heads; /* TI_LANES of them */
  ent *entries;
  uint64_t wheel_min;
  int drained[2];
};

uint64_t drain_into(holder_state *h, ent *e) {
  for (ent *n; e; e = n) {
    n = e->next($);
    uint64_t d = e->deadline($); /* a data race if the take did not acquire the push */
    RL_ASSERT(d == 5 || d == 7);
    if (d < h->wheel_min) h->wheel_min = d;
    h->drained[e == &h->entries[1]]++;
  }
  return h->wheel_min;
}

/* Each instance drains with its own take_all (TI_DRAIN_DEF after its include). */
#define TI_DRAIN_NEXT(ctx) drain_next(ctx)
#define TI_DRAIN_DEF                                                                       \
  static uint64_t drain_next(void *ctx) {                                                  \
    holder_state *h = static_cast<holder_state *>(ctx);                                    \
    for (int i = 0; i < TI_LANES; i++) drain_into(h, take_all(&h->heads[i]));              \
    return h->wheel_min;                                                                   \
  }

namespace ti_correct {
static uint64_t drain_next(void *ctx);
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

/* Bug 1: publish does not look at the inbox again. */
namespace ti_no_recheck {
static uint64_t drain_next(void *ctx);
#define TI_NO_RECHECK 1
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

/* Bug 1b: the look after the store reads the first lane only. */
namespace ti_look_first_lane {
static uint64_t drain_next(void *ctx);
#define TI_LOOK_FIRST_LANE 1
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

/* Bug 2: lower is a load and a store: the other armer's lower between them is lost. */
namespace ti_lower_by_store {
static uint64_t drain_next(void *ctx);
#define TI_LOWER_BY_STORE 1
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

/* Bug 3: the push is a release, outside the seq_cst order the argument needs. */
namespace ti_push_release {
static uint64_t drain_next(void *ctx);
#define TI_PUSH_ORDER rl::mo_release
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

/* Bug 4: a holder that had to store again makes no wake check. */
namespace ti_no_holder_wake {
static uint64_t drain_next(void *ctx);
#define TI_NO_HOLDER_WAKE 1
#include "timer_inbox_impl.h"
TI_DRAIN_DEF
}

#define TI_OPS(ns)                                                                          \
  struct ops_##ns {                                                                         \
    static void push(TI_HEAD *h, ent *e) { ns::push(h, e); }                                \
    static bool lower(TI_WORD *n, uint64_t t) { return ns::lower(n, t); }                   \
    static uint64_t publish_next(TI_WORD *n, holder_state *h, bool *wake) {                 \
      return ns::publish_next(n, h->heads, h, wake);                                        \
    }                                                                                       \
  };
TI_OPS(ti_correct)
TI_OPS(ti_no_recheck)
TI_OPS(ti_look_first_lane)
TI_OPS(ti_lower_by_store)
TI_OPS(ti_push_release)
TI_OPS(ti_no_holder_wake)

const uint64_t NONE = UINT64_MAX;

template <class Ops>
struct inbox_test : rl::test_suite<inbox_test<Ops>, 3> {
  TI_HEAD heads[TI_LANES];
  TI_WORD next;
  ent entries[2];
  holder_state holder;

  void before() {
    for (int i = 0; i < TI_LANES; i++) heads[i]($).store(nullptr, rl::mo_relaxed);
    next($).store(10, rl::mo_relaxed); /* the wheel's one entry, due at 10 */
    for (int i = 0; i < 2; i++) {
      entries[i].next($) = nullptr;
      entries[i].deadline($) = 0;
    }
    holder = holder_state{heads, entries, NONE, {0, 0}};
  }

  void thread(unsigned id) {
    if (id < 2) { /* an armer: deadline 5 or 7 */
      ent *e = &entries[id];
      e->deadline($) = 5 + 2 * id;
      Ops::push(&heads[1 - id], e); /* the earlier deadline on the second lane */
      Ops::lower(&next, 5 + 2 * id);
    } else { /* the lock holder: has fired the entry due at 10 (wheel_min "none"), publishes */
      bool wake;
      Ops::publish_next(&next, &holder, &wake);
    }
  }

  void after() {
    uint64_t published = next($).load(rl::mo_relaxed);
    int queued[2] = {0, 0};
    for (int l = 0; l < TI_LANES; l++)
      for (ent *e = heads[l]($).load(rl::mo_relaxed); e; e = e->next($)) queued[e == &entries[1]]++;
    for (int i = 0; i < 2; i++) {
      RL_ASSERT(holder.drained[i] + queued[i] == 1); /* drained or queued, exactly once */
      RL_ASSERT(published <= (uint64_t)(5 + 2 * i)); /* a parker wakes in time for it */
    }
  }
};

template <class Ops>
struct wake_test : rl::test_suite<wake_test<Ops>, 3> {
  TI_HEAD heads[TI_LANES];
  TI_WORD next;
  rl::atomic<int> nidle;
  ent entries[2];
  holder_state holder;
  rl::atomic<int> woke;
  uint64_t parker_read;

  void before() {
    for (int i = 0; i < TI_LANES; i++) heads[i]($).store(nullptr, rl::mo_relaxed);
    next($).store(3, rl::mo_relaxed); /* the wheel's one entry, due at 3 */
    nidle($).store(0, rl::mo_relaxed);
    woke($).store(0, rl::mo_relaxed);
    entries[0].next($) = nullptr;
    entries[0].deadline($) = 0;
    holder = holder_state{heads, entries, NONE, {0, 0}};
    parker_read = 0;
  }

  void wake_check() { /* park_impl.h's: a seq_cst look at the idle count */
    if (nidle($).load(rl::mo_seq_cst)) woke($).store(1, rl::mo_relaxed);
  }

  void thread(unsigned id) {
    if (id == 0) { /* the armer */
      entries[0].deadline($) = 5;
      Ops::push(&heads[1], &entries[0]); /* the second lane */
      if (Ops::lower(&next, 5)) wake_check();
    } else if (id == 1) { /* the holder: has fired the entry due at 3, publishes */
      bool wake;
      Ops::publish_next(&next, &holder, &wake);
      if (wake) wake_check();
    } else { /* a worker parks: announces itself idle, then reads how long to sleep */
      nidle($).fetch_add(1, rl::mo_seq_cst);
      parker_read = next($).load(rl::mo_seq_cst);
    }
  }

  void after() { RL_ASSERT(parker_read <= 5 || woke($).load(rl::mo_relaxed)); }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<inbox_test<ops_ti_correct>>("timer inbox correct", false);
  check<wake_test<ops_ti_correct>>("timer inbox wake check correct", false);
  check<inbox_test<ops_ti_no_recheck>>("timer inbox publish without a look after", true);
  check<inbox_test<ops_ti_look_first_lane>>("timer inbox look at the first lane only", true);
  check<wake_test<ops_ti_look_first_lane>>("timer inbox wake check, first lane only", true);
  check<inbox_test<ops_ti_lower_by_store>>("timer inbox lower by store", true);
  check<inbox_test<ops_ti_push_release>>("timer inbox push with release", true);
  check<wake_test<ops_ti_no_holder_wake>>("timer inbox holder without its wake check", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
