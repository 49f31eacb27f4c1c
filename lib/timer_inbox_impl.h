/*
 * Private to weft: the timer wheel's arm inbox — how a worker arms a timer without the wheel's
 * lock — written once and instantiated twice: with C11 atomics in lib/timer.c and with relacy's
 * atomics in tests/model/timer_model.cpp, with planted bugs that the search must catch.
 *
 * Why: with every arm taking the wheel's mutex, two workers arming ~10^4 sleeps a millisecond
 * (weft-bench gather) fought over it with the poller, which holds it while it cascades: futex
 * waits and wakes were a third of gather's profile (bench/README.md, #13 "Timer inbox").
 *
 * The protocol. An armer pushes its entry onto a Treiber stack (one of TI_LANES `heads`, one
 * CAS; which one does not matter to the argument below) and lowers the wheel's published
 * earliest deadline (`next`, a CAS loop that only ever lowers it); it never
 * touches the wheel. If it lowered `next`, it makes the wake check (a worker parked until a
 * later time must be woken), as an arm under the lock did. Whoever holds the wheel's lock (the
 * poller, a cancel, a count) takes each whole stack with one exchange and links the entries into
 * the wheel. Only exchange-all pops, so a push cannot meet an ABA. Lanes: the holder walks the
 * stacks abreast, so that it has TI_LANES entry misses in flight (each entry was written by its
 * armer, on another core; with one stack the next is known only once the miss is served), and
 * two armers meet on one head less often.
 * Publishing (TI_FN(publish_next)): the lock holder stores the wheel's earliest deadline, which
 * may raise `next` over a lower value an armer stored after the holder's take. So the holder
 * looks at every head again after its store and, if one is not empty, drains and stores again.
 * Either the look sees the push, or the look came first in the single order of seq_cst
 * operations, and then the store came before the armer's push and lower, so the lower acts on
 * the stored value. The end state is right: `next` is at or before every entry's deadline.
 * But between a store and the next one, `next` was later than an entry in the inbox, whose
 * armer may have seen no need to lower (or wake): a worker that parked then sleeps too long.
 * So a holder that had to store again, lower than its first store, makes the wake check itself
 * after its last store (seq_cst store, then the check's seq_cst look at the idle count; the
 * parker announces itself idle, then reads `next`: one of the two sees the other).
 *
 * Memory orders: the push, the lower, the stores, the look after them and the take are seq_cst
 * (the argument above needs them in one order; each is a locked instruction or a plain load on
 * x86 anyway). The take also acquires the push (release), so the entry's fields come with it.
 *
 * Rejected: Concurrency Kit's ck_stack (ck_stack_push_upmc / ck_stack_batch_pop_upmc) is the
 * same push and pop, but its inline assembly is invisible to ThreadSanitizer and to relacy,
 * and the protocol's correctness lies in how the push orders against `next`, which only a
 * model of our own code can check; the instructions on x86 are the same lock cmpxchg and xchg.
 * Not tried: per-worker inboxes (no line shared by the pushes; every drain and every look
 * would scan all workers' stacks). The push's CAS is ~5 % of gather's samples at 2 workers,
 * its line shared with the holder's take as well (bench/README.md).
 *
 * The includer defines:
 *   TI_ENTRY                    the entry type;  TI_NEXT(e): its link, a plain lvalue
 *   TI_DRAIN_NEXT(ctx)          the lock holder's: takes every stack (TI_FN(take_all)), links
 *                               them into the wheel, returns the wheel's earliest deadline
 *   TI_HEAD                     the atomic pointer type of a stack's head
 *   TI_LANES                    how many stacks (heads) there are
 *   TI_LANE(heads, i)           the i-th head (an lvalue of type TI_HEAD)
 *   TI_WORD                     the atomic uint64_t type of `next`
 *   TI_LOAD(obj, mo) TI_STORE(obj, v, mo) TI_XCHG(obj, v, mo)
 *   TI_CAS(obj, expected_lvalue, v, mo_success, mo_failure)
 *   TI_RLX TI_SC                memory orders
 *   TI_FN(name)                 the name of each function
 * and may plant the bugs the model must catch: TI_NO_RECHECK (publish does not look at the
 * stacks again), TI_LOOK_FIRST_LANE (it looks at the first only), TI_NO_HOLDER_WAKE (a holder
 * that stored again makes no wake check), TI_LOWER_BY_STORE (lower is a load and a store),
 * TI_PUSH_ORDER (release, not seq_cst: the holder's look may miss a push that came before its
 * store). The header undefines those five at its end, so that the next instance starts
 * from the correct defaults.
 */

