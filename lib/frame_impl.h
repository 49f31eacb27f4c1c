/*
 * Private to weft: the split deque of fork-join frames (weft_fork / weft_sync), written once
 * and instantiated twice — with C11 <stdatomic.h> for the library (lib/frame.h) and with
 * relacy's atomics for the model checker (tests/model/frame_model.cpp). The includer defines:
 *
 *   FR_DEQUE                              the deque type: `FR_TS ts`, `FR_FLAG splitreq`,
 *                                         owner-only `uint32_t head, osplit`, slots `slot[]`
 *   FR_CAP                                the slot count (< 8192)
 *   FR_LOAD(obj, mo)  FR_STORE(obj, v, mo)  FR_CAS(obj, expected_lvalue, desired, mo)
 *   FR_RLX FR_ACQ FR_REL FR_ACQ_REL FR_SC    memory orders
 *   FR_FN(name)                           the name of each function
 *   FR_PREPARE(x)                         readies frame x for thieves (share() calls it)
 * and may override what the negative controls plant bugs in: FR_SHARE_ORDER (seq_cst),
 * FR_STEAL_READS_FIRST (1), FR_GEN_STEP (1), FR_RECLAIM_BY_CAS (1).
 *
 * Design: Lace's split deque (van Dijk and van de Pol, 2014), our own rendering. The slots
 * below `split` are shared: thieves take the oldest of them, [tail, split). The slots from
 * `split` up to `head` are the owner's alone: a fork writes a slot and bumps head, a sync
 * that finds its frame above the split decrements head — no atomic instruction, no fence,
 * which is the whole point: a Chase–Lev take needs a store→load fence on every pop (~20
 * cycles here, a third of the target cost of a spawn+sync). Thieves that find nothing shared
 * raise `splitreq`; the owner sees it at its next fork and shares half of its private part.
 * A sync that finds its frame in the shared part moves the split down by a CAS (reclaim), or
 * learns that a thief has it. All shared state is one 64-bit word, ts = tail | split << 13 |
 * gen << 26, changed only by CAS (the owner's resets excepted: they happen when tail == split,
 * where no thief's CAS can succeed). A thief reads its slot *before* its CAS and the CAS
 * validates it: every owner change of ts bumps gen, so an unchanged ts means the slot was not
 * rewritten since the share that published it. (Reading after the CAS is wrong here: a
 * promotion resets the deque, and a new frame may land in the slot before the thief reads.)
 * Rejected: a Chase–Lev deque for frames (the fence above); the THE protocol (Cilk-5: a fence
 * too); a lock (a thief holding it stalls the owner's every sync).
 */

#ifndef FR_SHARE_ORDER
#define FR_SHARE_ORDER FR_SC
#endif
#ifndef FR_STEAL_READS_FIRST
#define FR_STEAL_READS_FIRST 1
#endif
#ifndef FR_GEN_STEP
#define FR_GEN_STEP 1
#endif
#ifndef FR_RECLAIM_BY_CAS
#define FR_RECLAIM_BY_CAS 1
#endif

/* 13 bits each for tail and split (FR_CAP <= 4096), 38 for gen: at one owner change per
 * ~50 ns it wraps after ~3.8 hours, so a thief would have to stall that long between its read
 * and its CAS to be fooled by a wrapped gen. */
#define FR_IDX_BITS 13
#define FR_IDX_MASK ((1u << FR_IDX_BITS) - 1)
static inline uint64_t FR_FN(ts_pack)(uint32_t tail, uint32_t split, uint64_t gen) {
  return (uint64_t)tail | (uint64_t)split << FR_IDX_BITS | gen << (2 * FR_IDX_BITS);
}
static inline uint32_t FR_FN(ts_tail)(uint64_t ts) { return (uint32_t)(ts & FR_IDX_MASK); }
static inline uint32_t FR_FN(ts_split)(uint64_t ts) {
  return (uint32_t)(ts >> FR_IDX_BITS & FR_IDX_MASK);
}
static inline uint64_t FR_FN(ts_next_gen)(uint64_t ts) {
  return (ts >> (2 * FR_IDX_BITS)) + FR_GEN_STEP;
}

