/* Private to weft: the Chase–Lev deque, self-contained like a Concurrency Kit header — its
 * struct and its operations, no runtime types. The algorithm and memory orders are in
 * deque_impl.h, instantiated here with C11 atomics (and in tests/model/ with relacy's); the
 * storage (arrays, growth, retirement and reclamation while thieves run) is in deque.c.
 *
 * Names this header generates (grep finds them here): weft__deque_push, weft__deque_push_fit,
 * weft__deque_push_as, weft__deque_push_fit_as,
 * weft__deque_take, weft__deque_take_if, weft__deque_steal, weft__deque_steal_batch,
 * weft__deque_seen_nonempty, weft__deque_looks_empty, weft__deque_looks_deeper_than,
 * weft__deque_peek_newest (static inline,
 * from deque_impl.h's WD_FN), WEFT__DEQUE_ABORT and WEFT__DEQUE_FULL. Declared:
 * weft__deque_init, weft__deque_destroy, weft__deque_grow, weft__deque_reclaim. A thief calls
 * steal and steal_batch on another's deque only inside the domain's read section
 * (weft__epoch_enter/leave, epoch.h). */
#ifndef WEFT_DEQUE_H
#define WEFT_DEQUE_H

#include "epoch.h"

#include <ck_md.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct weft__deque_array {
  int64_t mask;
  struct weft__deque_array *retired; /* the next older array awaiting its grace period */
  uint64_t retired_at;               /* the epoch read after it was unpublished (its tag) */
  _Atomic uintptr_t slot[];
} weft__deque_array_t;

typedef struct weft__deque {
  _Atomic int64_t top __attribute__((aligned(CK_MD_CACHELINE)));    /* thieves' end */
  _Atomic int64_t bottom __attribute__((aligned(CK_MD_CACHELINE))); /* owner's end */
  _Atomic(weft__deque_array_t *) array;
  /* The owner's alone (written at growth and reclamation only, not on push or take): */
  weft__epoch_t *epoch;          /* the runtime's domain: the thieves' read sections */
  weft__deque_array_t *retired;  /* grown-out arrays, newest first, not yet freed */
  /* Counters for the metrics snapshot: written by the owner, read by anyone (relaxed). */
  _Atomic uint64_t n_retired, n_freed; /* arrays grown out of / freed */
  _Atomic uint64_t bytes_live, bytes_retired; /* the live array / the retired ones not freed */
} weft__deque_t;

/* 0, or -12 (WEFT_ENOMEM) when the first array cannot be had. */
int weft__deque_init(weft__deque_t *d, size_t capacity_pow2, weft__epoch_t *epoch);
void weft__deque_destroy(weft__deque_t *d);
/* The owner's growth step inside push: NULL when memory is exhausted (push then fails). */
weft__deque_array_t *weft__deque_grow(weft__deque_t *d, weft__deque_array_t *old, int64_t t,
                                      int64_t b);
/* Owner only: frees the retired arrays whose grace period is over (advancing the epoch up to
 * twice); returns how many. O(workers) when something is retired, a load when nothing is. */
int weft__deque_reclaim(weft__deque_t *d);

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

#include "deque_impl.h"
#define WEFT__DEQUE_ABORT WD_ABORT
#define WEFT__DEQUE_FULL WD_FULL

#endif /* WEFT_DEQUE_H */
