/*
 * Model check of the reclamation of grown-out deque arrays (#13): lib/epoch_impl.h (the epoch
 * protocol) with lib/deque_impl.h growing, instantiated with relacy's atomics — once correctly
 * and once per planted bug, each in its own namespace. Exit status 0 only if the correct
 * variant passes AND every planted bug is found.
 *
 * The storage steps are lib/deque.c's, restated here with relacy's allocator (grow: copy, store
 * the new array, tag the old one with the epoch read after that; reclaim: weft__epoch_poll for
 * the newest tag, free every array past its grace). A freed array is first poisoned: its
 * rl::var `live` is written, which every slot access by a thief reads (WD_SLOT). So a free that
 * a thief's read does not happen-before is a data race (what ThreadSanitizer sees: a free
 * writes the block), and a read after the free is relacy's "access to freed memory" (ASan's).
 *
 * Test: thread 0 owns a deque of capacity 1; it pushes three elements (growing 1→2→4, each grow
 * reclaiming what it can), reclaims again and drains. Threads 1 and 2 are thieves: a steal
 * round each, inside a read section (enter, steal, leave), thread 1 twice. Every element
 * consumed exactly once with its payload.
 *
 * Two more shapes of the correct protocol (review M, session 38): thread 2 also advances the
 * epoch twice after its round, as another deque owner's reclaim does; and the owner drains by
 * batch steals, as the yield queue's owner does.
 *
 * Planted bugs: the grace one epoch (freed after one advance), no grace at all, the reader's
 * enter a release store (its announcement can come after its load of the array: a store→load
 * reordering; found by the random search only, see main), its leave relaxed (its reads do not
 * happen-before the free), and grow reading the tag before its store of the new array (found
 * with another advancer, by the bounded search only: with the owner the one advancer the tag
 * cannot go stale).
 * Not caught here (tried, left out): a thief's load of the array made acquire (the same
 * reordering from the load side: relacy found no failing execution in 10^5 random runs and
 * bound 1).
 * Run time: ~5 s (random 10^5 and bound 1 for the correct variant; the bugs are found at once).
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

enum { CAP0 = 1, MAXCAP = 4, THREADS = 3, ELEMS = 3 };

struct g_array {
  int64_t mask;
  rl::var<int> live; /* 1 until freed: read by every slot access, written by the free */
  g_array *retired;
  uint64_t retired_at;
  rl::atomic<uintptr_t> slot[MAXCAP];
};

struct g_reader {
  rl::atomic<uint64_t> word;
};

struct g_domain {
  rl::atomic<uint64_t> now;
  g_reader readers[THREADS];
};

struct g_deque {
  rl::atomic<int64_t> top;
  rl::atomic<int64_t> bottom;
  rl::atomic<g_array *> array;
  g_domain *dom;
  g_array *retired;
};

g_array *array_new(int64_t cap) {
  g_array *a = new g_array;
  a->mask = cap - 1;
  a->live($) = 1;
  a->retired = nullptr;
  a->retired_at = 0;
  for (int i = 0; i < MAXCAP; i++) a->slot[i]($).store(0, rl::mo_relaxed);
  return a;
}

/* The free, as a sanitizer sees it: a write to the whole block, then the block gone. */
void array_free(g_array *a) {
  a->live($) = 0;
  delete a;
}

/* Every slot access reads `live`: a data race with an unordered free, or a freed-memory access. */
rl::atomic<uintptr_t> &slot_of(g_array *a, int64_t i) {
  RL_ASSERT(a->live($) == 1);
  return a->slot[i & a->mask];
}

#define EP_WORD rl::atomic<uint64_t>
#define EP_READER g_reader
#define EP_RLX rl::mo_relaxed
#define EP_ACQ rl::mo_acquire
#define EP_REL rl::mo_release
#define EP_SC rl::mo_seq_cst
#define EP_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define EP_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define EP_CAS(obj, expected, desired, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mo), rl::mo_seq_cst))
#define EP_FN(name) ep_##name

#define WD_DEQUE g_deque
#define WD_ARRAY g_array
#define WD_RLX rl::mo_relaxed
#define WD_ACQ rl::mo_acquire
#define WD_REL rl::mo_release
#define WD_SC rl::mo_seq_cst
#define WD_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define WD_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define WD_CAS(obj, expected, desired, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mo), rl::mo_relaxed))
#define WD_SLOT(a, i) slot_of((a), (i))
#define WD_GROW(d, a, t, b) model_grow((d), (a), (t), (b))
#define WD_FN(name) name

