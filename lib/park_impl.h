/*
 * Private to weft: the two halves of the park/wake hand-off, written once and instantiated
 * twice — with C11 atomics in lib/worker.c and with relacy's atomics in tests/model/, where a
 * producer pushes onto a deque (deque_impl.h) while a worker parks. The includer defines:
 *
 *   PK_COUNT                           the atomic int object type (nspinning, nidle)
 *   PK_LOAD(obj, mo)  PK_FETCH_ADD(obj, v, mo)  PK_FETCH_SUB(obj, v, mo)
 *   PK_SC                              seq_cst
 *   PK_FN(name)                        the name of each function
 * and may override PK_CHECK_ORDER (the producer's loads) and PK_ANNOUNCE_ORDER (the parker's
 * read-modify-writes), both seq_cst, for the negative controls.
 *
 * The argument (Go's proc.go, and worker.c's design comment): a producer makes work visible
 * with a seq_cst store (a push onto an empty deque, or the inject queue's exchange) and then
 * loads nspinning and nidle; a parker increments nidle and leaves the spinners (seq_cst RMWs)
 * and then loads every queue with seq_cst. Both sides are "store, then load what the other
 * stored": in the single total order of seq_cst operations one of them comes first, so either
 * the producer sees the parker (and wakes a worker) or the parker sees the work (and does not
 * sleep). With acquire/release instead, both loads may read the old values — store buffering —
 * and the work sits in a queue while every worker sleeps: the lost wake-up the model finds.
 * Rejected: a fence on both sides (TSan does not model standalone fences; seq_cst accesses say
 * the same thing to both the hardware and the tool).
 */

#ifndef PK_CHECK_ORDER
#define PK_CHECK_ORDER PK_SC
#endif
#ifndef PK_ANNOUNCE_ORDER
#define PK_ANNOUNCE_ORDER PK_SC
#endif

/* Producer, after making work visible: must a parked worker be woken? Not if a worker is
 * spinning (it will find the work, and the last spinner to find work wakes the next). */
static inline bool PK_FN(wake_needed)(PK_COUNT *nspinning, PK_COUNT *nidle) {
  if (PK_LOAD(*nspinning, PK_CHECK_ORDER) != 0) return false;
  return PK_LOAD(*nidle, PK_CHECK_ORDER) != 0;
}

/* Parker, before its last look at the queues: count itself idle and no longer spinning. */
static inline void PK_FN(announce_idle)(PK_COUNT *nidle, PK_COUNT *nspinning, bool was_spinning) {
  PK_FETCH_ADD(*nidle, 1, PK_ANNOUNCE_ORDER);
  if (was_spinning) PK_FETCH_SUB(*nspinning, 1, PK_ANNOUNCE_ORDER);
}
