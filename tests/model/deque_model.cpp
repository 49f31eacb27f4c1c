/*
 * Model check of weft's Chase–Lev deque (lib/deque_impl.h) and join counter (lib/task.c) with
 * relacy. The deque header is the very one the library compiles: here it is instantiated with
 * relacy's atomics, once correctly and once per planted bug (each in its own namespace, with
 * the header's override macros set). Exit status 0 only if the correct variants pass AND every
 * planted bug is found.
 *
 * Deque model: capacity 2 (wraps around; no growth: a full push returns -1 and the owner runs
 * the element itself, the header's documented contract), one owner that pushes and takes, two
 * thieves that steal. Each element carries a payload in an rl::var<int>, written by the owner
 * before the push and read by whoever consumes it: a missing release/acquire is a data race.
 * A per-element counter checks that every element is consumed exactly once.
 *
 * Not covered: growth (WD_GROW and the acquire load of the array in steal), size_hint and
 * peek_newest; and push's acquire load of top (it orders a thief's read of a slot before the
 * owner's reuse of it, a load-buffering pattern that relacy does not model: weakening it to
 * relaxed still passes here).
 *
 * Run time on the 2-vCPU dev VM (one core used): about 6 s, nearly all of it the bounded search
 * of the correct deque. Usage: deque_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* ---- The relacy instance of deque_impl.h ---------------------------------------------- */

enum { CAP = 2, ELEMS = 4 };

struct model_array {
  uintptr_t mask;
  rl::atomic<uintptr_t> slot[CAP];
};

struct model_deque {
  rl::atomic<int64_t> top;
  rl::atomic<int64_t> bottom;
  rl::atomic<model_array *> array;
};

/* No growth in the model: "full" makes push return -1. */
inline model_array *model_grow(model_deque *, model_array *, int64_t, int64_t) { return nullptr; }

/* C11 forbids acq_rel on a plain load or store. The variant "take pair acq/rel" passes
 * mo_acq_rel through WD_TAKE_ORDER and means: release on the store, acquire on the load. */
inline rl::memory_order wd_store_order(rl::memory_order mo) {
  return mo == rl::mo_acq_rel ? rl::mo_release : mo;
}
inline rl::memory_order wd_load_order(rl::memory_order mo) {
  return mo == rl::mo_acq_rel ? rl::mo_acquire : mo;
}

#define WD_DEQUE model_deque
#define WD_ARRAY model_array
#define WD_RLX rl::mo_relaxed
#define WD_ACQ rl::mo_acquire
#define WD_REL rl::mo_release
#define WD_SC rl::mo_seq_cst
#define WD_LOAD(obj, mo) ((obj)(RL_INFO).load(wd_load_order(mo)))
#define WD_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), wd_store_order(mo)))
#define WD_CAS(obj, expected, desired, mo) \
  ((obj)(RL_INFO).compare_exchange_strong((expected), (desired), (mo), rl::mo_relaxed))
#define WD_SLOT(a, i) ((a)->slot[(i) & (a)->mask])
#define WD_GROW(d, a, t, b) model_grow((d), (a), (t), (b))
#define WD_FN(name) name

/* After each instance: the header defines the defaults it did not get; clear them all. */

/* Correct: the header's own orders. */
namespace v_correct {
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 1a: the owner's take pair (store bottom, load top) relaxed. */
namespace v_take_relaxed {
#define WD_TAKE_ORDER WD_RLX
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 1b: the take pair release/acquire (still not seq_cst). */
namespace v_take_acq_rel {
#define WD_TAKE_ORDER rl::mo_acq_rel
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 2: the last element is taken with a plain store of top instead of a CAS. */
namespace v_no_last_cas {
#define WD_LAST_CAS 0
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

/* Bug 3: push publishes bottom without release (both the empty and non-empty paths). */
namespace v_push_relaxed {
#define WD_PUSH_BOTTOM_ORDER WD_RLX
#define WD_EMPTY_PUSH_ORDER WD_RLX
#include "deque_impl.h"
}
#undef WD_PUSH_BOTTOM_ORDER
#undef WD_EMPTY_PUSH_ORDER
#undef WD_TAKE_ORDER
#undef WD_LAST_CAS

#define WD_MODEL_OPS(ns)                                                                   \
  struct ops_##ns {                                                                        \
    static int push(model_deque *d, uintptr_t x) { return ns::push(d, x); }                \
    static uintptr_t take(model_deque *d) { return ns::take(d); }                          \
    static uintptr_t steal(model_deque *d) { return ns::steal(d); }                        \
  };
WD_MODEL_OPS(v_correct)
WD_MODEL_OPS(v_take_relaxed)
WD_MODEL_OPS(v_take_acq_rel)
WD_MODEL_OPS(v_no_last_cas)
WD_MODEL_OPS(v_push_relaxed)

/* ---- The deque test: thread 0 owns the deque, threads 1 and 2 steal -------------------- */

enum { STEAL_TRIES = 2 };

/* RaceOnly = false: the slots start unwritten, as lib/deque.c's malloc'd array, so reading one
 * before its push is reported, and every element must be consumed exactly once.
 * RaceOnly = true: the slots start as 0 and the exactly-once checks are off, so that a planted
 * bug can only be found by relacy's data-race detector on the payload. */
template <class Ops, bool RaceOnly = false>
struct deque_test : rl::test_suite<deque_test<Ops, RaceOnly>, 3> {
  model_array arr;
  model_deque dq;
  rl::var<int> payload[ELEMS];    /* plain data published through the deque */
  rl::atomic<int> consumed[ELEMS]; /* how many times each element was consumed */

