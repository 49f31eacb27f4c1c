/*
 * Private to weft: a worker's next slot (Go's runnext, Tokio's LIFO slot) — the one task that
 * the task running on this worker woke last, run next by the worker — written once and
 * instantiated twice: with C11 atomics in lib/worker.c and with relacy's in tests/model/. The
 * includer defines:
 *
 *   NX_SLOT                          the atomic uintptr_t object type
 *   NX_LOAD(obj, mo)  NX_XCHG(obj, v, mo)  NX_CAS(obj, expected_lvalue, desired, mos, mof)
 *   NX_RLX NX_ACQ NX_SC              memory orders
 *   NX_GEN_SHIFT                     where the put counter starts (0: no counter)
 *   NX_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: NX_TAKE_BY_STORE (the owner takes with a load
 * and a store, not an exchange), NX_PUT_BY_STORE (the owner overwrites the slot with a store
 * and kicks the occupant it read before), NX_STEAL_BY_STORE (the thief clears it by a store),
 * NX_PUT_ORDER (seq_cst; release misses the watcher's end, lib/worker.c).
 *
 * The word: an entry (a 64-byte-aligned task pointer with its tags) and, above NX_GEN_SHIFT, a
 * count of the owner's puts, so that a thief that saw "the same word" twice saw the same put
 * (an ABA: two tasks ping-ponging put the same two pointers back every other hop). 0: empty.
 * Only the owner makes it non-empty; the owner and thieves empty it with an RMW, so an entry
 * put is taken exactly once: by the owner's exchange or by a thief's CAS, whichever is first.
 *
 * Memory orders. put: seq_cst exchange — release publishes the waker's writes (a value handed
 * over, the woken task's saved stack, which the waker acquired) to a thief; seq_cst because it
 * is also the store side of the wake check (a parker's seq_cst look at the slot, park_impl.h);
 * and an exchange because a thief may have emptied the slot since the owner last looked. take:
 * relaxed — the owner put it itself (program order carries everything), and the RMW's
 * atomicity alone settles the race with a thief. steal: acquire CAS, pairing with the put.
 */

#ifndef NX_TAKE_BY_STORE
#define NX_TAKE_BY_STORE 0
#endif
#ifndef NX_PUT_BY_STORE
#define NX_PUT_BY_STORE 0
#endif
#ifndef NX_STEAL_BY_STORE
#define NX_STEAL_BY_STORE 0
#endif
#ifndef NX_PUT_ORDER
#define NX_PUT_ORDER NX_SC
#endif

#define NX_ENTRY_MASK (NX_GEN_SHIFT ? ((uintptr_t)1 << NX_GEN_SHIFT) - 1 : ~(uintptr_t)0)

/* Owner: whether an entry fits beside the put counter (false: queue it elsewhere). */
static inline bool NX_FN(fits)(uintptr_t entry) { return (entry & ~NX_ENTRY_MASK) == 0; }

/* Owner: puts entry (with the put count gen) and returns the entry it displaced, or 0. */
static inline uintptr_t NX_FN(put)(NX_SLOT *slot, uintptr_t entry, uintptr_t gen) {
  uintptr_t v = entry | (NX_GEN_SHIFT ? gen << NX_GEN_SHIFT : 0);
#if NX_PUT_BY_STORE
  uintptr_t old = NX_LOAD(*slot, NX_RLX);
  NX_XCHG(*slot, v, NX_PUT_ORDER); /* the planted bug: `old` may have been stolen meanwhile */
#else
  uintptr_t old = NX_XCHG(*slot, v, NX_PUT_ORDER); /* seq_cst: see the top */
#endif
  return old & NX_ENTRY_MASK;
}

/* Owner: the entry in the slot, emptied; 0 if none. */
static inline uintptr_t NX_FN(take)(NX_SLOT *slot) {
  /* relaxed: a hint; only the owner fills the slot, so 0 stays 0 until its next put */
  uintptr_t v = NX_LOAD(*slot, NX_RLX);
  if (!v) return 0;
#if NX_TAKE_BY_STORE
  NX_XCHG(*slot, 0, NX_RLX); /* the planted bug: a thief's CAS between the load and this */
#else
  v = NX_XCHG(*slot, 0, NX_RLX); /* relaxed: see the top */
#endif
  return v & NX_ENTRY_MASK;
}

/* Anyone: the slot's word as it is (a thief compares two looks; a parker's look is seq_cst). */
static inline uintptr_t NX_FN(peek)(NX_SLOT *slot, int seq_cst) {
  return seq_cst ? NX_LOAD(*slot, NX_SC) : NX_LOAD(*slot, NX_RLX);
}

/* Thief: takes the entry if the slot still holds the word `seen` (an earlier look); 0 if not. */
static inline uintptr_t NX_FN(steal)(NX_SLOT *slot, uintptr_t seen) {
#if NX_STEAL_BY_STORE
  if (NX_LOAD(*slot, NX_ACQ) != seen) return 0;
  NX_XCHG(*slot, 0, NX_RLX);
  return seen & NX_ENTRY_MASK;
#else
  /* acquire: pairs with the put's release: the waker's writes come with the entry */
  return NX_CAS(*slot, seen, 0, NX_ACQ, NX_RLX) ? seen & NX_ENTRY_MASK : 0;
#endif
}
