/*
 * Private to weft: the completion word and the join counter, written once and instantiated
 * twice — with C11 <stdatomic.h> for the library (lib/join.h, used by lib/task.c) and with
 * relacy's atomics for the model checker (tests/model/). The includer defines:
 *
 *   JN_WORD, JN_COUNT                      the atomic uintptr_t and atomic long object types
 *   JN_NODE, JN_NEXT(node)                 the waiter node type and its plain `next` lvalue
 *   JN_LOAD(obj, mo)  JN_FETCH_OR(obj, v, mo)  JN_FETCH_AND(obj, v, mo)  JN_FETCH_SUB(obj, v, mo)
 *   JN_CAS_WEAK(obj, expected_lvalue, desired, mo_success, mo_failure)
 *   JN_RLX JN_ACQ JN_REL JN_ACQ_REL        memory orders
 *   JN_YIELD()                             give the CPU away while another party finishes
 *   JN_SIGNAL, JN_SIGNAL_LOAD(sig, mo), JN_SIGNAL_STORE(sig, v, mo), JN_FUTEX_WAKE(sig)
 *                                          a blocked thread's wake word (a pointer to it is passed)
 *   JN_FN(name)                            the name of each function
 * and may override the orders that the negative controls plant bugs in:
 *   JN_ADD_ORDER, JN_COMPLETE_ORDER, JN_RELEASE_ORDER, JN_COUNT_ORDER (all acq_rel), and
 *   JN_ADD_FAIL_ORDER (acquire; a CAS's failure order may not be stronger than its success's);
 * and the protocol steps they plant bugs in: JN_THREAD_RETURNS_AT (the wake word's value at
 * which a blocked thread may return: JN_WOKEN), JN_REMOVE_WAITS_BUSY and JN_COMPLETE_WAITS_BUSY
 * (1: the steps below that wait out the other party's BUSY), and JN_UNTOUCHED_BITS (the bits of
 * the word holder_untouched looks at: all of them), JN_HOLD_BY_LOOK (1: hold_unless_done only
 * looks at DONE and holds nothing, session 24's rule); and JN_PAUSE_UNLINKED() (nothing unless
 * defined: the library's test build holds a remover there, its node unlinked and BUSY still
 * set, for a test of destroy's release of a discarded task's handle) and JN_COMPLETE_WAITED()
 * (nothing unless defined: the test build counts a completion that waited out BUSY).
 *
 * Design. A task's (or future's) completion word holds, in one uintptr_t, the list of waiter
 * nodes (a Treiber stack of nodes that live on the waiters' own stacks, 8-aligned), DONE,
 * RELEASED (the handle is gone) and BUSY (someone holds the list's nodes for a moment).
 * Waiting pushes a node unless DONE is set; completing sets DONE and takes the whole list in
 * one CAS; so no waiter can be added after the list was taken, and none is missed. Each node
 * points to a join counter: `pending` counts the children not yet arrived plus one held by the
 * waiter until it is switched out; the arrival that brings it to zero makes the waiter
 * runnable. Whoever of completion and handle release comes second frees the descriptor.
 *
 * BUSY closes the stale touches (a waker using a node, a join or a futex word after its owner
 * returned). It is set by the completer while it delivers the list it took (DONE|BUSY until
 * finish_waking), and by a remover (a timed-out waiter, or destroy taking a discarded task's
 * node out) while it unlinks one node in place (BUSY without DONE; the completer waits for it
 * to end). So "DONE and not BUSY" means: every node was delivered and no one will touch any
 * node of this word again — a remover that sees it may return and let its frame go. Destroy
 * sets BUSY without DONE too (hold_unless_done), to keep a peer inside its call for a moment. The
 * descriptor is not freed while BUSY: the completer frees it at finish_waking if the handle
 * was released meanwhile. A blocked thread's wake word has three values, WAITING → SIGNALLED
 * (the results are published; the waker is about to call FUTEX_WAKE on the word) → WOKEN (the
 * waker is done with it): the thread returns only at WOKEN, so the wake never lands on a stack
 * frame that is gone.
 * Rejected: a mutex + condition variable per task (a lock round trip per completion, 40+ bytes
 * per task), a counter per task plus a separate waiter list (two atomic operations per
 * completion instead of one), waking the waiter from every child (N wake-ups per gather
 * instead of one), removers that take the whole list and push the rest back (a node held
 * outside the word is invisible: a second remover cannot tell "delivered" from "held"), and a
 * per-node "done" flag (covers the node but not the join and wake word behind it).
 */