#ifndef TI_NO_RECHECK
#define TI_NO_RECHECK 0
#endif
#ifndef TI_LOOK_FIRST_LANE
#define TI_LOOK_FIRST_LANE 0
#endif
#ifndef TI_NO_HOLDER_WAKE
#define TI_NO_HOLDER_WAKE 0
#endif
#ifndef TI_LOWER_BY_STORE
#define TI_LOWER_BY_STORE 0
#endif
#ifndef TI_PUSH_ORDER
#define TI_PUSH_ORDER TI_SC
#endif

/* Armer: puts e on the stack (e's fields written before: the CAS publishes them). */
static inline void TI_FN(push)(TI_HEAD *head, TI_ENTRY *e) {
  TI_ENTRY *old = TI_LOAD(*head, TI_RLX); /* relaxed: the CAS checks it */
  do
    TI_NEXT(e) = old;
  while (!TI_CAS(*head, old, e, TI_PUSH_ORDER, TI_RLX)); /* seq_cst: see the top */
}

/* Armer: lowers `next` to t if it is later; true if it did (a parked worker may sleep past t:
 * the caller wakes one). */
static inline bool TI_FN(lower)(TI_WORD *next, uint64_t t) {
  uint64_t cur = TI_LOAD(*next, TI_SC); /* seq_cst: see the top */
#if TI_LOWER_BY_STORE
  if (t >= cur) return false;
  TI_STORE(*next, t, TI_SC); /* the planted bug: a lower store between the load and this is lost */
  return true;
#else
  while (t < cur)
    if (TI_CAS(*next, cur, t, TI_SC, TI_SC)) return true; /* seq_cst, failure too: the top */
  return false;
#endif
}

/* Lock holder: the whole stack, newest first; NULL if empty. */
static inline TI_ENTRY *TI_FN(take_all)(TI_HEAD *head) {
  /* relaxed: a hint; most polls find nothing to take, and an exchange is a locked write */
  if (!TI_LOAD(*head, TI_RLX)) return NULL;
  return TI_XCHG(*head, NULL, TI_SC); /* seq_cst: see the top (acquire: pairs with the push) */
}

/* Lock holder: whether any stack is not empty (seq_cst: see the top). */
static inline bool TI_FN(any_pushed)(TI_HEAD *heads) {
  for (int i = 0; i < (TI_LOOK_FIRST_LANE ? 1 : TI_LANES); i++)
    if (TI_LOAD(TI_LANE(heads, i), TI_SC)) return true;
  return false;
}

/* Lock holder: drains the stacks into the wheel and publishes the wheel's earliest deadline,
 * again while a look after the store finds a stack not empty. Returns the deadline published;
 * *wake: the caller must make the wake check (see the top). */
static inline uint64_t TI_FN(publish_next)(TI_WORD *next, TI_HEAD *heads, void *ctx, bool *wake) {
  uint64_t first = TI_DRAIN_NEXT(ctx), t = first;
  for (;;) {
    TI_STORE(*next, t, TI_SC); /* seq_cst: see the top */
#if TI_NO_RECHECK
    (void)heads;
    break; /* the planted bug: a push after our take keeps a `next` we just raised */
#else
    if (!TI_FN(any_pushed)(heads)) break;
#endif
    t = TI_DRAIN_NEXT(ctx); /* never later than the last: draining only adds entries */
  }
  *wake = !TI_NO_HOLDER_WAKE && t < first;
  return t;
}

#undef TI_NO_RECHECK
#undef TI_LOOK_FIRST_LANE
#undef TI_NO_HOLDER_WAKE
#undef TI_LOWER_BY_STORE
#undef TI_PUSH_ORDER
