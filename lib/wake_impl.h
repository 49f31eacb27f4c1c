/*
 * Private to weft: a task's park state — how a suspended task is woken exactly once by the
 * first of its events (a completion, its timer, a cancel) — written once and instantiated
 * twice: with C11 atomics in the library (lib/join.c, through wake.h) and with relacy's in
 * tests/model/. The includer defines:
 *
 *   WK_STATE                         the atomic uint32_t object type
 *   WK_LOAD(obj, mo)  WK_STORE(obj, v, mo)
 *   WK_CAS(obj, expected_lvalue, desired, mo_success, mo_failure)
 *   WK_RLX WK_ACQ WK_REL WK_ACQ_REL  memory orders
 *   WK_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: WK_COMMIT_BY_STORE (the scheduler's commit is a
 * plain store, not a CAS), WK_WAKE_ONLY_PARKED (an event ignores a task still switching out),
 * WK_WAKE_ORDER (acq_rel), WK_DIRECT_BY_STORE (park_commit_direct stores instead of a CAS);
 * WK_END_BY_CAS 1 gives back the old park_end (a CAS on every resume) for comparison.
 *
 * The word, one per task (it lives in the descriptor, so an event that holds the task's
 * handle, or that a deliverer's BUSY keeps alive, can always reach it):
 *   bits 0-1  phase: RUNNING, PARKING (the task announced a wait and is switching out), PARKED
 *             (switched out: whoever wakes it schedules it), WOKEN (an event won)
 *   bits 2-3  the winning event, while WOKEN: COMPLETION, TIMER or CANCEL
 *   bit  4    CANCEL_REQUESTED: sticky, set by weft_cancel
 *   bit  5    CANCEL_DELIVERED: a suspension point returned WEFT_ECANCELED to the task
 *   bit  6    NAMED: weft_task_set_name gave the task a name (lib/task.c); sticky, and no
 *             step here reads or clears it (every RMW keeps it): weft_join's inline path reads
 *             it with the state it loads anyway, to drop the name before its quick free
 *   bits 8-15 shield depth (owner-written): while non-zero a cancel is only requested
 *
 * The hand-off is Go's gopark/goready with the unlock step made a CAS. The task moves RUNNING →
 * PARKING before it registers anywhere (so no event can come before the task can take it),
 * then switches out; the scheduler, on the task's behalf, moves PARKING → PARKED, or finds
 * WOKEN and schedules it itself. An event moves PARKING or PARKED → WOKEN|side: from PARKED it
 * schedules the task; from PARKING it leaves that to the commit. So the task is made runnable
 * exactly once, never while still on its stack, and by whichever of the event and the commit
 * comes second. A cancel is the same event, gated by the shield; on a RUNNING task it only sets
 * CANCEL_REQUESTED, which the next park_begin sees (every change is an RMW on this one word, so
 * one of the two always sees the other: no store-buffering window).
 * Rejected: a wake count in the join on the waiter's stack (a canceller cannot reach a join
 * that may die under it), and a flag per wait (a second word to keep consistent with the first).
 */

#define WK_RUNNING 0u
#define WK_PARKING 1u
#define WK_PARKED 2u
#define WK_WOKEN 3u
#define WK_PHASE 3u
#define WK_SIDE_SHIFT 2
#define WK_SIDE (3u << WK_SIDE_SHIFT)
#define WK_BY_COMPLETION 1u
#define WK_BY_TIMER 2u
#define WK_BY_CANCEL 3u
#define WK_CANCEL_REQUESTED (1u << 4)
#define WK_CANCEL_DELIVERED (1u << 5)
#define WK_NAMED (1u << 6)
#define WK_SHIELD_ONE (1u << 8)
#define WK_SHIELD (0xffu << 8)

#ifndef WK_COMMIT_BY_STORE
#define WK_COMMIT_BY_STORE 0
#endif
#ifndef WK_WAKE_ONLY_PARKED
#define WK_WAKE_ONLY_PARKED 0
#endif
#ifndef WK_WAKE_ORDER
#define WK_WAKE_ORDER WK_ACQ_REL
#endif
#ifndef WK_END_BY_CAS
#define WK_END_BY_CAS 0
#endif
#ifndef WK_DIRECT_BY_STORE
#define WK_DIRECT_BY_STORE 0
#endif

/* What an event or a cancel did: nothing; won while the task was still switching out (its
 * commit schedules it); or won a parked task, which the caller must now schedule. */
enum { WK_LOST = 0, WK_WON_PARKING = 1, WK_WON_PARKED = 2 };

