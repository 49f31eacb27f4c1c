/*
 * Private to weft: the timer wheel's arm inbox — how a worker arms a timer without the wheel's
 * lock — written once and instantiated twice: with C11 atomics in lib/timer.c and with relacy's
 * atomics in tests/model/timer_model.cpp, with planted bugs that the search must catch.
 *
 * Why: with every arm taking the wheel's mutex, two workers arming ~10^4 sleeps a millisecond
 * (weft-bench gather) fought over it with the poller, which holds it while it cascades: futex
 * waits and wakes were a third of gather's profile (bench/README.md, #13 "Timer inbox").
 *
 * The protocol. An armer pushes its entry onto a Treiber stack (`head`, one CAS) and lowers the
 * wheel's published earliest deadline (`next`, a CAS loop that only ever lowers it); it never
 * touches the wheel. Whoever holds the wheel's lock (the poller, a cancel, a count) takes the
 * whole stack with one exchange and links the entries into the wheel. Only exchange-all pops,
 * so a push cannot meet an ABA. The lock holder then publishes the wheel's earliest deadline
 * with a store — which may raise `next` over a lower value an armer stored after the holder's
 * take. So the holder looks at `head` again after its store, and drains and publishes again if
 * it is not empty (IQ's `publish` returns whether to). Either the holder's look sees the push
 * (and drains it), or the look came first in the single order of seq_cst operations, and then
 * the store came before the armer's push and lower, so the lower acts on the stored value.
 * Hence: an entry still in the inbox never has `next` later than its deadline (the property
 * the model checks); a parker that sleeps until `next` wakes for it.
 *
 * Memory orders: the push, the lower, the publishing store and the look after it are seq_cst
 * (the argument above needs all four in one order; each is a locked instruction or a plain
 * load on x86 anyway). The take is acquire: it pairs with the push's release, so the entry's
 * fields (deadline, callback) come with it. The wake check (a parker publishes itself idle,
 * then reads `next`, seq_cst) is unchanged: the lower is the armer's seq_cst store to `next`.
 *
 * Rejected: Concurrency Kit's ck_stack (ck_stack_push_upmc / ck_stack_batch_pop_upmc) is the
 * same push and pop, but its inline assembly is invisible to ThreadSanitizer and to relacy,
 * and the protocol's correctness lies in how the push orders against `next`, which only a
 * model of our own code can check; the instructions on x86 are the same lock cmpxchg and xchg.
 * Per-worker inboxes (no shared line for the pushes) would make every drain and every look
 * scan all workers' stacks; two workers arming 10^4 sleeps a millisecond showed no CAS
 * retries worth the scan (measured in bench/README.md).
 *
 * The includer defines:
 *   TI_ENTRY                    the entry type;  TI_NEXT(e): its link, a plain lvalue
 *   TI_HEAD                     the atomic pointer type of the stack's head
 *   TI_WORD                     the atomic uint64_t type of `next`
 *   TI_LOAD(obj, mo) TI_STORE(obj, v, mo) TI_XCHG(obj, v, mo)
 *   TI_CAS(obj, expected_lvalue, v, mo_success, mo_failure)
 *   TI_RLX TI_ACQ TI_SC         memory orders
 *   TI_FN(name)                 the name of each function
 * and may plant the bugs the model must catch: TI_NO_RECHECK (publish does not look at the
 * stack again), TI_LOWER_BY_STORE (lower is a load and a store), TI_PUSH_ORDER (release, not
 * seq_cst: the holder's look may miss a push that came before its store).
 */

#ifndef TI_NO_RECHECK
#define TI_NO_RECHECK 0
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
  return TI_XCHG(*head, NULL, TI_ACQ); /* acquire: pairs with the push */
}

/* Lock holder: publishes the wheel's earliest deadline t; true if the stack is not empty
 * after it (the caller takes it, links it and publishes again). */
static inline bool TI_FN(publish)(TI_WORD *next, uint64_t t, TI_HEAD *head) {
  TI_STORE(*next, t, TI_SC); /* seq_cst: see the top */
#if TI_NO_RECHECK
  (void)head;
  return false; /* the planted bug: a push after our take keeps a `next` we just raised */
#else
  return TI_LOAD(*head, TI_SC) != NULL; /* seq_cst: see the top */
#endif
}
