/*
 * Private to weft: destroy's way out of a discarded task's direct wait (lib/waitq.h's "Direct
 * hand-off") against a peer from outside the runtime that dequeued it meanwhile — written once
 * and instantiated twice: with C11 atomics in lib/sync.c (out of line, for lib/waitq.h's peers
 * too) and with relacy's in tests/model/abandon_model.cpp. The includer defines:
 *
 *   AB_FLAG                          the atomic uint32_t object type
 *   AB_LOAD(obj, mo)  AB_STORE(obj, v, mo)  AB_EXCHANGE(obj, v, mo)
 *   AB_YIELD()                       give the CPU away while the other side finishes
 *   AB_RLX AB_ACQ AB_REL AB_ACQ_REL  memory orders
 *   AB_FN(name)                      the name of each function
 *   AB_LINKAGE                       (optional, default static inline) the functions' linkage
 * and may plant the bugs the model must catch: AB_NO_HANDSHAKE (session 24's rule: destroy
 * looks whether the wait was delivered, then takes the object's lock; the peer never waits),
 * AB_IGNORE_PEER (destroy does not take the peer's mark for a delivery, and looks at the task
 * instead: session 25's first, fenced, version, whose look missed a wake that lost to a
 * cancel), AB_BEGIN_ORDER and AB_END_ORDER (acq_rel and release: destroy's two steps); and
 * AB_PEER_WAITS() (nothing unless defined: the library's test build counts a peer that waited).
 *
 * The race (found by writing the model, session 25). Destroy (step 3, the workers stopped) must
 * take a discarded task's node out of the object's queue, under the object's lock, unless a
 * peer dequeued it; and it must not touch the object once a peer's call has returned, since the
 * peer's caller may then free the object (an event set, then destroyed: legal, it has no waiter
 * left). Session 24 looked first (the task WOKEN by the completion, or the peer's `done`) and
 * then locked; a peer could dequeue, wake, return and let the object be freed between the look
 * and the lock. Only a peer from outside the runtime can be inside its call at step 3, and such
 * a peer always ends with `done`, its last touch of the wait (the task, and destroy, wait for
 * it). So the two meet on one word of the wait, `abandoning`, each with an exchange: the peer,
 * after its wake and before `done`, exchanges PEER in; destroy, before it looks, exchanges IN.
 * The word's order decides. Destroy first: the peer reads IN and waits, inside its call (the
 * object alive), until destroy stores OVER once it is done with the lock. The peer first:
 * destroy reads PEER, which says that the node was dequeued and the hand-off is ending, so it
 * takes the wait as delivered and never locks. Destroy says OVER before it waits for `done`,
 * so the two never wait on each other.
 * Rejected: a store and a seq_cst fence on each side, destroy looking at the task's park state
 * (session 25's first version: a peer whose wake lost to a cancel — the task discarded woken
 * but not yet run — writes nothing there for destroy's look to see; review, session 25, with a
 * reproducer), destroy claiming the park state first (the peer's wake then loses, but it still
 * returns and lets the object go while destroy locks), and keeping the discarded stack mapped
 * with its node queued (a stack per discarded task leaked, and a later dequeue's wake would
 * push into the freed runtime).
 */

enum { AB_NONE = 0, AB_IN = 1, AB_OVER = 2, AB_PEER = 3 };

#ifndef AB_NO_HANDSHAKE
#define AB_NO_HANDSHAKE 0
#endif
#ifndef AB_IGNORE_PEER
#define AB_IGNORE_PEER 0
#endif
#ifndef AB_BEGIN_ORDER
#define AB_BEGIN_ORDER AB_ACQ_REL
#endif
#ifndef AB_END_ORDER
#define AB_END_ORDER AB_REL
#endif
#ifndef AB_LINKAGE
#define AB_LINKAGE static inline
#endif
#ifndef AB_PEER_WAITS
#define AB_PEER_WAITS() ((void)0)
#endif

/* Destroy, before it looks whether the wait was delivered: true if an outside peer has
 * dequeued the node and is ending its hand-off (take the wait as delivered: no lock). */
AB_LINKAGE bool AB_FN(abandon_begin)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return false;
  /* acquire: the peer's writes before its mark (`settle`, under the lock; the status);
   * release: nothing of ours, but an exchange's success order may not be weaker */
  return AB_EXCHANGE(*f, AB_IN, AB_BEGIN_ORDER) == AB_PEER && !AB_IGNORE_PEER;
}

/* Destroy, done with the object's lock (or not needing it): a waiting peer may return. */
AB_LINKAGE void AB_FN(abandon_end)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return;
  AB_STORE(*f, AB_OVER, AB_END_ORDER); /* release: our last touch of the object before it */
}

/* An outside peer, after its wake and before `done`: marks its hand-off, and waits while
 * destroy, there first, may hold the object's lock. */
AB_LINKAGE void AB_FN(peer_waits_abandon)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return;
  /* release: our dequeue's `settle` and our status reach a destroy that reads PEER; acquire:
   * an exchange that reads IN is followed by the wait's acquire loads anyway */
  if (AB_EXCHANGE(*f, AB_PEER, AB_ACQ_REL) != AB_IN) return;
  AB_PEER_WAITS(); /* the library's tests count it */
  /* acquire: destroy's last touch of the object happens before our return */
  while (AB_LOAD(*f, AB_ACQ) != AB_OVER) AB_YIELD();
}