static inline bool WK_FN(cancel_pending)(uint32_t s) {
  return (s & WK_CANCEL_REQUESTED) && !(s & WK_SHIELD);
}

/* Whether a park state is WOKEN by a completion: a peer's hand-off won the task (destroy's
 * abandon of a direct wait reads it: lib/sync.c, weft__wq_abandon). */
static inline bool WK_FN(woken_by_completion)(uint32_t s) {
  return (s & WK_PHASE) == WK_WOKEN && ((s & WK_SIDE) >> WK_SIDE_SHIFT) == WK_BY_COMPLETION;
}

/* A suspension point that does not park (a yield, an inline run, a spawn's start): true if a
 * cancel is pending, which it then counts as delivered. Owner only. */
static inline bool WK_FN(checkpoint)(WK_STATE *st) {
  uint32_t s = WK_LOAD(*st, WK_ACQ); /* acquire: the canceller's writes come with its request */
  while (WK_FN(cancel_pending)(s))
    /* relaxed: only the owner sets DELIVERED (the load above acquired the request) */
    if (WK_CAS(*st, s, s | WK_CANCEL_DELIVERED, WK_RLX, WK_RLX)) return true;
  return false;
}

/* The task, before it registers for a wait: RUNNING → PARKING. False (and still RUNNING) if a
 * cancel is pending and the wait is cancellable: the caller returns WEFT_ECANCELED at once. */
static inline bool WK_FN(park_begin)(WK_STATE *st, bool cancellable) {
  uint32_t s = WK_LOAD(*st, WK_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    if (cancellable && WK_FN(cancel_pending)(s)) {
      /* relaxed: only the owner sets DELIVERED; REQUESTED's writer is ordered by the CAS */
      if (WK_CAS(*st, s, s | WK_CANCEL_DELIVERED, WK_ACQ, WK_RLX)) return false;
      continue;
    }
    uint32_t desired = (s & ~(WK_PHASE | WK_SIDE)) | WK_PARKING;
    /* acquire: a cancel's request, when we see it, comes with the canceller's writes */
    if (WK_CAS(*st, s, desired, WK_ACQ, WK_RLX)) return true;
  }
}

/* The scheduler, after the task's stack is saved: PARKING → PARKED. True if an event came
 * first (WOKEN): the caller schedules the task now. */
static inline bool WK_FN(park_commit)(WK_STATE *st) {
#if WK_COMMIT_BY_STORE
  uint32_t s = WK_LOAD(*st, WK_ACQ);
  if ((s & WK_PHASE) == WK_WOKEN) return true;
  WK_STORE(*st, (s & ~WK_PHASE) | WK_PARKED, WK_REL);
  return false;
#else
  uint32_t s = WK_LOAD(*st, WK_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    /* acquire: the event's writes (a result, a timer's) reach the task we schedule */
    if ((s & WK_PHASE) == WK_WOKEN) return true;
    /* acq_rel: release publishes the saved stack to the event that will schedule us */
    if (WK_CAS(*st, s, (s & ~WK_PHASE) | WK_PARKED, WK_ACQ_REL, WK_ACQ)) return false;
  }
#endif
}

/* The scheduler, after the switch of a task that waits without park_begin (a direct wait,
 * lib/waitq.h): its waiter node becomes findable only after this commit (the queue's lock is
 * released after it), and it has no timer, so the only event that can come first is a cancel,
 * which finds the task RUNNING (or WOKEN, which means the same) and only requests. So:
 * → PARKED, or, if a cancel is pending (requested, not shielded), → WOKEN by the cancel, and
 * true: the caller schedules the task now. One CAS where park_begin + park_commit take two. */
static inline bool WK_FN(park_commit_direct)(WK_STATE *st) {
#if WK_DIRECT_BY_STORE
  uint32_t s = WK_LOAD(*st, WK_RLX);
  if (WK_FN(cancel_pending)(s)) {
    WK_STORE(*st, (s & ~(WK_PHASE | WK_SIDE)) | WK_WOKEN | (WK_BY_CANCEL << WK_SIDE_SHIFT), WK_REL);
    return true;
  }
  WK_STORE(*st, (s & ~(WK_PHASE | WK_SIDE)) | WK_PARKED, WK_REL); /* planted: loses a cancel */
  return false;
#else
  uint32_t s = WK_LOAD(*st, WK_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    bool cancelled = WK_FN(cancel_pending)(s);
    uint32_t desired = (s & ~(WK_PHASE | WK_SIDE)) |
                       (cancelled ? WK_WOKEN | (WK_BY_CANCEL << WK_SIDE_SHIFT) : WK_PARKED);
    /* acq_rel: release publishes the saved stack to the peer that will schedule us; acquire:
     * a cancel's request comes with the canceller's writes */
    if (WK_CAS(*st, s, desired, WK_ACQ_REL, WK_RLX)) return cancelled;
  }
#endif
}

