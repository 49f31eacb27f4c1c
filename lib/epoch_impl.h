/*
 * Private to weft: epoch-based reclamation of the deques' grown-out arrays, written once and
 * instantiated twice — with C11 <stdatomic.h> for the library (lib/epoch.h) and with relacy's
 * atomics for the model checker (tests/model/reclaim_model.cpp). The includer defines:
 *
 *   EP_WORD                                 the atomic uint64_t type
 *   EP_READER                               a struct with an EP_WORD member `word`
 *   EP_LOAD(obj, mo)  EP_STORE(obj, v, mo)  EP_CAS(obj, expected_lvalue, desired, mo)
 *   EP_RLX EP_ACQ EP_REL EP_SC              memory orders
 *   EP_FN(name)                             the name of each function
 * and may override the switches that the model's planted bugs set:
 *   EP_ENTER_ORDER (seq_cst), EP_LEAVE_ORDER (release), EP_GRACE (2).
 *
 * The protocol (ck_epoch's, Fraser's): a global epoch E (starts at 1) and one word per reader,
 * 0 outside a read section, else the epoch the reader saw when it entered. A reader's section
 * (a thief's steal_one) loads E and stores it in its word (seq_cst) before it loads any deque's
 * array, and stores 0 (release) when it is done. The writer (a deque's owner) unpublishes an
 * array (seq_cst store of the deque's array pointer), tags it with E read after that, and may
 * free it once E >= tag + EP_GRACE. Anyone advances E from e to e+1 (a CAS) when every reader's
 * word is 0 or e. Why two advances: the advance tag→tag+1 may pass a reader that entered at
 * `tag` before the unpublish (and holds the old array); the advance tag+1→tag+2 needs that
 * reader to have left or re-entered at tag+1, and a reader that loads E = tag+1 loads E after
 * the unpublish (the tag was read after it), so its array load sees the new array.
 *   Every operation on E and on the words is seq_cst except the leave: the argument above is
 * one total order of "reader stores its word → loads the array" against "writer stores the
 * array → loads E → advancers load the words", a store→load pattern on each side.
 * The leave is a release store: it makes the reader's slot reads happen-before the free, through
 * the advancer's load of the word (seq_cst ⊇ acquire), its CAS on E, and the owner's load of E —
 * this edge is what ThreadSanitizer sees (a free is a write to the whole block), and what the
 * model's poisoned array checks.
 */

#ifndef EP_ENTER_ORDER
#define EP_ENTER_ORDER EP_SC
#endif
#ifndef EP_LEAVE_ORDER
#define EP_LEAVE_ORDER EP_REL
#endif
#ifndef EP_GRACE
#define EP_GRACE 2
#endif

/* A reader enters its section: from here until EP_FN(leave), the arrays it loads stay. */
static inline void EP_FN(enter)(EP_WORD *epoch, EP_READER *me) {
  /* seq_cst load: in the same total order as the advances' CAS (see the top) */
  uint64_t e = EP_LOAD(*epoch, EP_SC);
  /* seq_cst store: ordered before the section's (seq_cst) loads of arrays — the store side of
   * the store→load pattern whose other side is the advancer's load of this word */
  EP_STORE(me->word, e, EP_ENTER_ORDER);
}

/* The reader leaves: release, so that its reads happen-before whatever is freed after an
 * advance that saw this 0. */
static inline void EP_FN(leave)(EP_READER *me) { EP_STORE(me->word, 0, EP_LEAVE_ORDER); }

/* The writer, after unpublishing: the tag for what it just unpublished. seq_cst: after the
 * unpublishing store in the total order (the store→load pattern of the writer's side). */
static inline uint64_t EP_FN(now)(EP_WORD *epoch) { return EP_LOAD(*epoch, EP_SC); }

/* Anyone: one attempt to advance the epoch; returns the epoch now (unchanged if a reader is
 * still in an older one). nreaders words, each looked at once: O(readers), no waiting. */
static inline uint64_t EP_FN(advance)(EP_WORD *epoch, EP_READER *readers, int nreaders) {
  uint64_t e = EP_LOAD(*epoch, EP_SC); /* seq_cst: see the top */
  for (int i = 0; i < nreaders; i++) {
    /* seq_cst ⊇ acquire: pairs with the leave's release (the free's happens-before) */
    uint64_t r = EP_LOAD(readers[i].word, EP_SC);
    if (r != 0 && r != e) return e; /* in a section that began in an older epoch */
  }
  /* seq_cst: one total order with the other advancers and the loads of E; a failed CAS means
   * someone else advanced (e is then the epoch now) */
  if (EP_CAS(*epoch, e, e + 1, EP_SC)) return e + 1;
  return e;
}


/* Whether what was tagged `tag` may be freed with the epoch at `now`. */
static inline int EP_FN(grace_over)(uint64_t tag, uint64_t now) { return now >= tag + EP_GRACE; }

/* The writer: advances the epoch until what was tagged `tag` may be freed, at most EP_GRACE
 * times (each may fail: a reader still in an older epoch); returns the epoch now, against which
 * the caller tests each of its tags with grace_over. Never waits. The edge to the free, when
 * another thread advanced: our seq_cst load (or failed CAS) reads from its CAS. */
static inline uint64_t EP_FN(poll)(EP_WORD *epoch, EP_READER *readers, int nreaders,
                                   uint64_t tag) {
  uint64_t now = EP_LOAD(*epoch, EP_SC); /* seq_cst: see the top */
  for (int i = 0; i < EP_GRACE && !EP_FN(grace_over)(tag, now); i++)
    now = EP_FN(advance)(epoch, readers, nreaders);
  return now;
}
