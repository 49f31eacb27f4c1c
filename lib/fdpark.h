/* Private to weft: the library's instance of the fd park (protocol and memory orders in
 * fdpark_impl.h, shared with the relacy model in tests/model/fdpark_model.cpp), for lib/io.c
 * (the waiter) and lib/poll.c (the deliverer). Names this header generates (static inline,
 * from fdpark_impl.h's FP_FN), so grep finds them here: fdpark_settle, fdpark_withdraw,
 * fdpark_park, fdpark_deliver_claim, fdpark_deliver_wake, fdpark_deliver_end; and FP_EMPTY,
 * FP_CLAIMED, FP_PARKED, FP_BUSY, FP_RETRY, FP_RETRY_WOKEN. */
#ifndef WEFT_FDPARK_H
#define WEFT_FDPARK_H

#include "internal.h"
#include "wake.h"

#include <sched.h>

#define FP_WORD _Atomic uintptr_t
#define FP_COUNT _Atomic uint32_t
#define FP_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define FP_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define FP_FETCH_ADD(obj, v, mo) atomic_fetch_add_explicit(&(obj), (v), (mo))
#define FP_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (desired), (mos), (mof))
#define FP_RLX memory_order_relaxed
#define FP_ACQ memory_order_acquire
#define FP_REL memory_order_release
#define FP_SC memory_order_seq_cst
/* The deliverer holds CLAIMED for a few instructions and never suspends there; it may be
 * preempted, so the waiter yields rather than burn its core. */
#define FP_SPIN() sched_yield()
#define FP_LOST WK_LOST
#define FP_WON_PARKING WK_WON_PARKING
#define FP_WON_PARKED WK_WON_PARKED
#define FP_WAKE(task) wake_wake(&((struct weft_task *)(task))->state, WK_BY_COMPLETION)
#define FP_FN(name) fdpark_##name

#include "fdpark_impl.h"

#endif /* WEFT_FDPARK_H */
