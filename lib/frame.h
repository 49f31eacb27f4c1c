/* Private to weft: the library's instance of the frames' split deque (protocol and memory
 * orders in frame_impl.h, shared with the relacy model in tests/model/frame_model.cpp).
 * Names this header generates (static inline, from frame_impl.h's FR_FN), so grep finds them
 * here: frames_push, frames_share, frames_pop, frames_pop_shared, frames_reclaim_all,
 * frames_reset, frames_steal, frames_seen_shared, frames_newest, frames_ask, frames_ts_*; and FR_ABORT. */
#ifndef WEFT_FRAME_H
#define WEFT_FRAME_H
#include "internal.h"

#define FR_DEQUE weft__frames_t
#define FR_CAP WEFT__FRAMES_CAP
#define FR_RLX memory_order_relaxed
#define FR_ACQ memory_order_acquire
#define FR_REL memory_order_release
#define FR_ACQ_REL memory_order_acq_rel
#define FR_SC memory_order_seq_cst
#define FR_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define FR_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define FR_CAS(obj, expected, desired, mo) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (desired), (mo), memory_order_relaxed)
#define FR_FN(name) frames_##name
/* A frame's word and unrun matter only once another thread may have it: set when shared (and
 * when detached), not at every fork. relaxed: share()'s release CAS publishes them. The TSan
 * release is the fork edge for a program whose own code is instrumented but whose libweft is
 * not (the CAS is then invisible to TSan): what the owner wrote before the fork happens before
 * the thief's run (pairs with the acquire in weft__frames_steal). */
#define FR_PREPARE(x)                                                                          \
  do {                                                                                         \
    weft__frame_t *prep_ = (x);                                                                \
    atomic_store_explicit(&prep_->word, 0, memory_order_relaxed);                              \
    prep_->unrun = 0;                                                                          \
    weft__tsan_release(&prep_->fn);                                                            \
  } while (0)

#include "frame_impl.h"

/* Where a frame is (weft__frame_t.where): set by lib/frame.c's fork and sync and by the
 * worker's detach (lib/worker.c). */
enum {
  FRAME_QUEUED = WEFT__FRAME_QUEUED, /* in this worker's deque (or stolen: the pop says) */
  FRAME_AWAY = 2,     /* detached: a runner task has it, or a thief; wait on its word */
  FRAME_DEFERRED = 3, /* nobody will run it: its sync calls it */
  FRAME_SYNCED = WEFT__FRAME_SYNCED, /* its sync began (or ended): a second one aborts */
};


_Static_assert(WEFT__FRAMES_CAP <= FR_IDX_MASK, "ts holds tail and split in 13 bits each");

#endif /* WEFT_FRAME_H */