/* Owner: pushes x into the private part. -1 if full (nothing pushed), else 1 if the caller
 * should share: a thief has asked, or x is the first frame (an owner that forks once and then
 * computes for long without forking again would otherwise never answer a thief's ask), 0 if
 * not. */
static inline int FR_FN(push)(FR_DEQUE *d, void *x) {
  uint32_t h = d->head;
  if (h == FR_CAP) return -1;
  FR_STORE(d->slot[h], x, FR_RLX); /* relaxed: published by share()'s CAS, if ever shared */
  d->head = h + 1;
  /* acquire: pairs with a parker's release (worker.c), so that the wake check after our
   * share sees it counted as idle; free on x86 */
  return h == 0 || FR_LOAD(d->splitreq, FR_ACQ) != 0;
}

/* Owner: the newest frame, or 0 if the deque is empty (whether a thief has it: pop says). */
static inline void *FR_FN(newest)(FR_DEQUE *d) {
  return d->head ? FR_LOAD(d->slot[d->head - 1], FR_RLX) : 0; /* relaxed: our own write */
}

/* Any thread: asks the owner to share at its next fork (a worker about to park does this, as
 * a thief that found nothing does). release: see push. */
static inline void FR_FN(ask)(FR_DEQUE *d) {
  if (!FR_LOAD(d->splitreq, FR_RLX)) FR_STORE(d->splitreq, 1, FR_REL);
}

/* Owner: moves the split up over half of the private part (at least one slot), after
 * FR_PREPARE(x) on each frame it is about to publish. Returns 1 if it shared anything. */
static inline int FR_FN(share)(FR_DEQUE *d) {
  FR_STORE(d->splitreq, 0, FR_RLX); /* relaxed: a hint; cleared before, so a new ask stays */
  uint32_t split = d->osplit;
  uint32_t newsplit = split + (d->head - split + 1) / 2;
  if (newsplit == split) return 0;
  /* relaxed: our own writes (the CAS below publishes what FR_PREPARE sets) */
  for (uint32_t i = split; i < newsplit; i++) FR_PREPARE(FR_LOAD(d->slot[i], FR_RLX));
  uint64_t ts = FR_LOAD(d->ts, FR_RLX); /* relaxed: the CAS validates it */
  /* seq_cst: release publishes the slots and the frames they name to a thief's acquire; and
   * it is the store side of the wake check (worker.c: a parker's seq_cst load of ts sees it,
   * or our check of the idle counts sees the parker). Retried only when a thief moved tail. */
  while (!FR_CAS(d->ts, ts, FR_FN(ts_pack)(FR_FN(ts_tail)(ts), newsplit, FR_FN(ts_next_gen)(ts)),
                 FR_SHARE_ORDER)) {
  }
  d->osplit = newsplit;
  return 1;
}

/* Owner: the newest frame is shared or stolen (head == osplit, head > 0). Returns it, taken
 * back, or 0 if a thief has it (the deque is then empty). */
static inline void *FR_FN(pop_shared)(FR_DEQUE *d) {
  uint32_t split = d->osplit, top = split - 1;
  /* acquire: on the all-stolen path below, orders the thieves' reads of the slots (before their
   * release CAS) before our reuse of them; on the other, a CAS validates it */
  uint64_t ts = FR_LOAD(d->ts, FR_ACQ);
  uint32_t newsplit;
  for (;;) {
    uint32_t tail = FR_FN(ts_tail)(ts);
    if (tail >= split) {
      /* Every shared frame was stolen, the newest too. No thief's CAS can succeed while
       * tail >= split, so a plain store resets the indices. relaxed: it publishes nothing. */
      d->head = d->osplit = top;
      FR_STORE(d->ts, FR_FN(ts_pack)(top, top, FR_FN(ts_next_gen)(ts)), FR_RLX);
      return 0;
    }
    newsplit = (tail + split) / 2; /* < split: our newest is private again */
#if FR_RECLAIM_BY_CAS
    /* acq_rel: acquire orders the reads of the thieves that took the slots below before our
     * reuse of them; the CAS is the only way to know no thief took `top` meanwhile. */
    if (FR_CAS(d->ts, ts, FR_FN(ts_pack)(tail, newsplit, FR_FN(ts_next_gen)(ts)), FR_ACQ_REL))
      break;
    /* acquire: the failed CAS's reload is relaxed (FR_CAS), and the value may send us to the
     * all-stolen path, which needs the first load's acquire (review, session 31: C11 let the
     * thieves' reads of the slots pass our reuse; x86 and ARMv8 acquire on failure anyway) */
    ts = FR_LOAD(d->ts, FR_ACQ);
#else
    FR_STORE(d->ts, FR_FN(ts_pack)(tail, newsplit, FR_FN(ts_next_gen)(ts)), FR_SC);
    break;
#endif
  }
  d->osplit = newsplit;
  d->head = top;
  return FR_LOAD(d->slot[top], FR_RLX); /* relaxed: our own write */
}