  static uintptr_t handle(int i) { return (uintptr_t)i + 2; } /* 0 = empty, 1 = WD_ABORT */
  static int value(int i) { return 1000 + 7 * i; }

  void before() {
    arr.mask = CAP - 1;
    if (RaceOnly)
      for (int i = 0; i < CAP; i++) arr.slot[i]($).store(0, rl::mo_relaxed);
    dq.top($).store(0, rl::mo_relaxed);
    dq.bottom($).store(0, rl::mo_relaxed);
    dq.array($).store(&arr, rl::mo_relaxed);
    for (int i = 0; i < ELEMS; i++) consumed[i]($).store(0, rl::mo_relaxed);
  }

  void consume(uintptr_t x) {
    RL_ASSERT(x >= 2 && x < (uintptr_t)ELEMS + 2);
    int i = (int)(x - 2);
    RL_ASSERT(payload[i]($) == value(i)); /* a data race here if the hand-off lacks sync */
    int before_count = consumed[i]($).fetch_add(1, rl::mo_relaxed);
    if (!RaceOnly) RL_ASSERT(before_count == 0); /* consumed twice */
  }

  void produce(int i) {
    payload[i]($) = value(i);
    if (Ops::push(&dq, handle(i)) < 0) consume(handle(i)); /* full: the owner runs it */
  }

  void take_one() {
    uintptr_t x = Ops::take(&dq);
    if (x) consume(x);
  }

  void thread(unsigned id) {
    if (id == 0) {
      produce(0);
      produce(1);
      take_one();
      produce(2);
      produce(3); /* may find the deque full (capacity 2) */
      take_one();
      for (uintptr_t x; (x = Ops::take(&dq)) != 0;) consume(x); /* drain */
    } else {
      for (int k = 0; k < STEAL_TRIES; k++) {
        uintptr_t x = Ops::steal(&dq);
        if (x > WD_ABORT) consume(x);
      }
    }
  }

  void after() {
    /* The owner drained until take() said empty, so every element is consumed by now. */
    if (!RaceOnly)
      for (int i = 0; i < ELEMS; i++) RL_ASSERT(consumed[i]($).load(rl::mo_relaxed) == 1);
  }
};

/* ---- The join counter (lib/task.c, thread-waiter path) --------------------------------- */
/* The waiter holds +1 on pending, registers each child with a relaxed fetch_add (it holds +1,
 * so the count cannot reach zero meanwhile), hands the child over (release flag: the deque's
 * role), drops its own +1 with weft__join_release and waits for thread_word (acquire). Each
 * child writes its result, then weft__join_release: fetch_sub, and whoever brings the count
 * to zero stores thread_word with release. The waiter then reads every result. */

template <rl::memory_order SubOrder>
struct join_test : rl::test_suite<join_test<SubOrder>, 3> {
  rl::atomic<long> pending;
  rl::atomic<int> thread_word;
  rl::atomic<int> started[2];
  rl::var<int> result[2];

  void before() {
    pending($).store(1, rl::mo_relaxed);
    thread_word($).store(0, rl::mo_relaxed);
    started[0]($).store(0, rl::mo_relaxed);
    started[1]($).store(0, rl::mo_relaxed);
  }

  void join_release() {
    if (pending($).fetch_sub(1, SubOrder) != 1) return;
    thread_word($).store(1, rl::mo_release);
  }

