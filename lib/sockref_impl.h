/*
 * Private to weft: a socket's reference word — how operations in progress keep its fd open,
 * how weft_sock_close marks it closing, and how exactly one caller closes the fd — written once
 * and instantiated twice: with C11 atomics in lib/io.c and with relacy's in
 * tests/model/sockref_model.cpp. The includer defines:
 *
 *   SR_WORD                          the atomic uint32_t type
 *   SR_LOAD(obj, mo)  SR_FETCH_ADD(obj, v, mo)  SR_FETCH_SUB(obj, v, mo)  SR_FETCH_OR(obj, v, mo)
 *   SR_CAS(obj, expected_lvalue, desired, mos, mof)
 *   SR_RLX SR_ACQ SR_ACQ_REL         memory orders
 *   SR_FINAL(ctx)                    closes the fd and frees the descriptor (lib/io.c's
 *                                    sock_final): called once, by the last one out
 *   SR_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: SR_NO_FINAL_BIT (any drop that leaves "closing,
 * no reference" closes: the rule before session 12, under which a call after the close — a
 * looping acceptor, a second close — closed the fd and freed the descriptor a second time),
 * SR_DROP_ORDER (release: the closer does not acquire the other users' last accesses to the
 * fd, a data race with its close), SR_CLOSE_UNREFERENCED (close sets CLOSING before it holds
 * a reference of its own: a late caller's drop then closes the fd and frees the descriptor
 * while the closer still wakes the waiters through it).
 *
 * The word: SR_REF per operation in progress, plus two flags.
 *   CLOSING — set once, by the first weft_sock_close; every operation that finds it set returns
 *             WEFT_EBADF (lib/io.c wakes the waiters so that they look);
 *   FINAL   — set with the close of the fd, by a CAS from exactly "CLOSING, no reference": the
 *             one caller whose CAS succeeds runs SR_FINAL.
 * A caller that comes after the close (its handle still points at the descriptor) takes a
 * reference and drops it again; the drop leaves "CLOSING | FINAL", which no CAS expects, so
 * the fd is closed once. Between the last one out's subtraction and its CAS a late caller may
 * take a reference: the CAS then fails, and the late caller's own drop (which sees "CLOSING, no
 * reference") succeeds instead. Exactly one of them closes.
 * Rejected: a separate "closed" word (two words, and the race between them is the one above);
 * closing in weft_sock_close itself (an operation in progress would then use a number that may
 * have been reused by then: lib/io.c's design comment).
 */

#define SR_CLOSING 1u
#define SR_FINAL_BIT 2u /* the fd is closed and the descriptor back on its free list */
#define SR_REF 4u

#ifndef SR_NO_FINAL_BIT
#define SR_NO_FINAL_BIT 0
#endif
#ifndef SR_DROP_ORDER
#define SR_DROP_ORDER SR_ACQ_REL
#endif
#ifndef SR_CLOSE_UNREFERENCED
#define SR_CLOSE_UNREFERENCED 0
#endif

/* Drops a reference; the last one out after a close closes the fd. */
static inline void SR_FN(drop)(SR_WORD *refs, void *ctx) {
  /* acq_rel: the last one out sees every other user's accesses before it closes the fd */
  uint32_t left = SR_FETCH_SUB(refs, SR_REF, SR_DROP_ORDER) - SR_REF;
  if (left != SR_CLOSING) return;
  if (SR_NO_FINAL_BIT) {
    SR_FINAL(ctx);
    return;
  }
  /* relaxed: the subtraction above ordered what the close needs; the CAS only picks one closer
   * among the last one out and a late caller that took and dropped a reference since */
  if (SR_CAS(refs, left, SR_CLOSING | SR_FINAL_BIT, SR_RLX, SR_RLX)) SR_FINAL(ctx);
}

/* Takes a reference for an operation: true while the socket is open, else (a close came first)
 * false, with the reference dropped again. */
static inline bool SR_FN(take)(SR_WORD *refs, void *ctx) {
  /* acquire: a CLOSING we see comes with the closer's state; the add keeps the fd open */
  if (SR_FETCH_ADD(refs, SR_REF, SR_ACQ) & SR_CLOSING) {
    SR_FN(drop)(refs, ctx);
    return false;
  }
  return true;
}

/* Whether a close has begun (a woken waiter's look). */
static inline bool SR_FN(closing)(SR_WORD *refs) {
  /* acquire: pairs with close_begin's acq_rel (which reached us through the wake anyway) */
  return SR_LOAD(refs, SR_ACQ) & SR_CLOSING;
}

/* weft_sock_close's first half: true if this call began the close, holding a reference that
 * keeps the fd open while it wakes the waiters; it then drops it (SR_FN(drop)). False: the
 * socket was closed already (no reference held). */
static inline bool SR_FN(close_begin)(SR_WORD *refs, void *ctx) {
  if (!SR_CLOSE_UNREFERENCED && !SR_FN(take)(refs, ctx)) return false;
  /* acq_rel: set before the notifications, so a woken waiter sees it */
  if (SR_FETCH_OR(refs, SR_CLOSING, SR_ACQ_REL) & SR_CLOSING) {
    if (!SR_CLOSE_UNREFERENCED) SR_FN(drop)(refs, ctx);
    return false;
  }
  if (SR_CLOSE_UNREFERENCED) SR_FETCH_ADD(refs, SR_REF, SR_ACQ); /* too late to keep it open */
  return true;
}

/* The planted-bug knobs are this inclusion's: a later one starts from the correct protocol. */
#undef SR_NO_FINAL_BIT
#undef SR_DROP_ORDER
#undef SR_CLOSE_UNREFERENCED
