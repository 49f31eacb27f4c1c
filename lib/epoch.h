/* Private to weft: the epoch domain that lets a deque's owner free the arrays it grew out of
 * while thieves run (the protocol and its memory orders: epoch_impl.h; the design: deque.c).
 * One domain per runtime, one reader per worker; self-contained like deque.h, no runtime types.
 *
 * Names this header generates (static inline, from epoch_impl.h's EP_FN): weft__epoch_enter,
 * weft__epoch_leave, weft__epoch_now, weft__epoch_advance, weft__epoch_grace_over,
 * weft__epoch_poll. */
#ifndef WEFT_EPOCH_H
#define WEFT_EPOCH_H

#include <ck_md.h>
#include <stdatomic.h>
#include <stdint.h>

/* A reader's word on its own line: its owner stores it twice per steal round, and other
 * workers' deques would otherwise share the line. */
typedef struct weft__epoch_reader {
  _Atomic uint64_t word __attribute__((aligned(CK_MD_CACHELINE)));
} weft__epoch_reader_t;

typedef struct weft__epoch {
  /* read by every thief's enter, written only by an advance: its own line */
  _Atomic uint64_t now __attribute__((aligned(CK_MD_CACHELINE)));
  int nreaders;
  weft__epoch_reader_t *readers; /* nreaders of them, cache-line aligned */
} weft__epoch_t;

/* 0, or -12 (WEFT_ENOMEM). */
int weft__epoch_init(weft__epoch_t *dom, int nreaders);
void weft__epoch_fini(weft__epoch_t *dom);

#define EP_WORD _Atomic uint64_t
#define EP_READER weft__epoch_reader_t
#define EP_RLX memory_order_relaxed
#define EP_ACQ memory_order_acquire
#define EP_REL memory_order_release
#define EP_SC memory_order_seq_cst
#define EP_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define EP_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define EP_CAS(obj, expected, desired, mo) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (desired), (mo), EP_SC)
#define EP_FN(name) weft__epoch_##name

#include "epoch_impl.h"

#endif /* WEFT_EPOCH_H */
