/*
 * Private to weft: a blocking-pool job's two words — its state, which decides whether the call
 * runs when its awaiter gives up, and its references, which decide who frees it — written once
 * and instantiated twice: with C11 atomics in lib/offload.c and with relacy's in
 * tests/model/offload_model.cpp (session 21: the protocol session 20 introduced had no model).
 * The includer defines:
 *
 *   OJ_WORD                                  the atomic int type
 *   OJ_CAS(obj, expected_lvalue, desired, mos, mof)   OJ_FETCH_SUB(obj, v, mo)
 *   OJ_RLX OJ_ACQ_REL                        memory orders
 *   OJ_FN(name)                              the name of each function
 * and may plant the bugs the model must catch: OJ_NO_CLAIM (an awaiter that gives up returns at
 * once, claiming nothing: the rule before session 20, under which a running call wrote into
 * the awaiter's stack after its return), OJ_RUN_UNCLAIMED (the pool thread runs the call
 * without its claim: an abandoned call runs after its awaiter returned), OJ_UNREF_ORDER
 * (release only: the last one out frees the job without acquiring the other side's last
 * accesses to it).
 *
 * The state, one CAS on each side, from QUEUED: the pool thread's to RUNNING (it runs the call,
 * to its end), the awaiter's to ABANDONED (the call never runs; the awaiter returns at once).
 * Whichever lands first decides; an awaiter whose CAS fails waits for the call's end. relaxed:
 * the CAS's atomicity is the decision; the data travels by the queue's mutex to the pool thread
 * (fn, arg) and by the future's resolve (release) to the awaiter (the result), which the model
 * stands in for with a flag of its own.
 * The references: two, the awaiter's and the pool's; the last one out frees the job.
 */

enum { OJ_QUEUED, OJ_RUNNING, OJ_ABANDONED };

#ifndef OJ_NO_CLAIM
#define OJ_NO_CLAIM 0
#endif
#ifndef OJ_RUN_UNCLAIMED
#define OJ_RUN_UNCLAIMED 0
#endif
#ifndef OJ_UNREF_ORDER
#define OJ_UNREF_ORDER OJ_ACQ_REL
#endif

/* One CAS from QUEUED: whether this side moved the state first. */
static inline bool OJ_FN(claim)(OJ_WORD *state, int to) {
  int queued = OJ_QUEUED;
  /* relaxed: see the top (the decision is the CAS's atomicity; data travels elsewhere) */
  return OJ_CAS(state, queued, to, OJ_RLX, OJ_RLX);
}

/* The pool thread, about to run the job: whether to call it (false: abandoned, skip it). */
static inline bool OJ_FN(start)(OJ_WORD *state) {
  return OJ_RUN_UNCLAIMED || OJ_FN(claim)(state, OJ_RUNNING);
}

/* The awaiter, whose wait ended early (a cancel, a scope's deadline): true if the call will
 * never run (return at once), false if it runs or ran (wait for its end, then take its result). */
static inline bool OJ_FN(abandon)(OJ_WORD *state) {
  return OJ_NO_CLAIM || OJ_FN(claim)(state, OJ_ABANDONED);
}

/* Drops a reference: true for the last one out, which frees the job. */
static inline bool OJ_FN(unref)(OJ_WORD *refs) {
  /* acq_rel: the last one out sees the other's accesses (the result) before it frees */
  return OJ_FETCH_SUB(refs, 1, OJ_UNREF_ORDER) == 1;
}

/* The planted-bug knobs are this inclusion's: a later one starts from the correct protocol. */
#undef OJ_NO_CLAIM
#undef OJ_RUN_UNCLAIMED
#undef OJ_UNREF_ORDER
