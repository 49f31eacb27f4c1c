/*
 * Model check of a socket's reference word (lib/sockref_impl.h, #12) with relacy: the very
 * header lib/io.c compiles, instantiated with relacy's atomics, once correctly and once per
 * planted bug. Exit status 0 only if the correct variant passes AND every planted bug is found.
 *
 * The actors, as in lib/io.c:
 *   the closer      weft_sock_close: close_begin; if it began the close, it wakes the waiters
 *                   (it touches the descriptor) and drops its reference;
 *   a user          an operation in progress (take, use the fd, drop), then a second close of
 *                   its own (the second answers WEFT_EBADF without closing anything);
 *   a late caller   an acceptor task that loops back into accept while the listener closes:
 *                   two operations one after the other, each take, use, drop.
 * Every use of the fd and of the descriptor asserts the fd is still open; the close (SR_FINAL)
 * writes it, so a use the close is not ordered after is a data race relacy reports.
 * Properties: the fd is closed exactly once, after every use (no use after the close, no data
 * race with it); at the end the word says closing, with no reference left.
 * Planted bugs: no FINAL bit (any drop to "CLOSING, no reference" closes: a late call closes
 * the fd a second time, the defect session 12 fixed), a drop with release only (the closer
 * does not acquire the last user's accesses: a data race with the close), a close that sets
 * CLOSING before it holds a reference (a late caller's drop closes the fd while the closer still
 * wakes the waiters through the descriptor).
 *
 * Usage: sockref_model [-v] [--random ITERATIONS] [--bound PREEMPTIONS].
 */
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <relacy/relacy.hpp> /* last: it defines macros such as new, delete and assert */

namespace {

/* The socket: its reference word, the fd (-1 once closed) and how often it was closed. */
struct sock {
  rl::atomic<uint32_t> refs;
  rl::var<int> fd;
  rl::var<int> finals;
};

void final_close(void *ctx) {
  sock *s = static_cast<sock *>(ctx);
  RL_ASSERT(s->fd($) >= 0); /* closed once */
  s->fd($) = -1;
  s->finals($) = s->finals($) + 1;
}

#define SR_WORD rl::atomic<uint32_t>
#define SR_LOAD(obj, mo) ((*(obj))(RL_INFO).load(mo))
#define SR_FETCH_ADD(obj, v, mo) ((*(obj))(RL_INFO).fetch_add((v), (mo)))
#define SR_FETCH_SUB(obj, v, mo) ((*(obj))(RL_INFO).fetch_sub((v), (mo)))
#define SR_FETCH_OR(obj, v, mo) ((*(obj))(RL_INFO).fetch_or((v), (mo)))
#define SR_CAS(obj, expected, desired, mos, mof) \
  ((*(obj))(RL_INFO).compare_exchange_strong((expected), (desired), (mos), (mof)))
#define SR_RLX rl::mo_relaxed
#define SR_ACQ rl::mo_acquire
#define SR_ACQ_REL rl::mo_acq_rel
#define SR_FINAL(ctx) final_close(ctx)
#define SR_FN(name) name

namespace sr_correct {
#include "sockref_impl.h"
}

/* Bug 1: no FINAL bit — the rule before session 12. */
namespace sr_no_final_bit {
#define SR_NO_FINAL_BIT 1
#include "sockref_impl.h"
}

/* Bug 2: a drop with release only. */
namespace sr_drop_release {
#define SR_DROP_ORDER rl::mo_release
#include "sockref_impl.h"
}

/* Bug 3: the close sets CLOSING before it holds a reference. */
namespace sr_close_unreferenced {
#define SR_CLOSE_UNREFERENCED 1
#include "sockref_impl.h"
}

#define SR_OPS(ns)                                                                   \
  struct ops_##ns {                                                                  \
    static bool take(sock *s) { return ns::take(&s->refs, s); }                      \
    static void drop(sock *s) { ns::drop(&s->refs, s); }                             \
    static bool close_begin(sock *s) { return ns::close_begin(&s->refs, s); }        \
  };
SR_OPS(sr_correct)
SR_OPS(sr_no_final_bit)
SR_OPS(sr_drop_release)
SR_OPS(sr_close_unreferenced)

template <class Ops>
struct close_test : rl::test_suite<close_test<Ops>, 3> {
  sock s;

  void before() {
    s.refs($).store(0, rl::mo_relaxed);
    s.fd($) = 7;
    s.finals($) = 0;
  }

  void use() { RL_ASSERT(s.fd($) >= 0); } /* the fd, or the descriptor, touched while open */

  void operation() {
    if (!Ops::take(&s)) return; /* WEFT_EBADF */
    use();
    Ops::drop(&s);
  }

  void close() {
    if (!Ops::close_begin(&s)) return; /* closed before: WEFT_EBADF */
    use(); /* wakes the waiters through the descriptor */
    Ops::drop(&s);
  }

  void thread(unsigned id) {
    if (id == 0) {
      close();
    } else if (id == 1) {
      operation();
      close(); /* a second close */
    } else {
      operation(); /* an acceptor looping back into accept */
      operation();
    }
  }

  void after() {
    RL_ASSERT(s.finals($) == 1);
    /* closing, no reference left (FINAL is the protocol's own mark, not a property) */
    RL_ASSERT((s.refs($).load(rl::mo_relaxed) & ~SR_FINAL_BIT) == SR_CLOSING);
  }
};

#include "model_driver.h" /* run_model, check, searches: shared with the other models */

} // namespace

int main(int argc, char **argv) {
  if (!parse_args(argc, argv, 200000)) return 2;
  auto t0 = std::chrono::steady_clock::now();
  check<close_test<ops_sr_correct>>("socket refs correct", false);
  check<close_test<ops_sr_no_final_bit>>("socket refs without the FINAL bit", true);
  check<close_test<ops_sr_drop_release>>("socket refs drop with release", true);
  check<close_test<ops_sr_close_unreferenced>>("socket refs close without a reference", true);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%.2f s)\n", passed, failed, total);
  return failed == 0 ? 0 : 1;
}
