/*
 * Private to weft: the claim that makes fork-inherited state anew once per process — written
 * once and instantiated twice: with C11 atomics in lib/sys.c (weft__forked_claim and
 * weft__forked_done) and with relacy's in tests/model/forked_model.cpp (session 30). The
 * includer defines:
 *
 *   FK_WORD                                   the atomic int type
 *   FK_LOAD(obj, mo)  FK_STORE(obj, v, mo)  FK_CAS(obj, expected_lvalue, desired, mos, mof)
 *   FK_RLX FK_ACQ FK_REL                      memory orders
 *   FK_YIELD()                                a pause while another thread makes it anew
 *   FK_FN(name)                               the name of each function
 * and may plant the bugs the model must catch: FK_NO_CAS (a look, then a plain store: two
 * threads both make the state anew, the second over what the first built since), FK_DONE_ORDER
 * (relaxed: a thread that sees the state current uses it before the maker's writes reach it),
 * FK_BUSY_IS_CURRENT (a thread that finds another making it anew goes on as if it were done).
 *
 * The word: `current` in the process the state belongs to; anything else in a child (lib/
 * sys.c: 0 on a page the kernel wiped, or the parent's pid), until a claimer moves it to
 * `busy` with a CAS, makes the state anew, and stores `current` with release. Everyone else
 * waits while it is `busy`, and acquires the maker's writes with the load that sees `current`.
 */

#ifndef FK_NO_CAS
#define FK_NO_CAS 0
#endif
#ifndef FK_DONE_ORDER
#define FK_DONE_ORDER FK_REL
#endif
#ifndef FK_BUSY_IS_CURRENT
#define FK_BUSY_IS_CURRENT 0
#endif

/* True for the one caller that must make the state anew (then call done); false once the
 * state is this process's, after waiting out a maker that is at work. */
static inline bool FK_FN(claim)(FK_WORD *word, int current, int busy) {
  for (;;) {
    /* acquire: the maker's done (release) and the state it made, when we see it current */
    int seen = FK_LOAD(word, FK_ACQ);
    if (seen == current || (FK_BUSY_IS_CURRENT && seen == busy)) return false;
    if (seen == busy) { /* another thread of ours makes it anew: a few stores away */
      FK_YIELD();
      continue;
    }
#if FK_NO_CAS
    FK_STORE(word, busy, FK_RLX);
    return true;
#else
    /* relaxed: the CAS's atomicity picks the maker; the state travels by done's release,
     * and a failure looks again with the acquire above */
    if (FK_CAS(word, seen, busy, FK_RLX, FK_RLX)) return true;
#endif
  }
}

static inline void FK_FN(done)(FK_WORD *word, int current) {
  /* release: the state the maker made, before anyone sees it current */
  FK_STORE(word, current, FK_DONE_ORDER);
}

/* The planted-bug knobs are this inclusion's: a later one starts from the correct protocol. */
#undef FK_NO_CAS
#undef FK_DONE_ORDER
#undef FK_BUSY_IS_CURRENT