/* Owner: the newest frame, taken back; 0 if a thief has it. head > 0. */
static inline void *FR_FN(pop)(FR_DEQUE *d) {
  uint32_t top = d->head - 1;
  if (top >= d->osplit) { /* private: no thief can reach it */
    d->head = top;
    return FR_LOAD(d->slot[top], FR_RLX); /* relaxed: our own write */
  }
  return FR_FN(pop_shared)(d);
}

/* Owner: takes back every frame not stolen. Returns the old tail: slots [0, tail) were
 * stolen, [tail, head) are the owner's again. The caller then calls reset(). */
static inline uint32_t FR_FN(reclaim_all)(FR_DEQUE *d) {
  uint64_t ts = FR_LOAD(d->ts, FR_RLX); /* relaxed: the CAS validates it */
  uint32_t tail;
  for (;;) {
    tail = FR_FN(ts_tail)(ts);
    /* acq_rel: as in pop_shared (the thieves' reads of the slots come before our reuse) */
    if (FR_CAS(d->ts, ts, FR_FN(ts_pack)(tail, tail, FR_FN(ts_next_gen)(ts)), FR_ACQ_REL)) break;
  }
  d->osplit = tail;
  return tail;
}

/* Owner: empties the deque (after reclaim_all). tail == split before and after: no thief's
 * CAS can succeed across it. relaxed: it publishes nothing. */
static inline void FR_FN(reset)(FR_DEQUE *d) {
  uint64_t ts = FR_LOAD(d->ts, FR_RLX);
  d->head = d->osplit = 0;
  FR_STORE(d->ts, FR_FN(ts_pack)(0, 0, FR_FN(ts_next_gen)(ts)), FR_RLX);
}

/* Any thread: the oldest shared frame; 0 if none (a hint to the owner is left); FR_ABORT if
 * another thief or the owner changed the deque meanwhile. */
#define FR_ABORT ((void *)1)
static inline void *FR_FN(steal)(FR_DEQUE *d) {
  /* seq_cst ⊇ acquire (pairs with share's release: the slots and frames); seq_cst also makes
   * it the load side of the wake check when a parker looks (seen_shared). */
  uint64_t ts = FR_LOAD(d->ts, FR_SC);
  uint32_t tail = FR_FN(ts_tail)(ts);
  if (tail >= FR_FN(ts_split)(ts)) {
    FR_FN(ask)(d); /* checked first, so the line stays shared while the ask stands */
    return 0;
  }
#if FR_STEAL_READS_FIRST
  void *x = FR_LOAD(d->slot[tail], FR_RLX); /* relaxed: the CAS below validates it (gen) */
  /* acq_rel: acquire as above; release orders our read of the slot before the owner's reuse */
  if (!FR_CAS(d->ts, ts, ts + 1, FR_ACQ_REL)) return FR_ABORT;
  return x;
#else
  if (!FR_CAS(d->ts, ts, ts + 1, FR_ACQ_REL)) return FR_ABORT;
  return FR_LOAD(d->slot[tail], FR_RLX);
#endif
}

/* Any thread: whether shared frames are visible; seq_cst: the wake check's load side. */
static inline int FR_FN(seen_shared)(FR_DEQUE *d) {
  uint64_t ts = FR_LOAD(d->ts, FR_SC);
  return FR_FN(ts_tail)(ts) < FR_FN(ts_split)(ts);
}
