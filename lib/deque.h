/* Private to weft: the library's instance of the Chase–Lev deque (algorithm and memory orders
 * in deque_impl.h, shared with the relacy model in tests/model/). Included where the scheduler
 * needs push/take/steal inlined on its fast paths. */
#ifndef WEFT_DEQUE_H
#define WEFT_DEQUE_H
#include "internal.h"

#define WD_DEQUE weft__deque_t
#define WD_ARRAY weft__deque_array_t
#define WD_RLX memory_order_relaxed
#define WD_ACQ memory_order_acquire
#define WD_REL memory_order_release
#define WD_SC memory_order_seq_cst
#define WD_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define WD_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define WD_CAS(obj, expected, desired, mo) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (desired), (mo), WD_RLX)
#define WD_SLOT(a, i) ((a)->slot[(i) & (a)->mask])
#define WD_GROW(d, a, t, b) weft__deque_grow((d), (a), (t), (b))
#define WD_FN(name) weft__deque_##name

weft__deque_array_t *weft__deque_grow(weft__deque_t *d, weft__deque_array_t *old, int64_t t,
                                      int64_t b);

#include "deque_impl.h"
#define WEFT__DEQUE_ABORT WD_ABORT

#endif /* WEFT_DEQUE_H */
