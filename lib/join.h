/* Private to weft: the library's instance of the completion word and join counter (protocol
 * and memory orders in join_impl.h, shared with the relacy model in tests/model/).
 * Names this header generates (static inline, from join_impl.h's JN_FN), so grep finds them
 * here: join_add_waiter, join_complete, join_finish_waking, join_release_handle,
 * join_count_release, join_remove_waiter, join_hold_unless_done, join_unhold,
 * join_signal_thread, join_signal_state, join_may_return, join_holder_untouched; and the
 * constants JN_DONE, JN_RELEASED, JN_BUSY, JN_FLAGS, JN_WAITING,
 * JN_SIGNALLED, JN_WOKEN. */
#ifndef WEFT_JOIN_H
#define WEFT_JOIN_H
#include "internal.h"

#include <sched.h>

#define JN_WORD _Atomic uintptr_t
#define JN_COUNT _Atomic long
#define JN_NODE weft__waiter_t
#define JN_NEXT(node) ((node)->next)
#define JN_RLX memory_order_relaxed
#define JN_ACQ memory_order_acquire
#define JN_REL memory_order_release
#define JN_ACQ_REL memory_order_acq_rel
#define JN_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define JN_FETCH_OR(obj, v, mo) atomic_fetch_or_explicit(&(obj), (v), (mo))
#define JN_FETCH_AND(obj, v, mo) atomic_fetch_and_explicit(&(obj), (v), (mo))
#define JN_FETCH_SUB(obj, v, mo) atomic_fetch_sub_explicit(&(obj), (v), (mo))
#define JN_CAS_WEAK(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_weak_explicit(&(obj), &(expected), (desired), (mos), (mof))
#define JN_YIELD() sched_yield()
#define JN_SIGNAL _Atomic uint32_t
#define JN_SIGNAL_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define JN_SIGNAL_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define JN_FUTEX_WAKE(sig) weft__futex_wake((sig), 1)
#define JN_FN(name) join_##name
#define JN_PAUSE_UNLINKED() weft__pause(WEFT__PAUSE_JOIN_UNLINKED) /* tests (test_destroy) */
#define JN_COMPLETE_WAITED() weft__probe_hit(WEFT__PROBE_COMPLETE_HELD) /* tests (test_destroy) */

#include "join_impl.h"

_Static_assert(JN_DONE == WEFT__DONE && JN_RELEASED == WEFT__RELEASED && JN_BUSY == WEFT__BUSY &&
                   JN_FLAGS == WEFT__WORD_FLAGS,
               "join_impl.h and internal.h must agree on the completion word's bits");

#endif /* WEFT_JOIN_H */