#ifndef JN_PAUSE_UNLINKED
#define JN_PAUSE_UNLINKED() ((void)0)
#endif
#ifndef JN_COMPLETE_WAITED
#define JN_COMPLETE_WAITED() ((void)0)
#endif
#ifndef JN_DONE
#define JN_DONE ((uintptr_t)1)
#define JN_RELEASED ((uintptr_t)2)
#define JN_BUSY ((uintptr_t)4)
#define JN_FLAGS ((uintptr_t)7)
#define JN_WAITING 0u
#define JN_SIGNALLED 1u
#define JN_WOKEN 2u
#endif
#ifndef JN_THREAD_RETURNS_AT
#define JN_THREAD_RETURNS_AT JN_WOKEN
#endif
#ifndef JN_REMOVE_WAITS_BUSY
#define JN_REMOVE_WAITS_BUSY 1
#endif
#ifndef JN_COMPLETE_WAITS_BUSY
#define JN_COMPLETE_WAITS_BUSY 1
#endif
#ifndef JN_UNTOUCHED_BITS
#define JN_UNTOUCHED_BITS (~(uintptr_t)0)
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

/* Sets DONE (keeping RELEASED; BUSY too if it takes waiters) and returns the word as it was:
 * the waiter list and flags. The caller wrote the result before. With waiters it delivers them
 * and then calls finish_waking, which says whether to free; without, it frees if RELEASED. */
static inline uintptr_t JN_FN(complete)(JN_WORD *word) {
  uintptr_t s = JN_LOAD(*word, JN_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    if (JN_COMPLETE_WAITS_BUSY && (s & JN_BUSY)) { /* a remover is unlinking a node in place */
      JN_COMPLETE_WAITED();
      JN_YIELD();
      s = JN_LOAD(*word, JN_RLX); /* relaxed: the CAS validates it */
      continue;
    }
    uintptr_t busy = (s & ~JN_FLAGS) ? JN_BUSY : 0;
    /* acq_rel: release publishes the result to whoever sees DONE; acquire makes the waiter
     * nodes (pushed with release, edited by removers before their release) readable, and
     * orders a handle release before our free. */
    if (JN_CAS_WEAK(*word, s, JN_DONE | busy | (s & JN_RELEASED), JN_COMPLETE_ORDER, JN_RLX))
      return s;
  }
}

/* After delivering the list complete() took: ends BUSY. True if the handle was released
 * meanwhile (or before), so the caller frees the descriptor: it was the last to touch it. */
static inline bool JN_FN(finish_waking)(JN_WORD *word) {
  /* acq_rel: release orders our last touches of the nodes before a remover's return; acquire
   * orders a concurrent handle release before our free. */
  return (JN_FETCH_AND(*word, ~JN_BUSY, JN_ACQ_REL) & JN_RELEASED) != 0;
}

/* The handle's release. Returns -1 if it was released before (misuse), 1 if the task is done
 * and the caller frees the descriptor, 0 if it runs on detached and its completion frees it. */
static inline int JN_FN(release_handle)(JN_WORD *word) {
  /* acquire: after DONE (and its delivery) only the handle's owner touches the word, so a
   * finished task is freed without a read-modify-write, and the completer's writes happen
   * before the free. */
  uintptr_t s = JN_LOAD(*word, JN_ACQ);
  if (s & JN_RELEASED) return -1;
  if ((s & (JN_DONE | JN_BUSY)) == JN_DONE) return 1;
  /* acq_rel: if the task finishes (or ends its delivery) concurrently, exactly one of us sees
   * both bits without BUSY, and the one that frees has seen the other's last write. */
  s = JN_FETCH_OR(*word, JN_RELEASED, JN_RELEASE_ORDER);
  return (s & (JN_DONE | JN_BUSY)) == JN_DONE ? 1 : 0;
}

/* weft_join's own inline run (#13, session 8; lib/join.c's join_inline): the holder took its
 * task's start entry back from its own deque (exactly once: the deque's take) and ran it, and
 * releases the handle now. True if the word is still as the spawn left it — held, no waiter,
 * not done: then nobody else may touch it any more (another awaiter of a handle that its
 * holder joins races the join's release anyway), and the holder frees the descriptor without
 * publishing a completion: no read-modify-write. False: complete() and release as usual.
 * relaxed: the take made the run, the result and the word the holder's; no one else's writes
 * need to be seen before the free. */
static inline bool JN_FN(holder_untouched)(JN_WORD *word) {
  return (JN_LOAD(*word, JN_RLX) & JN_UNTOUCHED_BITS) == 0;
}

/* One arrival at a join; true for the last one, which makes the waiter runnable. */
static inline bool JN_FN(count_release)(JN_COUNT *pending) {
  /* acq_rel: the last arriver sees every child's result (their releases) before it wakes the
   * waiter, and the waiter's own release of its +1 orders its switch-out before the resume. */
  return JN_FETCH_SUB(*pending, 1, JN_COUNT_ORDER) == 1;
}

/* Takes node out of the word's waiter list, where its owner linked it, unless the list was
 * taken for delivery: returns true if it unlinked the node (no one will arrive at its join),
 * false if it was delivered (the arrival has happened, and the deliverer is done with the node,
 * the join and the wake word behind it). Either way the node's frame may end on return. */
