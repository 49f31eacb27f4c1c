/*
 * Private to weft: destroy's way out of a discarded task's direct wait (lib/waitq.h's "Direct
 * hand-off") against a peer from outside the runtime that dequeued it meanwhile — written once
 * and instantiated twice: with C11 atomics in lib/sync.c (out of line, for lib/waitq.h's peers
 * too) and with relacy's in tests/model/abandon_model.cpp. The includer defines:
 *
 *   AB_FLAG                          the atomic uint32_t object type
 *   AB_LOAD(obj, mo)  AB_STORE(obj, v, mo)  AB_FENCE()  (a seq_cst fence)
 *   AB_YIELD()                       give the CPU away while the other side finishes
 *   AB_RLX AB_ACQ AB_REL             memory orders
 *   AB_FN(name)                      the name of each function
 *   AB_LINKAGE                       (optional, default static inline) the functions' linkage
 * and may plant the bugs the model must catch: AB_NO_HANDSHAKE (session 24's rule: destroy
 * looks whether the wait was delivered, then takes the object's lock; the peer never waits)
 * and AB_NO_FENCE (destroy's side of the handshake without its fence); and AB_PEER_WAITS() (nothing
 * unless defined: the library's test build counts a peer that waited, for test_destroy).
 *
 * The race (found by writing the model, session 25). Destroy (step 3, the workers stopped) must
 * take a discarded task's node out of the object's queue, under the object's lock, unless a
 * peer dequeued it; and it must not touch the object once a peer has woken the task, since the
 * peer's caller may free the object as soon as the call returns (an event set, then destroyed:
 * legal, it has no waiter left). Session 24 looked first (the task WOKEN by the completion, or
 * the peer's `done`) and then locked; a peer could dequeue, wake, return and let the object be
 * freed between the look and the lock. Only a peer from outside the runtime can be inside its
 * call at step 3, and such a peer always ends with `done`, its last touch of the wait (the
 * task, and destroy, wait for it). So: destroy announces itself in the wait (`abandoning` IN),
 * then looks; the outside peer, after its wake and before `done`, looks at `abandoning` and, if
 * destroy is IN, waits until it is OVER. A seq_cst fence on each side, between its write and
 * its look (store-buffering): either destroy's look sees the wake (and it never locks), or the
 * peer's look sees IN (and it stays inside its call, the object alive, until destroy is done
 * with the lock). Destroy says OVER before it waits for `done`, so the two never wait on each
 * other.
 * Rejected: destroy claiming the task's park state first (the peer's wake then loses, but it
 * still returns and lets the object go while destroy locks), keeping the discarded stack
 * mapped with its node queued (a stack per discarded task leaked, and a later dequeue's wake
 * would push into the freed runtime), and a fence on every peer's wake (only a peer from
 * outside can race destroy: a worker's peers are joined by then).
 */

enum { AB_NONE = 0, AB_IN = 1, AB_OVER = 2 };

#ifndef AB_NO_HANDSHAKE
#define AB_NO_HANDSHAKE 0
#endif
#ifndef AB_NO_FENCE
#define AB_NO_FENCE 0
#endif
#ifndef AB_LINKAGE
#define AB_LINKAGE static inline
#endif
#ifndef AB_PEER_WAITS
#define AB_PEER_WAITS() ((void)0)
#endif

/* Destroy, before it looks whether the wait was delivered. */
AB_LINKAGE void AB_FN(abandon_begin)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return;
  AB_STORE(*f, AB_IN, AB_RLX); /* relaxed: the fence orders it before our look */
  if (!AB_NO_FENCE) AB_FENCE(); /* seq_cst: store-buffering against the peer's wake (top) */
}

/* Destroy, done with the object's lock (or not needing it): a waiting peer may return. */
AB_LINKAGE void AB_FN(abandon_end)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return;
  AB_STORE(*f, AB_OVER, AB_REL); /* release: our last touch of the object happens before it */
}

/* An outside peer, after its wake and before `done`: waits while destroy may hold the lock. */
AB_LINKAGE void AB_FN(peer_waits_abandon)(AB_FLAG *f) {
  if (AB_NO_HANDSHAKE) return;
  AB_FENCE(); /* seq_cst: store-buffering against destroy's announce (top) */
  /* acquire: destroy's last touch of the object happens before our return */
  if (AB_LOAD(*f, AB_ACQ) != AB_IN) return;
  AB_PEER_WAITS(); /* the library's tests count it */
  while (AB_LOAD(*f, AB_ACQ) == AB_IN) AB_YIELD(); /* acquire: as above */
}