/* An event (side WK_BY_COMPLETION or WK_BY_TIMER) for a task that waits. */
static inline int WK_FN(wake)(WK_STATE *st, uint32_t side) {
  uint32_t s = WK_LOAD(*st, WK_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    uint32_t phase = s & WK_PHASE;
    if (phase == WK_RUNNING || phase == WK_WOKEN) return WK_LOST;
    if (WK_WAKE_ONLY_PARKED && phase == WK_PARKING) return WK_LOST;
    uint32_t desired = (s & ~(WK_PHASE | WK_SIDE)) | WK_WOKEN | (side << WK_SIDE_SHIFT);
    /* acq_rel: release hands our writes to the task; acquire sees its saved stack (PARKED) */
    if (WK_CAS(*st, s, desired, WK_WAKE_ORDER, WK_RLX))
      return phase == WK_PARKED ? WK_WON_PARKED : WK_WON_PARKING;
  }
}

/* weft_cancel: sets CANCEL_REQUESTED and, if the task waits unshielded, wakes it. */
static inline int WK_FN(cancel)(WK_STATE *st) {
  uint32_t s = WK_LOAD(*st, WK_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    uint32_t phase = s & WK_PHASE, desired = s | WK_CANCEL_REQUESTED;
    bool wakes = (phase == WK_PARKING || phase == WK_PARKED) && !(s & WK_SHIELD);
    if (wakes) desired = (desired & ~(WK_PHASE | WK_SIDE)) | WK_WOKEN | (WK_BY_CANCEL << WK_SIDE_SHIFT);
    if (desired == s) return WK_LOST; /* requested already, and nothing to wake */
    /* acq_rel: as wake(); a RUNNING task's next park_begin acquires our request */
    if (WK_CAS(*st, s, desired, WK_ACQ_REL, WK_RLX))
      return !wakes ? WK_LOST : phase == WK_PARKED ? WK_WON_PARKED : WK_WON_PARKING;
  }
}

/* The task, resumed: returns the side that woke it (a cancel is delivered). A completion or a
 * timer leaves the word as it is — WOKEN stands for RUNNING from here on: every event and
 * cancel treats the two alike (wake and cancel act only on PARKING or PARKED), and the next
 * wait starts with park_begin or park_commit_direct, which overwrite the phase — so the common
 * resume costs a load, not a CAS (#11: one locked instruction less per channel hop). A cancel
 * sets DELIVERED, which needs the CAS. */
static inline uint32_t WK_FN(park_end)(WK_STATE *st) {
  uint32_t s = WK_LOAD(*st, WK_ACQ); /* acquire: the event's writes */
#if !WK_END_BY_CAS
  if ((s & WK_PHASE) == WK_WOKEN && ((s & WK_SIDE) >> WK_SIDE_SHIFT) != WK_BY_CANCEL)
    return (s & WK_SIDE) >> WK_SIDE_SHIFT;
#endif
  for (;;) {
    uint32_t side = (s & WK_SIDE) >> WK_SIDE_SHIFT;
    uint32_t desired = (s & ~(WK_PHASE | WK_SIDE)) | WK_RUNNING;
    if (side == WK_BY_CANCEL) desired |= WK_CANCEL_DELIVERED;
    /* acquire: as above, if a cancel's request lands between our load and this CAS */
    if (WK_CAS(*st, s, desired, WK_ACQ, WK_ACQ)) return side;
  }
}

/* The task gives up a wait it never suspended for (nothing to wait on after all): PARKING →
 * RUNNING, or, if an event won meanwhile, takes it (its side) as park_end does. */
static inline uint32_t WK_FN(park_abort)(WK_STATE *st) {
  uint32_t s = WK_LOAD(*st, WK_ACQ); /* acquire: an event's writes */
  for (;;) {
    if ((s & WK_PHASE) == WK_WOKEN) return WK_FN(park_end)(st);
    /* acquire: a cancel's request that lands between our load and this CAS */
    if (WK_CAS(*st, s, (s & ~(WK_PHASE | WK_SIDE)) | WK_RUNNING, WK_ACQ, WK_ACQ)) return 0;
  }
}