static inline bool JN_FN(remove_waiter)(JN_WORD *word, JN_NODE *node) {
  uintptr_t s = JN_LOAD(*word, JN_ACQ); /* acquire: DONE without BUSY ends the deliverer's touches */
  for (;;) {
    if ((s & JN_DONE) && !(JN_REMOVE_WAITS_BUSY && (s & JN_BUSY))) return false;
    if (s & JN_BUSY) { /* the deliverer, or another remover, holds the list for a moment */
      JN_YIELD();
      s = JN_LOAD(*word, JN_ACQ); /* acquire: as above */
      continue;
    }
    /* acquire: the nodes' links (pushed with release, edited by removers with release) */
    if (JN_CAS_WEAK(*word, s, s | JN_BUSY, JN_ACQ, JN_ACQ)) break;
  }
  /* BUSY is ours: pushers may still prepend, nobody else edits a link or takes the list. */
  uintptr_t head = s & ~JN_FLAGS;
  while (head == (uintptr_t)node) { /* our node is the newest: swing the word past it */
    uintptr_t desired = (uintptr_t)(JN_NODE *)JN_NEXT(node) | (s & JN_FLAGS) | JN_BUSY;
    s |= JN_BUSY;
    /* acquire: the links of a node a pusher prepended meanwhile */
    if (JN_CAS_WEAK(*word, s, desired, JN_ACQ, JN_ACQ)) goto unlock;
    head = s & ~JN_FLAGS; /* a pusher prepended: our node now has a predecessor */
  }
  for (JN_NODE *p = (JN_NODE *)head; p; p = JN_NEXT(p))
    if ((JN_NODE *)JN_NEXT(p) == node) {
      JN_NEXT(p) = (JN_NODE *)JN_NEXT(node);
      break;
    }
unlock:
  JN_PAUSE_UNLINKED();
  /* release: our edit of the links happens before the completer's (or next remover's) read */
  JN_FETCH_AND(*word, ~JN_BUSY, JN_REL);
  return true;
}

/* Destroy's hold on a discarded waiter's word (session 25; lib/sync.c, wq_word_wait_abandoned):
 * BUSY without DONE, as a remover's, while destroy looks under the object's lock whether a
 * peer dequeued the waiter. A peer that did completes the word only after its call's dequeue,
 * and complete() waits out BUSY: so the peer stays inside its call, and the object alive (its
 * owner may free it once the call returns), until unhold. False, holding nothing, if the word
 * is DONE: the peer delivered already, and the object must not be touched. JN_HOLD_BY_LOOK 1
 * plants session 24's rule (a look at DONE, no hold), which the model must catch. */
#ifndef JN_HOLD_BY_LOOK
#define JN_HOLD_BY_LOOK 0
#endif
static inline bool JN_FN(hold_unless_done)(JN_WORD *word) {
  /* acquire: a DONE seen comes with the peer's writes (its status) */
  uintptr_t s = JN_LOAD(*word, JN_ACQ);
  if (JN_HOLD_BY_LOOK) return !(s & JN_DONE);
  for (;;) {
    if (s & JN_DONE) return false;
    if (s & JN_BUSY) { /* another remover (never the deliverer: not DONE) */
      JN_YIELD();
      s = JN_LOAD(*word, JN_ACQ); /* acquire: as above */
      continue;
    }
    /* acquire: on failure, a DONE that landed meanwhile, as above (C11: the success order
     * may not be weaker than the failure's) */
    if (JN_CAS_WEAK(*word, s, s | JN_BUSY, JN_ACQ, JN_ACQ)) return true;
  }
}

/* Ends hold_unless_done's hold: a waiting complete() goes on. */
static inline void JN_FN(unhold)(JN_WORD *word) {
  /* release: our unlink (under the object's lock, released before) happens before the
   * peer's completion and its return */
  JN_FETCH_AND(*word, ~JN_BUSY, JN_REL);
}

/* A blocked thread's wake: publish, wake, then say that the word is ours no more. */
static inline void JN_FN(signal_thread)(JN_SIGNAL *sig) {
  JN_SIGNAL_STORE(*sig, JN_SIGNALLED, JN_REL); /* release: the results, to the woken thread */
  JN_FUTEX_WAKE(sig);
  JN_SIGNAL_STORE(*sig, JN_WOKEN, JN_REL); /* release: our wake happens before its return */
}

/* The blocked thread's side: the wake word's value, and whether it may return on it. */
static inline unsigned JN_FN(signal_state)(JN_SIGNAL *sig) {
  return JN_SIGNAL_LOAD(*sig, JN_ACQ); /* acquire: pairs with both stores above */
}

static inline bool JN_FN(may_return)(unsigned state) { return state >= JN_THREAD_RETURNS_AT; }
