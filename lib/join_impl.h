/*
 * Private to weft: the completion word and the join counter, written once and instantiated
 * twice — with C11 <stdatomic.h> for the library (lib/join.h, used by lib/task.c) and with
 * relacy's atomics for the model checker (tests/model/). The includer defines:
 *
 *   JN_WORD, JN_COUNT                      the atomic uintptr_t and atomic long object types
 *   JN_NODE, JN_NEXT(node)                 the waiter node type and its plain `next` lvalue
 *   JN_LOAD(obj, mo)  JN_FETCH_OR(obj, v, mo)  JN_FETCH_SUB(obj, v, mo)
 *   JN_CAS_WEAK(obj, expected_lvalue, desired, mo_success, mo_failure)
 *   JN_RLX JN_ACQ JN_ACQ_REL               memory orders
 *   JN_FN(name)                            the name of each function
 * and may override the orders that the negative controls plant bugs in:
 *   JN_ADD_ORDER, JN_COMPLETE_ORDER, JN_RELEASE_ORDER, JN_COUNT_ORDER (all acq_rel), and
 *   JN_ADD_FAIL_ORDER (acquire; a CAS's failure order may not be stronger than its success's).
 *
 * Design. A task's (or gather's) completion word holds, in one uintptr_t, the list of waiter
 * nodes (a Treiber stack of nodes that live on the waiters' own stacks, 8-aligned), DONE and
 * RELEASED (the handle is gone). Waiting pushes a node unless DONE is set; completing sets DONE
 * and takes the whole list in one CAS; so no waiter can be added after the list was taken, and
 * none is missed. Each node points to a join counter: `pending` counts the children not yet
 * arrived plus one held by the waiter until it is switched out; the arrival that brings it to
 * zero makes the waiter runnable. Whoever of completion and handle release comes second frees
 * the descriptor. Rejected: a mutex + condition variable per task (a lock round trip per
 * completion, 40+ bytes per task), a counter per task plus a separate waiter list (two atomic
 * operations per completion instead of one), and waking the waiter from every child (N
 * wake-ups per gather instead of one).
 */

#ifndef JN_DONE
#define JN_DONE ((uintptr_t)1)
#define JN_RELEASED ((uintptr_t)2)
#define JN_FLAGS ((uintptr_t)3)
#endif

#ifndef JN_ADD_ORDER
#define JN_ADD_ORDER JN_ACQ_REL
#endif
#ifndef JN_ADD_FAIL_ORDER
#define JN_ADD_FAIL_ORDER JN_ACQ
#endif
#ifndef JN_COMPLETE_ORDER
#define JN_COMPLETE_ORDER JN_ACQ_REL
#endif
#ifndef JN_RELEASE_ORDER
#define JN_RELEASE_ORDER JN_ACQ_REL
#endif
#ifndef JN_COUNT_ORDER
#define JN_COUNT_ORDER JN_ACQ_REL
#endif

/* Adds node to the word's waiter list; false (nothing added) if the word is already DONE. */
static inline bool JN_FN(add_waiter)(JN_WORD *word, JN_NODE *node) {
  uintptr_t s = JN_LOAD(*word, JN_ACQ); /* acquire: a DONE seen here comes with the result */
  do {
    if (s & JN_DONE) return false;
    JN_NEXT(node) = (JN_NODE *)(s & ~JN_FLAGS);
    /* success acq_rel: release hands node's fields to the completer that takes the list;
     * failure acquire: a DONE we then see comes with the result. */
  } while (!JN_CAS_WEAK(*word, s, (uintptr_t)node | (s & JN_FLAGS), JN_ADD_ORDER, JN_ADD_FAIL_ORDER));
  return true;
}

/* Sets DONE (keeping RELEASED) and returns the word as it was: the waiter list and flags.
 * The caller wrote the result before; if RELEASED was set it frees the descriptor. */
static inline uintptr_t JN_FN(complete)(JN_WORD *word) {
  uintptr_t s = JN_LOAD(*word, JN_RLX); /* relaxed: the CAS validates it */
  /* acq_rel: release publishes the result to whoever sees DONE; acquire makes the waiter
   * nodes (pushed with release) readable, and orders a handle release before our free. */
  while (!JN_CAS_WEAK(*word, s, JN_DONE | (s & JN_RELEASED), JN_COMPLETE_ORDER, JN_RLX)) {
  }
  return s;
}

/* The handle's release. Returns -1 if it was released before (misuse), 1 if the task is done
 * and the caller frees the descriptor, 0 if it runs on detached and its completion frees it. */
static inline int JN_FN(release_handle)(JN_WORD *word) {
  /* acquire: after DONE only the handle's owner touches the word, so a finished task is
   * freed without a read-modify-write, and the completer's writes happen before the free. */
  uintptr_t s = JN_LOAD(*word, JN_ACQ);
  if (s & JN_RELEASED) return -1;
  if (s & JN_DONE) return 1;
  /* acq_rel: if the task finishes concurrently, exactly one of us sees both bits, and the
   * one that frees has seen the other's last write. */
  s = JN_FETCH_OR(*word, JN_RELEASED, JN_RELEASE_ORDER);
  return (s & JN_DONE) ? 1 : 0;
}

/* One arrival at a join; true for the last one, which makes the waiter runnable. */
static inline bool JN_FN(count_release)(JN_COUNT *pending) {
  /* acq_rel: the last arriver sees every child's result (their releases) before it wakes the
   * waiter, and the waiter's own release of its +1 orders its switch-out before the resume. */
  return JN_FETCH_SUB(*pending, 1, JN_COUNT_ORDER) == 1;
}