/* lib/deque.c's grow and reclaim, over this namespace's epoch functions. */
#define MODEL_STORAGE()                                                            \
  int reclaim(g_deque *d) {                                                                 \
    if (!d->retired) return 0;                                                              \
    g_domain *dom = d->dom;                                                                 \
    uint64_t now = ep_poll(&dom->now, dom->readers, THREADS, d->retired->retired_at);       \
    g_array **link = &d->retired;                                                           \
    while (*link && !ep_grace_over((*link)->retired_at, now)) link = &(*link)->retired;     \
    g_array *a = *link;                                                                     \
    *link = nullptr;                                                                        \
    int n = 0;                                                                              \
    for (; a; n++) {                                                                        \
      g_array *older = a->retired;                                                          \
      array_free(a);                                                                        \
      a = older;                                                                            \
    }                                                                                       \
    return n;                                                                               \
  }                                                                                         \
  g_array *model_grow(g_deque *d, g_array *old, int64_t t, int64_t b) {                     \
    if (old->mask + 1 >= MAXCAP) return nullptr;                                            \
    g_array *a = array_new((old->mask + 1) * 2);                                            \
    for (int64_t i = t; i < b; i++)                                                         \
      slot_of(a, i)($).store(slot_of(old, i)($).load(rl::mo_relaxed), rl::mo_relaxed);      \
    TAG_BEFORE_DECL                                                                        \
    d->array($).store(a, rl::mo_seq_cst);                                                   \
    old->retired_at = TAG_VALUE;                                                            \
    old->retired = d->retired;                                                              \
    d->retired = old;                                                                       \
    reclaim(d);                                                                             \
    return a;                                                                               \
  }

#define TAG_BEFORE_DECL
#define TAG_VALUE ep_now(&d->dom->now)
namespace v_correct {
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE

/* Bug 1: the grace is one epoch: the advance that passes a reader of the old array frees it. */
namespace v_grace_one {
#define EP_GRACE 1
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE

/* Bug 2: no grace: the owner frees the old array as soon as it is unpublished. */
namespace v_no_grace {
#define EP_GRACE 0
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE

/* Bug 3: the reader's entry a release store: not ordered before its load of the array. */
namespace v_enter_release {
#define EP_ENTER_ORDER EP_REL
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE

/* Bug 4: the reader's leave relaxed: its reads do not happen-before the free. */
namespace v_leave_relaxed {
#define EP_LEAVE_ORDER EP_RLX
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE

#undef TAG_BEFORE_DECL
#undef TAG_VALUE
#define TAG_BEFORE_DECL uint64_t early_tag = ep_now(&d->dom->now);
#define TAG_VALUE early_tag
namespace v_tag_before {
#include "epoch_impl.h"
MODEL_STORAGE()
#include "deque_impl.h"
}
#undef EP_ENTER_ORDER
#undef EP_LEAVE_ORDER
#undef EP_GRACE
#undef TAG_BEFORE_DECL
#undef TAG_VALUE
#define TAG_BEFORE_DECL
#define TAG_VALUE ep_now(&d->dom->now)
#define RC_OPS(ns)                                                                     \
  struct ops_##ns {                                                                    \
    static int push(g_deque *d, uintptr_t x) { return ns::push(d, x); }                \
    static uintptr_t take(g_deque *d) { return ns::take(d); }                          \
    static uintptr_t steal(g_deque *d) { return ns::steal(d); }                        \
    static int reclaim(g_deque *d) { return ns::reclaim(d); }                          \
    static int steal_batch(g_deque *d, uintptr_t *o, int m) {                        \
      return ns::steal_batch(d, o, m);                                                 \
    }                                                                                  \
    static uint64_t advance(g_domain *m) {                                             \
      return ns::ep_advance(&m->now, m->readers, THREADS);                             \
    }                                                                                  \
    static void enter(g_domain *m, unsigned id) { ns::ep_enter(&m->now, &m->readers[id]); } \
    static void leave(g_domain *m, unsigned id) { ns::ep_leave(&m->readers[id]); }     \
  };
RC_OPS(v_correct)
RC_OPS(v_grace_one)
RC_OPS(v_no_grace)
RC_OPS(v_enter_release)
RC_OPS(v_leave_relaxed)
RC_OPS(v_tag_before)

template <class Ops, bool OtherAdv = false, bool BatchOwner = false>
struct reclaim_test : rl::test_suite<reclaim_test<Ops, OtherAdv, BatchOwner>, THREADS> {
  g_domain dom;
  g_deque dq;
  rl::var<int> payload[ELEMS];     /* plain data published through the deque */
  rl::atomic<int> consumed[ELEMS]; /* how many times each element was consumed */

