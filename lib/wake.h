/* Private to weft: the library's instance of a task's park state (protocol and memory orders
 * in wake_impl.h, shared with the relacy model in tests/model/).
 * Names this header generates (static inline, from wake_impl.h's WK_FN), so grep finds them
 * here: wake_cancel_pending, wake_park_begin, wake_park_commit, wake_park_commit_direct,
 * wake_woken_by_completion, wake_wake, wake_cancel,
 * wake_park_end, wake_park_abort; and the constants WK_RUNNING, WK_PARKING, WK_PARKED,
 * WK_WOKEN, WK_BY_COMPLETION, WK_BY_TIMER, WK_BY_CANCEL, WK_CANCEL_REQUESTED,
 * WK_CANCEL_DELIVERED, WK_SHIELD_ONE, WK_SHIELD, WK_LOST, WK_WON_PARKING, WK_WON_PARKED. */
#ifndef WEFT_WAKE_H
#define WEFT_WAKE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WK_STATE _Atomic uint32_t
#define WK_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define WK_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define WK_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_weak_explicit(&(obj), &(expected), (desired), (mos), (mof))
#define WK_RLX memory_order_relaxed
#define WK_ACQ memory_order_acquire
#define WK_REL memory_order_release
#define WK_ACQ_REL memory_order_acq_rel
#define WK_FN(name) wake_##name

#include "wake_impl.h"

#endif /* WEFT_WAKE_H */