  void thread(unsigned id) {
    if (id == 0) {
      for (int c = 0; c < 2; c++) {
        pending($).fetch_add(1, rl::mo_relaxed);
        started[c]($).store(1, rl::mo_release);
      }
      join_release();
      while (thread_word($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      RL_ASSERT(result[0]($) == 10 && result[1]($) == 11);
    } else {
      int c = (int)id - 1;
      while (started[c]($).load(rl::mo_acquire) == 0) rl::yield(1, $);
      result[c]($) = 10 + c;
      join_release();
    }
  }
};

/* ---- Driver ----------------------------------------------------------------------------- */
/* Every variant is searched twice:
 *   random:  relacy's random scheduler, seeded by the iteration number (same schedules every
 *            run), for a fixed number of iterations;
 *   bounded: relacy's context-bound scheduler, which enumerates EVERY execution with at most
 *            `bound` preemptions (and every value a load may read) and stops when done.
 * A correct variant must pass both; a planted bug must be caught by both. */

struct search {
  const char *name;
  rl::scheduler_type_e type;
  unsigned long long iterations; /* random only */
  unsigned bound;                /* bounded only */
};

struct outcome {
  bool failed;
  std::string what; /* relacy's description of the failure */
  std::string log;  /* relacy's full report with the failing execution */
  double seconds;
  unsigned long long iterations;
};

template <class Test>
outcome run_model(const search &s) {
  /* relacy replaces the global operator new/delete and serves them from its own heap while a
   * model runs: whatever it writes to must allocate with its raw allocator. */
  rl::ostringstream out;
  rl::test_params p;
  p.search_type = s.type;
  p.iteration_count = s.iterations;
  p.context_bound = s.bound;
  p.output_stream = &out;
  p.progress_stream = &out;
  auto t0 = std::chrono::steady_clock::now();
  rl::simulate<Test>(p);
  auto t1 = std::chrono::steady_clock::now();
  outcome o;
  o.failed = p.test_result != rl::test_result_success;
  o.log = out.str().c_str();
  o.what = rl::test_result_str(p.test_result);
  if (o.failed) { /* the report's second line: the result with the failed assertion */
    size_t a = o.log.find('\n'), b = a == std::string::npos ? a : o.log.find('\n', a + 1);
    if (b != std::string::npos) o.what = o.log.substr(a + 1, b - a - 1);
  }
  o.seconds = std::chrono::duration<double>(t1 - t0).count();
  o.iterations = (unsigned long long)p.stop_iteration;
  return o;
}

int passed = 0, failed = 0;
bool verbose = false;
search searches[2] = {{"random", rl::sched_random, 200000, 0}, {"bounded", rl::sched_bound, 0, 3}};

template <class Test>
void check(const char *name, bool expect_bug) {
  std::string detail, logs;
  bool ok = true;
  for (const search &s : searches) {
    outcome o = run_model<Test>(s);
    char buf[512];
    if (o.failed)
      std::snprintf(buf, sizeof buf, "%s%s: %s at iteration %llu, %.2f s", detail.empty() ? "" : "; ",
                    s.name, o.what.c_str(), o.iterations, o.seconds);
    else
      std::snprintf(buf, sizeof buf, "%s%s: %llu iterations, %.2f s", detail.empty() ? "" : "; ",
                    s.name, o.iterations, o.seconds);
    detail += buf;
    if (o.failed != expect_bug) ok = false;
    if (o.failed && (verbose || !expect_bug)) logs += o.log;
  }
  const char *verdict = expect_bug ? (ok ? "bug caught (as required)" : "BUG NOT CAUGHT")
                                   : (ok ? "passed" : "FAILED");
  std::printf("model %s: %s (%s)\n", name, verdict, detail.c_str());
  if (!logs.empty()) std::printf("%s\n", logs.c_str());
  std::fflush(stdout);
  (ok ? passed : failed)++;
}

} // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "-v")) {
      verbose = true; /* print relacy's report of each caught bug */
    } else if (!std::strcmp(argv[i], "--random") && i + 1 < argc) {
      searches[0].iterations = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--bound") && i + 1 < argc) {
      searches[1].bound = (unsigned)std::strtoul(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [-v] [--random ITERATIONS] [--bound PREEMPTIONS]\n", argv[0]);
      return 2;
    }
  }
  auto t0 = std::chrono::steady_clock::now();

  check<deque_test<ops_v_correct>>("deque correct", false);
  check<deque_test<ops_v_take_relaxed>>("deque no-seq-cst-take (relaxed)", true);
  check<deque_test<ops_v_take_acq_rel>>("deque no-seq-cst-take (release/acquire)", true);
  check<deque_test<ops_v_no_last_cas>>("deque no-last-cas", true);
  check<deque_test<ops_v_push_relaxed>>("deque no-release-push", true);
  check<deque_test<ops_v_push_relaxed, true>>("deque no-release-push (payload race only)", true);

  check<join_test<rl::mo_acq_rel>>("join correct", false);
  check<join_test<rl::mo_release>>("join no-acquire (fetch_sub release)", true);
  check<join_test<rl::mo_acquire>>("join no-release (fetch_sub acquire)", true);

  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