  static uintptr_t handle(int i) { return (uintptr_t)i + 2; } /* 0 = empty, 1 = WD_ABORT */
  static int value(int i) { return 1000 + 7 * i; }

  void before() {
    dom.now($).store(1, rl::mo_relaxed);
    for (int i = 0; i < THREADS; i++) dom.readers[i].word($).store(0, rl::mo_relaxed);
    dq.top($).store(0, rl::mo_relaxed);
    dq.bottom($).store(0, rl::mo_relaxed);
    dq.array($).store(array_new(CAP0), rl::mo_relaxed);
    dq.dom = &dom;
    dq.retired = nullptr;
    for (int i = 0; i < ELEMS; i++) consumed[i]($).store(0, rl::mo_relaxed);
  }

  void consume(uintptr_t x) {
    RL_ASSERT(x >= 2 && x < (uintptr_t)ELEMS + 2);
    int i = (int)(x - 2);
    RL_ASSERT(payload[i]($) == value(i));
    RL_ASSERT(consumed[i]($).fetch_add(1, rl::mo_relaxed) == 0); /* consumed twice */
  }

  void steal_round(unsigned id) {
    Ops::enter(&dom, id);
    uintptr_t x = Ops::steal(&dq);
    Ops::leave(&dom, id);
    if (x > WD_ABORT) consume(x);
  }

  void thread(unsigned id) {
    if (id == 0) {
      for (int i = 0; i < ELEMS; i++) {
        payload[i]($) = value(i);
        RL_ASSERT(Ops::push(&dq, handle(i)) >= 0); /* grows: never full within MAXCAP */
      }
      Ops::reclaim(&dq);
      if (BatchOwner) { /* the yield queue's shape: its owner drains by batch steals */
        uintptr_t out[MAXCAP];
        for (int k = 0; k < 4; k++) {
          int n = Ops::steal_batch(&dq, out, MAXCAP);
          for (int j = 0; j < n; j++) consume(out[j]);
        }
        Ops::reclaim(&dq);
        for (uintptr_t x; (x = Ops::steal(&dq)) > WD_ABORT || x == WD_ABORT;)
          if (x > WD_ABORT) consume(x);
      } else {
        for (uintptr_t x; (x = Ops::take(&dq)) != 0;) consume(x); /* drain */
      }
    } else {
      steal_round(id);
      if (id == 1) steal_round(id);
      if (OtherAdv && id == 2) { /* another deque owner's reclaim advances the epoch */
        Ops::advance(&dom);
        Ops::advance(&dom);
      }
    }
  }

  void after() {
    for (int i = 0; i < ELEMS; i++) RL_ASSERT(consumed[i]($).load(rl::mo_relaxed) == 1);
    /* destroy: the live array and whatever is still retired (relacy reports a leak else) */
    g_array *a = dq.array($).load(rl::mo_relaxed);
    a->retired = dq.retired;
    while (a) {
      g_array *older = a->retired;
      delete a;
      a = older;
    }
  }
};

#include "model_driver.h"

} // namespace

int main(int argc, char **argv) {
  /* Bound 1 unless told: bound 2 takes ~150 s for the correct variant alone (2026-12-01). */
  searches[1].bound = 1;
  if (!parse_args(argc, argv, 100000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<reclaim_test<ops_v_correct>>("reclaim correct", false);
  check<reclaim_test<ops_v_correct, true>>("reclaim correct, another owner advancing", false);
  check<reclaim_test<ops_v_correct, false, true>>("reclaim correct, owner drains by batches",
                                                  false);
  /* bounded only: the random search misses it (review M, session 38), and with one advancer
   * neither search can see it (the tag can only be stale if another owner advances too) */
  check<reclaim_test<ops_v_tag_before, true>>("reclaim tag-before-unpublish, another advancing",
                                              true, true);
  check<reclaim_test<ops_v_grace_one>>("reclaim grace-one-epoch", true);
  check<reclaim_test<ops_v_no_grace>>("reclaim no-grace", true);
  check<reclaim_test<ops_v_enter_release>>("reclaim enter-release", true, false, true);
  check<reclaim_test<ops_v_leave_relaxed>>("reclaim leave-relaxed", true);
  auto t1 = std::chrono::steady_clock::now();
  std::printf("%d passed, %d failed (%.1f s)\n", passed, failed,
              std::chrono::duration<double>(t1 - t0).count());
  return failed ? 1 : 0;
}
