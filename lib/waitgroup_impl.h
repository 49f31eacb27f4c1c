/*
 * Private to weft: the wait group's counter — its lock-free part — written once and
 * instantiated twice: with C11 atomics in the library (lib/sync.c) and with relacy's in
 * tests/model/sync_model.cpp. The includer defines:
 *
 *   WG_COUNT                         the atomic long object type
 *   WG_LOAD(obj, mo)  WG_FETCH_ADD(obj, v, mo)
 *   WG_ACQ WG_ACQ_REL                memory orders
 *   WG_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: WG_ADD_ORDER (acq_rel), WG_ZERO_ORDER
 * (acquire), WG_LOCKED_CHECK (1: a waiter reads the counter again under the queue's lock
 * before it queues).
 *
 * The protocol. add and done change the counter with one atomic add, without the lock; only
 * the change that takes it to zero takes the group's queue lock (lib/sync.c's spinlock) and
 * wakes every queued waiter. A waiter returns at once if it reads zero; otherwise it takes the
 * lock, reads the counter again, and queues only if it is still not zero, then waits (the
 * wait releases the lock). So a change to zero either comes before the waiter's locked read
 * (which sees it: the add is one atomic read-modify-write, and a lock the zero-taker held
 * before ours orders its add before our read) or takes the lock after the waiter queued and
 * released it, and finds it queued. Ordering: each add releases the writes before it, the
 * zero-taker acquires them all (every earlier add is in the counter's release sequence) and
 * hands them to the woken waiters through the wake; a waiter that reads zero acquires them
 * itself.
 * Rejected: the counter under the lock (as it was, issue 11): 10^6 detached tasks each
 * calling done from two workers spent 16 % of their samples on the lock's line and naps.
 */

#ifndef WG_ADD_ORDER
#define WG_ADD_ORDER WG_ACQ_REL
#endif
#ifndef WG_ZERO_ORDER
#define WG_ZERO_ORDER WG_ACQ
#endif
#ifndef WG_LOCKED_CHECK
#define WG_LOCKED_CHECK 1
#endif

/* Adds delta and returns the counter after it. 0: the caller took it to zero and must take the
 * queue's lock and wake every waiter; below 0 is the caller's misuse. acq_rel: see above. */
static inline long WG_FN(add)(WG_COUNT *count, long delta) {
  return WG_FETCH_ADD(*count, delta, WG_ADD_ORDER) + delta;
}

/* Whether the counter is zero: a waiter's first look. acquire: pairs with the adds' release,
 * so that a waiter that returns sees what every done wrote before it. */
static inline bool WG_FN(zero)(WG_COUNT *count) { return WG_LOAD(*count, WG_ZERO_ORDER) == 0; }

/* The waiter's second look, under the queue's lock, just before it would queue: true means
 * do not queue (it is zero). */
static inline bool WG_FN(zero_locked)(WG_COUNT *count) {
  return WG_LOCKED_CHECK ? WG_FN(zero)(count) : false;
}
